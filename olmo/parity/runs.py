"""Compare two training runs: the same data order, and loss curves that stay within a band.

Each run's `metrics.jsonl` gives one record per step; where a step was logged more than once (an
attempt killed after logging, before its checkpoint) the last record wins, so a restarted run
contributes each step exactly once. The batch-hash sequences over the common steps must be
identical. The loss curves are compared over sliding windows of W common steps: the windowed
difference d_w = |mean(loss_A over w) − mean(loss_B over w)| must stay ≤ the band for every w
(step-to-step noise averages out; a real divergence does not). max/mean |Δ| per step are reported.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmo.errors import OlmoError
from olmo.inputs import check_record, read_json_lines

DEFAULT_WINDOW = 10
DEFAULT_BAND = 0.05  # nats of mean next-token loss


STEP_FIELDS = {"step": int, "loss": (int, float), "batch_hash": str}


def read_steps(run: str | Path) -> dict[int, dict[str, Any]]:
    """step → its last complete record, from RUN_DIR/metrics.jsonl (or that file itself)."""
    path = Path(run)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise OlmoError(f"{path}: no metrics.jsonl; pass a run directory written by olmo train")
    steps: dict[int, dict[str, Any]] = {}
    lines, _ = read_json_lines(path, "repair the line")  # lines cut short by a kill are skipped
    for n, rec in lines:
        if isinstance(rec, dict) and "step" in rec and "loss" in rec and "batch_hash" in rec:
            check_record(rec, f"{path}:{n}", STEP_FIELDS, "repair the line")
            steps[rec["step"]] = rec
    if not steps:
        raise OlmoError(f"{path}: no step records with loss and batch_hash")
    return dict(sorted(steps.items()))


@dataclass
class RunComparison:
    steps: list[int]
    loss_a: list[float]
    loss_b: list[float]
    window: int
    band: float
    only_a: int = 0
    only_b: int = 0
    hash_mismatches: list[tuple[int, str, str]] = field(default_factory=list)
    window_diffs: list[float] = field(default_factory=list)

    @property
    def deltas(self) -> list[float]:
        return [abs(a - b) for a, b in zip(self.loss_a, self.loss_b, strict=True)]

    @property
    def worst_window(self) -> tuple[int, float]:
        """(index of the window's first step, d) of the largest windowed difference."""
        i = max(range(len(self.window_diffs)), key=self.window_diffs.__getitem__)
        return i, self.window_diffs[i]

    @property
    def passed(self) -> bool:
        finite = all(math.isfinite(d) for d in self.window_diffs)
        return not self.hash_mismatches and finite and self.worst_window[1] <= self.band


def compare_runs(
    a: dict[int, dict[str, Any]],
    b: dict[int, dict[str, Any]],
    window: int = DEFAULT_WINDOW,
    band: float = DEFAULT_BAND,
) -> RunComparison:
    if window < 1 or not band >= 0:
        raise OlmoError(f"--window {window} --band {band}: need window >= 1 and band >= 0")
    common = sorted(set(a) & set(b))
    if not common:
        raise OlmoError("the two runs share no logged step; compare runs of the same config")
    c = RunComparison(
        steps=common,
        loss_a=[float(a[s]["loss"]) for s in common],
        loss_b=[float(b[s]["loss"]) for s in common],
        window=min(window, len(common)),
        band=band,
        only_a=len(set(a) - set(b)),
        only_b=len(set(b) - set(a)),
    )
    c.hash_mismatches = [
        (s, a[s]["batch_hash"], b[s]["batch_hash"])
        for s in common
        if a[s]["batch_hash"] != b[s]["batch_hash"]
    ]
    w = c.window
    for i in range(len(common) - w + 1):
        mean_a = sum(c.loss_a[i : i + w]) / w
        mean_b = sum(c.loss_b[i : i + w]) / w
        c.window_diffs.append(abs(mean_a - mean_b))
    return c


def report(c: RunComparison, name_a: str, name_b: str) -> str:
    d = c.deltas
    identical = sum(x == 0.0 for x in d)
    i, worst = c.worst_window
    lines = [
        f"A: {name_a}",
        f"B: {name_b}",
        f"common steps {c.steps[0]}..{c.steps[-1]} ({len(c.steps)}); only in A {c.only_a}, "
        f"only in B {c.only_b}",
        f"batch hashes: {len(c.steps) - len(c.hash_mismatches)}/{len(c.steps)} identical",
        f"loss per step: max |Δ| {max(d):.3e}, mean |Δ| {sum(d) / len(d):.3e}, "
        f"bit-identical on {identical}/{len(d)} steps",
        f"loss over windows of {c.window} steps: max d {worst:.3e} (steps "
        f"{c.steps[i]}..{c.steps[i + c.window - 1]}), mean d "
        f"{sum(c.window_diffs) / len(c.window_diffs):.3e}, band {c.band:g}",
    ]
    lines.append(verdict_line(c))
    return "\n".join(lines)


def verdict_line(c: RunComparison) -> str:
    if c.hash_mismatches:
        s, ha, hb = c.hash_mismatches[0]
        return f"FAIL: data order differs: step {s} batch_hash {ha} vs {hb} ({len(c.hash_mismatches)} steps differ)"
    i, worst = c.worst_window
    if not c.passed:
        return (
            f"FAIL: loss curves diverge: steps {c.steps[i]}..{c.steps[i + c.window - 1]} mean loss "
            f"differs by {worst:.4g} > band {c.band:g}"
        )
    return f"PASS: same data order, windowed loss difference ≤ {worst:.3g} (band {c.band:g})"


def summary(c: RunComparison) -> dict[str, Any]:
    d = c.deltas
    i, worst = c.worst_window
    return {
        "verdict": "PASS" if c.passed else "FAIL",
        "common_steps": len(c.steps),
        "batch_hash_mismatches": len(c.hash_mismatches),
        "first_hash_mismatch_step": c.hash_mismatches[0][0] if c.hash_mismatches else None,
        "max_abs_delta": max(d),
        "mean_abs_delta": sum(d) / len(d),
        "window": c.window,
        "band": c.band,
        "max_window_diff": worst,
        "max_window_steps": [c.steps[i], c.steps[i + c.window - 1]],
    }


def plot(c: RunComparison, path: str | Path, name_a: str, name_b: str) -> None:
    """Overlay of the two loss curves, and |Δ| per step with the windowed difference and band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[2, 1])
    top.plot(c.steps, c.loss_a, label=f"A: {name_a}", lw=1.5)
    top.plot(c.steps, c.loss_b, label=f"B: {name_b}", lw=1.0, ls="--")
    top.set_ylabel("loss")
    top.legend(fontsize=8)
    top.set_title(verdict_line(c)[:90], fontsize=9)
    bottom.plot(c.steps, c.deltas, label="|Δ| per step", lw=0.8)
    ends = c.steps[c.window - 1 :]
    bottom.plot(ends, c.window_diffs, label=f"windowed d (W={c.window})", lw=1.5)
    bottom.axhline(c.band, color="red", ls=":", label=f"band {c.band:g}")
    bottom.set_xlabel("step")
    bottom.set_ylabel("|Δ loss|")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")  # never a half-written image
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
