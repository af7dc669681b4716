"""Compare two fingerprints: every quantity's relative difference against the dtype's tolerance.

Tolerances (relative, |a − b| / scale; see olmo.parity.stats): fp32 1e-4, bf16 2e-2; when the two
fingerprints ran in different dtypes the looser one applies. Exact facts must match outright: the
starting weights' bits, the golden batches, and the config that decides the numbers. The updated
weights' bit hash is reported (bit-identical or not) but differs legitimately between vendors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmo.errors import OlmoError
from olmo.inputs import check_record
from olmo.parity.fingerprint import FORMAT
from olmo.parity.stats import relative_difference

DEFAULT_RTOL = {"fp32": 1e-4, "bf16": 2e-2}
# Last name components that are a statistic of a site (a module output, a logits tensor, a weight).
STATS = {"mean", "std", "rms", "absmax", "q01", "q50", "q99", "logsumexp_mean", "sum"}


@dataclass
class Row:
    name: str
    a: float
    b: float
    rel: float
    tol: float

    @property
    def ok(self) -> bool:
        return self.rel <= self.tol


@dataclass
class Comparison:
    tol: float
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Exact facts or the set of quantities that differ: each makes the comparison fail."""
    bits_identical: bool = False

    @property
    def first_break(self) -> Row | None:
        return next((r for r in self.rows if not r.ok), None)

    @property
    def passed(self) -> bool:
        return not self.problems and self.first_break is None


# What compare() and the report read from a fingerprint, checked on load.
FIELDS = {"device": str, "dtype": str, "config": dict, "exact": dict, "bits": dict,
          "quantities": dict}  # fmt: skip
QUANTITY = {"value": (int, float), "scale": (int, float)}


def load_fingerprint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise OlmoError(
            f"{p}: cannot read a fingerprint ({e}); make one with olmo parity fingerprint"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise OlmoError(
            f"{p}: not a parity fingerprint (format {FORMAT}); make one with olmo parity fingerprint"
        )
    fix = "make it again with olmo parity fingerprint"
    check_record(data, str(p), FIELDS, fix, required=tuple(FIELDS))
    for name, q in data["quantities"].items():
        check_record(q, f"{p}: quantity {name}", QUANTITY, fix, required=tuple(QUANTITY))
    return data


def compare(
    a: dict[str, Any],
    b: dict[str, Any],
    rtol: dict[str, float] | None = None,
    require_bits: bool = False,
) -> Comparison:
    """`require_bits`: also demand bit-identical updated weights (two nodes of one stack)."""
    rtol = {**DEFAULT_RTOL, **(rtol or {})}
    for fp in (a, b):
        if fp["dtype"] not in rtol:
            raise OlmoError(f"fingerprint dtype {fp['dtype']!r}: no tolerance; use fp32 or bf16")
    result = Comparison(tol=max(rtol[a["dtype"]], rtol[b["dtype"]]))
    result.problems += _diff_dicts("config", a["config"], b["config"])
    result.problems += _diff_dicts("exact", a["exact"], b["exact"])
    qa, qb = a["quantities"], b["quantities"]
    only_a, only_b = [k for k in qa if k not in qb], [k for k in qb if k not in qa]
    if only_a or only_b:
        result.problems.append(
            f"quantities differ: {len(only_a)} only in A (e.g. {only_a[:1]}), "
            f"{len(only_b)} only in B (e.g. {only_b[:1]})"
        )
    for name, va in qa.items():
        if name in qb:
            vb = qb[name]
            rel = relative_difference((va["value"], va["scale"]), (vb["value"], vb["scale"]))
            result.rows.append(Row(name, va["value"], vb["value"], rel, result.tol))
    result.bits_identical = a["bits"] == b["bits"]
    if require_bits and not result.bits_identical:
        result.problems.append("updated weights differ in bits (--require-bits)")
    return result


def _diff_dicts(label: str, a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """One line per leaf that differs, e.g. `config differs: model.rope_theta: 10000.0 vs 500.0`."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff_dicts(label, va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{label} differs: {prefix}{key}: {_short(va)} vs {_short(vb)}")
    return out


def _short(v: Any) -> str:
    s = json.dumps(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _site(name: str) -> str:
    head, _, last = name.rpartition("/")
    return head if head and last in STATS else name


def site_rows(rows: list[Row]) -> list[tuple[str, Row]]:
    """The worst statistic of each site, sites in fingerprint (forward) order."""
    worst: dict[str, Row] = {}
    for r in rows:
        s = _site(r.name)
        if s not in worst or r.rel > worst[s].rel:
            worst[s] = r
    return list(worst.items())


def describe_side(fp: dict[str, Any]) -> str:
    env = fp.get("env", {})
    stack = env.get("hip") and f"ROCm {env['hip']}" or env.get("cuda") and f"CUDA {env['cuda']}"
    return (
        f"{fp['device']} ({fp.get('device_name') or '?'}), {fp['dtype']}, torch {env.get('torch')}"
        f"{', ' + stack if stack else ''}, host {env.get('host')}"
    )


def format_report(c: Comparison, a: dict[str, Any], b: dict[str, Any], full: bool = False) -> str:
    """Sides, exact facts, a table (worst statistic per site, or every quantity), the verdict."""
    lines = [f"A: {describe_side(a)}", f"B: {describe_side(b)}"]
    lines += [f"  {p}" for p in c.problems]
    lines.append(f"updated weights bit-identical: {'yes' if c.bits_identical else 'no'}")
    table = [(r.name, r) for r in c.rows] if full else site_rows(c.rows)
    width = max([len(n) for n, _ in table] + [8])
    lines.append(
        f"{'quantity':<{width}}  {'stat':<14} {'A':>13} {'B':>13} {'rel diff':>9}  tol {c.tol:g}"
    )
    for name, r in table:
        stat = "" if r.name == name else r.name.rpartition("/")[2]
        lines.append(
            f"{name:<{width}}  {stat:<14} {r.a:>13.6g} {r.b:>13.6g} {r.rel:>9.2e}  "
            f"{'ok' if r.ok else 'BREAK'}"
        )
    lines.append(verdict_line(c))
    return "\n".join(lines)


def verdict_line(c: Comparison) -> str:
    br = c.first_break
    if br is not None:
        return (
            f"FAIL: first quantity beyond tolerance: {br.name} (A {br.a:.8g}, B {br.b:.8g}, "
            f"rel {br.rel:.2e} > {c.tol:g})"
            + (f"; also {len(c.problems)} exact/config difference(s)" if c.problems else "")
        )
    if c.problems:
        return f"FAIL: {c.problems[0]}"
    worst = max(c.rows, key=lambda r: r.rel, default=None)
    most = f"; largest {worst.name} rel {worst.rel:.2e}" if worst else ""
    return f"PASS: {len(c.rows)} quantities within rel {c.tol:g}{most}"


def summary(c: Comparison) -> dict[str, Any]:
    """Machine-readable verdict (what bench/results/parity records)."""
    worst = max(c.rows, key=lambda r: r.rel, default=None)
    br = c.first_break
    return {
        "verdict": "PASS" if c.passed else "FAIL",
        "tolerance": c.tol,
        "quantities": len(c.rows),
        "beyond_tolerance": sum(not r.ok for r in c.rows),
        "max_rel_diff": worst.rel if worst else 0.0,
        "max_rel_quantity": worst.name if worst else None,
        "first_break": br.name if br else None,
        "problems": c.problems,
        "bits_identical": c.bits_identical,
    }
