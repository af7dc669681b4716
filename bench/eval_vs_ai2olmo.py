"""`olmo eval --normalization oe-eval` vs ai2-olmo 0.6.0's own evaluator, question by question.

1. Trains the tiny preset for STEPS steps on the bundled corpus (model.max_seq_len 2048, the
   reference's window, so neither side cuts a context) and exports it with `olmo convert to-hf`.
2. Builds the reference's own virtualenv (its package is also `olmo`) with REF_PACKAGES, torch
   pinned to the version installed here (torch 2.13 is inside ai2-olmo's `torch>=2.1`; pyarrow
   < 26 because ai2-olmo needs numpy < 2 and pyarrow 26 needs numpy 2).
3. Scores the bundled subset's questions (100 per task) with ours (the checkpoint, in this
   process, both modes) and with the reference (bench/ai2olmo_reference.py in its venv, on the HF
   export), and compares accuracy and every answer task by task in oe-eval mode.

Acceptance: every answer agrees, except questions whose two best reference scores are closer than
TIE (listed). Reused between runs (--fresh rebuilds): the trained run, the export, the venv.

    python bench/eval_vs_ai2olmo.py [--fresh] [--work runs/eval_vs_ai2olmo]

One record per run is appended to bench/results/eval_vs_ai2olmo.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from common import REPO, append_result, environment

from olmo.eval.downstream import TaskResult, score_task
from olmo.eval.tasks import TASKS

STEPS = 200
TIE = 1e-3
BATCH = 8  # choices per forward on both sides (the widest BoolQ batch: 8 × 766 × 50k logits)
REF_PACKAGES = [
    "ai2-olmo==0.6.0",
    "ai2-olmo-core==0.1.0",
    "numpy==1.26.4",
    "pyarrow==25.0.1",
    "datasets==5.2.0",
    "scikit-learn==1.9.1",
    "torchmetrics==1.9.0",
    "transformers==5.24.0",
    "tokenizers==0.23.3",
]
"""ai2-olmo with the extras its eval code imports (datasets, sklearn, torchmetrics)."""


def ref_env() -> dict[str, str]:
    """This environment without PYTHONPATH: it could put our `olmo` before ai2-olmo's."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def sh(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    """Run a command; on failure exit with its output's tail."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=REPO, env=env)
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(map(str, cmd))} failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
        )


def trained_model(work: Path) -> tuple[Path, Path]:
    """(checkpoint, HF export) of the tiny model trained STEPS steps, reused when present."""
    run, hf = work / "train", work / "hf"
    ckpt = run / "checkpoints" / f"step{STEPS}"
    if not ckpt.is_dir():
        shutil.rmtree(run, ignore_errors=True)
        sh(sys.executable, "-m", "olmo", "train", "configs/tiny.yaml", "--run-dir", run,
           f"--train.max_steps={STEPS}", "--model.max_seq_len=2048",
           f"--checkpoint.interval={STEPS}")  # fmt: skip
    if not (hf / "config.json").is_file():
        shutil.rmtree(hf, ignore_errors=True)
        sh(sys.executable, "-m", "olmo", "convert", "to-hf", ckpt, hf)
    return ckpt, hf


def reference_venv(work: Path) -> tuple[Path, dict[str, str]]:
    """The reference's python (venv built once per package list) and its package versions."""
    venv = work / "ref-venv"
    wanted = [*REF_PACKAGES, f"torch=={torch.__version__.split('+')[0]}"]
    marker = venv / "olmo-hpc-packages.json"
    if not marker.is_file() or json.loads(marker.read_text()) != wanted:
        shutil.rmtree(venv, ignore_errors=True)
        sh(Path(sys.base_prefix) / "bin" / "python3", "-m", "venv", venv, env=ref_env())
        sh(venv / "bin" / "python", "-m", "pip", "install", "--quiet", *wanted, env=ref_env())
        marker.write_text(json.dumps(wanted))
    freeze = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "freeze"],
        capture_output=True, text=True, check=True, env=ref_env(),
    ).stdout.split()  # fmt: skip
    names = {p.split("==")[0].lower() for p in wanted}
    versions = dict(p.split("==", 1) for p in freeze if "==" in p)
    return venv / "bin" / "python", {k: v for k, v in versions.items() if k.lower() in names}


