"""How small a corruption the parity comparison catches: flip one mantissa bit of one weight.

For bits 22 (the top mantissa bit) down to 12 of one element of `layers.1.feed_forward.proj.weight`
in the small test model (tests/helpers.py SMALL, as tests/parity/test_fingerprint.py uses), compares the flipped fingerprint with the clean one under the fp32
tolerance and with `--require-bits`; appends one record per bit to
bench/results/parity_sensitivity.jsonl and prints the smallest bit the tolerance catches.

Usage: python bench/parity_sensitivity.py [--bits 22:12]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import append_result, environment  # noqa: E402
from olmo.config.schema import load_config  # noqa: E402
from olmo.parity.compare import DEFAULT_RTOL, compare  # noqa: E402
from olmo.parity.fingerprint import FingerprintOptions, fingerprint  # noqa: E402
from tests.helpers import SMALL  # noqa: E402  (the model tests/parity pins the threshold on)

WEIGHT, INDEX = "layers.1.feed_forward.proj.weight", 100


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", default="22:12", help="HIGH:LOW mantissa bits to flip")
    args = ap.parse_args()
    high, low = (int(x) for x in args.bits.split(":"))
    cfg = load_config("configs/tiny.yaml", SMALL)
    clean = fingerprint(cfg, FingerprintOptions(batches=2))
    smallest = None
    for bit in range(high, low - 1, -1):
        flipped = fingerprint(cfg, FingerprintOptions(batches=2, flip_bit=(WEIGHT, INDEX, bit)))
        loose, strict = compare(clean, flipped), compare(clean, flipped, require_bits=True)
        worst = max((r.rel for r in loose.rows), default=0.0)
        rec = {"benchmark": "parity_sensitivity", "weight": WEIGHT, "index": INDEX, "bit": bit}
        rec["config"] = ["configs/tiny.yaml", *SMALL]
        rec.update(rtol=DEFAULT_RTOL["fp32"], caught_by_tolerance=not loose.passed)
        rec.update(caught_by_require_bits=not strict.passed, max_rel_diff=worst)
        append_result("parity_sensitivity", {**rec, **environment()})
        print(
            f"bit {bit}: tolerance {'caught' if not loose.passed else 'missed'} "
            f"(max rel {worst:.2e}), require-bits {'caught' if not strict.passed else 'missed'}"
        )
        if not loose.passed:
            smallest = bit
    print(f"smallest bit caught by the fp32 tolerance: {smallest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
