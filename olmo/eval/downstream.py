"""Zero-shot rank classification: the choice whose continuation the model finds most likely wins.

Requests (one per choice) are spread over ranks round-robin; every rank runs the same number of
forward passes (padding with a repeat) because FSDP's forward is a collective, and the per-request
scores are summed across ranks with one all-reduce.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from olmo.eval.tasks import TASKS, Doc, load_task

Forward = Callable[[torch.Tensor], torch.Tensor]  # ids [b, t] → logits [b, t, vocab]


@dataclass
class Request:
    context: list[int]
    continuation: list[int]


def tokenize(docs: Sequence[Doc], encode: Callable[[str], list[int]]) -> list[Request]:
    return [Request(encode(c.context), encode(c.continuation)) for d in docs for c in d.choices]


def _pack(reqs: Sequence[Request], max_len: int, pad_id: int) -> tuple[torch.Tensor, list[int]]:
    """Right-padded [b, t] ids (context cut from the left to fit) and each row's length."""
    rows = []
    for r in reqs:
        ids = (r.context + r.continuation)[-(max_len + 1) :]
        rows.append(ids[:-1] if len(ids) > 1 else ids)  # the last token is predicted, never input
    width = max(len(x) for x in rows)
    batch = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, x in enumerate(rows):
        batch[i, : len(x)] = torch.tensor(x)
    return batch, [len(x) for x in rows]


@torch.no_grad()
def continuation_logprobs(
    forward: Forward, reqs: Sequence[Request], max_len: int, pad_id: int, device: torch.device
) -> torch.Tensor:
    """Sum of log p(continuation token | everything before it) for each request (fp64, on CPU)."""
    batch, lengths = _pack(reqs, max_len, pad_id)
    logits = forward(batch.to(device)).float()
    out = torch.empty(len(reqs), dtype=torch.float64)
    for i, (r, n) in enumerate(zip(reqs, lengths, strict=True)):
        k = min(len(r.continuation), n)  # continuation tokens that fit in the window
        targets = (r.context + r.continuation)[-k:]
        logp = torch.log_softmax(logits[i, n - k : n], dim=-1)
        out[i] = logp.gather(1, torch.tensor(targets, device=logp.device)[:, None]).sum().item()
    return out


def score_requests(
    forward: Forward,
    reqs: Sequence[Request],
    *,
    batch_size: int,
    max_len: int,
    pad_id: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> torch.Tensor:
    """Scores of all requests; each rank computes its share, one SUM all-reduce joins them."""
    mine = list(range(rank, len(reqs), world_size))
    per_rank = math.ceil(len(reqs) / world_size)
    steps = math.ceil(per_rank / batch_size) if per_rank else 0
    scores = torch.zeros(len(reqs), dtype=torch.float64)
    for s in range(steps):
        idx = mine[s * batch_size : (s + 1) * batch_size]
        real = len(idx)
        if not idx:  # this rank ran out: a dummy request keeps the collective forwards in step
            idx = [0]
        out = continuation_logprobs(forward, [reqs[i] for i in idx], max_len, pad_id, device)
        for j in range(real):
            scores[idx[j]] = out[j]
    if world_size > 1:
        dist.all_reduce(scores)
    return scores


def accuracy(
    docs: Sequence[Doc], reqs: Sequence[Request], scores: torch.Tensor, norm: str
) -> float:
    """Fraction of docs whose gold choice has the best (normalized) score."""
    correct, i = 0, 0
    for d in docs:
        s = scores[i : i + len(d.choices)].clone()
        if norm == "per_token":
            s /= torch.tensor([max(1, len(r.continuation)) for r in reqs[i : i + len(d.choices)]])
        correct += int(torch.argmax(s).item() == d.gold)
        i += len(d.choices)
    return correct / max(1, len(docs))


def evaluate_tasks(
    forward: Forward,
    tokenizer,
    tasks: Sequence[str],
    *,
    limit: int | None,
    batch_size: int,
    max_len: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    data_dir: str | None = None,
) -> dict[str, float]:
    """Accuracy per task (same numbers on every rank)."""
    results = {}
    for task in tasks:
        docs = load_task(task, data_dir, limit)
        reqs = tokenize(docs, tokenizer.encode)
        scores = score_requests(
            forward,
            reqs,
            batch_size=batch_size,
            max_len=max_len,
            pad_id=tokenizer.pad_id,
            device=device,
            rank=rank,
            world_size=world_size,
        )
        results[task] = accuracy(docs, reqs, scores, TASKS[task])
    return results