def ours(ckpt: Path, mode: str) -> dict[str, TaskResult]:
    from olmo.checkpoint.io import load_model
    from olmo.tokenizer import load_tokenizer

    model, tok = load_model(ckpt).eval(), load_tokenizer("olmo")
    kw = dict(
        limit=100, batch_size=BATCH, max_len=model.cfg.max_seq_len, device=torch.device("cpu")
    )
    return {t: score_task(model, tok, t, mode=mode, **kw) for t in TASKS}


def reference(python: Path, hf: Path, work: Path, results: dict[str, TaskResult]) -> dict:
    request = work / "request.json"
    tasks = {t: [d.id for d in r.docs] for t, r in results.items()}
    request.write_text(json.dumps({"tasks": tasks, "batch_size": BATCH}))
    proc = subprocess.run(
        [python, REPO / "bench" / "ai2olmo_reference.py", hf, request],
        capture_output=True, text=True, cwd=work, env=ref_env(),
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"reference failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def compare(res: TaskResult, ref: dict[str, Any]) -> dict[str, Any]:
    """Accuracy, agreement and near-ties of one task; raises if the questions differ."""
    docs = {int(k): v for k, v in ref["docs"].items()}
    if sorted(docs) != [d.id for d in res.docs] or any(
        docs[d.id]["gold"] != d.gold for d in res.docs
    ):
        raise SystemExit(f"{res.task}: the reference scored other questions or golds")
    differ, ties, gap = [], [], 0.0
    for d, pred, s in zip(res.docs, res.preds, res.scores, strict=True):
        theirs = docs[d.id]["scores"]
        gap = max(gap, (s - torch.tensor(theirs, dtype=s.dtype)).abs().max().item())
        top = sorted(theirs, reverse=True)
        if top[0] - top[1] < TIE:
            ties.append(d.id)
        if pred != docs[d.id]["pred"]:
            differ.append(d.id)
    return {
        "norm": res.norm, "ref_metric": ref["metric_type"], "docs": len(res.docs),
        "acc_ours": res.accuracy, "acc_ref": ref["accuracy"], "agree": len(res.docs) - len(differ),
        "near_ties": ties, "differ": differ, "differ_outside_ties": sorted(set(differ) - set(ties)),
        "max_score_diff": gap,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "eval_vs_ai2olmo")
    ap.add_argument("--fresh", action="store_true", help="retrain, re-export, rebuild the venv")
    args = ap.parse_args()
    if args.fresh:
        shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ckpt, hf = trained_model(args.work)
    python, versions = reference_venv(args.work)
    t1 = time.perf_counter()
    mine = ours(ckpt, "oe-eval")
    paper = {t: r.accuracy for t, r in ours(ckpt, "paper").items()}
    t2 = time.perf_counter()
    theirs = reference(python, hf, args.work, mine)
    t3 = time.perf_counter()
    tasks = {t: compare(mine[t], theirs[t]) | {"acc_ours_paper": paper[t]} for t in TASKS}
    ok = not any(r["differ_outside_ties"] for r in tasks.values())
    print(
        f"{'task':14s} {'ours':>9s} {'ref':>13s} {'acc':>5s} {'ref':>5s} {'agree':>5s}  near-ties"
    )
    for t, r in tasks.items():
        print(f"{t:14s} {r['norm']:>9s} {r['ref_metric']:>13s} {r['acc_ours']:5.2f} "
              f"{r['acc_ref']:5.2f} {r['agree']:5d}  {r['near_ties']}")  # fmt: skip
    record = environment() | {
        "bench": "eval_vs_ai2olmo", "model": f"tiny, {STEPS} steps, max_seq_len 2048",
        "mode": "oe-eval", "tie_threshold": TIE, "batch_size": BATCH, "reference": versions,
        "pass": ok, "tasks": tasks, "seconds": {"setup": round(t1 - t0, 1),
        "ours_both_modes": round(t2 - t1, 1), "reference": round(t3 - t2, 1)},
    }  # fmt: skip
    print(f"{'PASS' if ok else 'FAIL'} → {append_result('eval_vs_ai2olmo', record)}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
