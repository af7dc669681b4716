"""Downstream rank classification: known answers, normalization, ranks, bundled data, CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from olmo.errors import OlmoError
from olmo.eval.downstream import Request, normalized_scores, predict, score_requests
from olmo.eval.tasks import TASKS, Choice, Doc, load_task
from olmo.model import ModelConfig, build_model
from tests.helpers import SMALL, olmo, read_metrics

V = 50


def successor_model(ids: torch.Tensor) -> torch.Tensor:
    """A 'language model' that knows one thing: token x is followed by token x+1 (mod V)."""
    logits = torch.zeros(*ids.shape, V)
    logits.scatter_(-1, ((ids + 1) % V)[..., None], 10.0)
    return logits


def score(reqs: list[Request]) -> torch.Tensor:
    return score_requests(
        successor_model, reqs, batch_size=3, max_len=32, pad_id=0, device=torch.device("cpu")
    )


def doc(gold: int, *continuations: list[int], context=(1, 2, 3)) -> tuple[Doc, list[Request]]:
    choices = tuple(Choice("ctx", f"c{i}") for i in range(len(continuations)))
    return Doc(0, gold, choices), [Request(list(context), list(c)) for c in continuations]


def accuracy(docs: list[Doc], reqs: list[Request], ll: torch.Tensor, norm: str) -> float:
    preds = predict(normalized_scores(docs, reqs, ll, norm), "paper")
    return sum(p == d.gold for p, d in zip(preds, docs, strict=True)) / len(docs)


def test_rank_classification_picks_the_known_answer():
    docs, reqs = [], []
    for gold in range(3):  # the right continuation continues the chain 1,2,3 → 4,5
        conts = [[9, 9], [7, 1], [30, 2]]
        conts[gold] = [4, 5]
        d, r = doc(gold, *conts)
        docs.append(d)
        reqs += r
    s = score(reqs)
    assert accuracy(docs, reqs, s, "none") == 1.0
    assert s[0].item() > s[1].item()  # the chain is far more likely than a wrong pair
    assert accuracy(docs, reqs, -s, "none") == 0.0  # the test can fail


def test_per_token_normalization_changes_the_winner():
    # choice 0: one wrong token. choice 1: 8 tokens, 3 of them wrong: a lower sum, a higher mean.
    d, reqs = doc(1, [40], [4, 5, 6, 7, 20, 9, 30, 11])
    s = score(reqs)
    assert accuracy([d], reqs, s, "none") == 0.0
    assert accuracy([d], reqs, s, "per_token") == 1.0


def test_context_cut_from_the_left_keeps_the_continuation():
    long_ctx = list(range(1, 45))  # 44 tokens + 2 > max_len 32
    d, reqs = doc(0, [45, 46], [3, 3], context=long_ctx)
    assert accuracy([d], reqs, score(reqs), "none") == 1.0


def _ranks_worker(rank: int, world: int, init: str, reqs, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    model = build_model(ModelConfig(d_model=32, n_layers=1, n_heads=2, vocab_size=V), seed=0)
    s = score_requests(
        model,
        reqs,
        batch_size=2,
        max_len=16,
        pad_id=0,
        device=torch.device("cpu"),
        rank=rank,
        world_size=world,
    )
    if rank == 0:
        torch.save(s, out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_give_the_scores_of_one(tmp_path: Path):
    g = torch.Generator().manual_seed(0)
    reqs = [  # 7 requests: rank 1 gets fewer and pads its last forward with a dummy
        Request(torch.randint(1, V, (n,), generator=g).tolist(), [5, 6, 7][: 1 + n % 3])
        for n in (3, 8, 5, 1, 12, 4, 6)
    ]
    model = build_model(ModelConfig(d_model=32, n_layers=1, n_heads=2, vocab_size=V), seed=0)
    one = score_requests(model, reqs, batch_size=2, max_len=16, pad_id=0, device="cpu")
    out = tmp_path / "scores.pt"
    init = f"file://{tmp_path / 'store'}"
    mp.spawn(_ranks_worker, args=(2, init, reqs, str(out)), nprocs=2, join=True)
    two = torch.load(out, weights_only=True)
    torch.testing.assert_close(two, one, rtol=1e-6, atol=1e-6)


def test_bundled_subset_loads_and_is_valid():
    for task in TASKS:
        docs = load_task(task)
        assert len(docs) == 100, task
        assert all(0 <= d.gold < len(d.choices) for d in docs)
    assert len(load_task("copa", limit=7)) == 7


def test_bad_task_data_is_named(tmp_path: Path):
    with pytest.raises(OlmoError, match="unknown task 'nope'"):
        load_task("nope")
    with pytest.raises(OlmoError, match="task data not found"):
        load_task("copa", data_dir=tmp_path)
    (tmp_path / "copa.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(OlmoError, match="copa.jsonl.gz: unreadable"):
        load_task("copa", data_dir=tmp_path)
    with gzip.open(tmp_path / "piqa.jsonl.gz", "wt") as f:
        f.write(
            json.dumps(
                {
                    "id": 0,
                    "gold": 3,
                    "choices": [
                        {"context": "a", "continuation": " b"},
                        {"context": "a", "continuation": " c"},
                    ],
                }
            )
        )
    with pytest.raises(OlmoError, match=r"piqa.jsonl.gz:1: needs ≥2 choices and a gold"):
        load_task("piqa", data_dir=tmp_path)


@pytest.mark.slow
def test_in_loop_eval_and_olmo_eval_cli(tmp_path: Path):
    run = tmp_path / "run"
    olmo(
        "train",
        "configs/tiny.yaml",
        "--run-dir",
        str(run),
        "--train.max_steps=10",
        *SMALL,
        "--eval.interval=5",
        "--eval.tasks=[copa,piqa]",
        "--eval.limit=8",
        "--eval.normalization=oe-eval",
    )
    recs = {r["step"]: r for r in read_metrics(run)}
    for step in (5, 10):
        assert 0.0 <= recs[step]["downstream/copa"] <= 1.0
        assert "downstream/piqa" in recs[step]
        assert recs[step]["downstream_normalization"] == "oe-eval"
        assert recs[step]["eval_s"] > 0  # its time, booked for `olmo logbook`
    assert "downstream/copa" not in recs[4] and "downstream_normalization" not in recs[4]
    assert "eval_s" not in recs[4]
    args = ("eval", str(run), "--tasks", "copa,piqa", "--limit", "8", "--max-len", "32", "--json")
    out = json.loads(olmo(*args, "--normalization", "oe-eval").stdout)
    assert out["normalization"] == "oe-eval"
    assert out["normalizations"] == {"copa": "none", "piqa": "per_char"}
    # the final checkpoint is the model the in-loop eval saw at step 10 (same windows: seq_len 32)
    assert out["accuracy"] == pytest.approx(
        {k: recs[10][f"downstream/{k}"] for k in ("copa", "piqa")}
    )
    paper = json.loads(olmo(*args).stdout)
    assert paper["normalization"] == "paper" and paper["normalizations"]["piqa"] == "per_token"
    bad = olmo("eval", str(run), "--tasks", "copa,nope", check=False)
    assert bad.returncode == 2 and "unknown task 'nope'" in bad.stderr
