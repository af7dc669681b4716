"""Zero-shot rank classification: the choice whose continuation scores best (normalized) wins.

Requests (one per choice) are spread over ranks round-robin; every rank runs the same number of
forward passes (padding with a repeat) because FSDP's forward is a collective, and the per-request
scores are summed across ranks with one all-reduce.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from olmo.errors import OlmoError
from olmo.eval.tasks import Doc, load_task, normalization

Forward = Callable[[torch.Tensor], torch.Tensor]  # ids [b, t] → logits [b, t, vocab]

OE_EVAL_CTX_LEN = 2048
"""ai2-olmo's ICLMultiChoiceTaskDataset model_ctx_len: contexts are cut from the left to fit it."""


@dataclass
class Request:
    context: list[int]
    continuation: list[int]


def tokenize(
    docs: Sequence[Doc],
    encode: Callable[[str], list[int]],
    unconditional: bool = False,
    task: str = "task",
) -> list[Request]:
    """One request per choice; with `unconditional`, then one per choice for the same
    continuation after its unconditional context (the wheel's own "Answer:" requests)."""
    choices = [c for d in docs for c in d.choices]
    reqs = [Request(encode(c.context), encode(c.continuation)) for c in choices]
    if unconditional:
        bare = next((d.id for d in docs if any(c.uncond_context is None for c in d.choices)), None)
        if bare is not None:
            raise OlmoError(
                f"{task} doc {bare}: no unconditional request, which the paper's normalization "
                "needs; rebuild the task data with python -m olmo.eval.build_subset"
            )
        reqs += [
            Request(encode(c.uncond_context or ""), r.continuation)
            for c, r in zip(choices, reqs, strict=True)
        ]
    return reqs


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


@dataclass
class TaskResult:
    """One task's documents, each one's normalized choice scores, and the choice picked."""

    task: str
    mode: str
    norm: str
    docs: list[Doc]
    scores: list[torch.Tensor]
    preds: list[int]

    @property
    def accuracy(self) -> float:
        right = sum(p == d.gold for p, d in zip(self.preds, self.docs, strict=True))
        return right / max(1, len(self.docs))


def normalized_scores(
    docs: Sequence[Doc], reqs: Sequence[Request], ll: torch.Tensor, norm: str
) -> list[torch.Tensor]:
    """Each doc's choice scores under `norm`, from the log-likelihoods of `tokenize`'s requests."""
    n = sum(len(d.choices) for d in docs)
    s = ll[:n].to(torch.float64)
    if norm == "per_token":
        s = s / torch.tensor([max(1, len(r.continuation)) for r in reqs[:n]], dtype=s.dtype)
    elif norm == "per_char":  # ICLMetric's len_norm: len(continuation) - 1, "leading blank"
        chars = [len(c.continuation) - 1 for d in docs for c in d.choices]
        s = s / torch.tensor(chars, dtype=s.dtype)  # 0 chars → -inf, as the reference's division
    elif norm == "unconditional":  # log p(cont | question) - log p(cont | "Answer:")
        s = s - ll[n : 2 * n].to(torch.float64)
    elif norm != "none":
        raise ValueError(f"unknown normalization {norm!r}")
    return list(torch.split(s, [len(d.choices) for d in docs]))


def predict(scores: Sequence[torch.Tensor], mode: str) -> list[int]:
    """The best choice of each doc; of equal maxima the first (torch.argmax, as ICLMetric).

    oe-eval: ICLMetric keeps each score as a float32 before its argmax, so ties are float32 ties.
    """
    return [int(torch.argmax(s.float() if mode == "oe-eval" else s).item()) for s in scores]


def score_task(
    forward: Forward,
    tokenizer,
    task: str,
    *,
    mode: str = "paper",
    limit: int | None,
    batch_size: int,
    max_len: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    data_dir: str | None = None,
) -> TaskResult:
    """Scores and picks of one task's documents under `mode` (same result on every rank)."""
    norm = normalization(task, mode)
    if mode == "oe-eval":  # the reference cuts the context at its model_ctx_len (2048)
        max_len = min(max_len, OE_EVAL_CTX_LEN)
    docs = load_task(task, data_dir, limit)
    reqs = tokenize(docs, tokenizer.encode, unconditional=norm == "unconditional", task=task)
    ll = score_requests(
        forward,
        reqs,
        batch_size=batch_size,
        max_len=max_len,
        pad_id=tokenizer.pad_id,
        device=device,
        rank=rank,
        world_size=world_size,
    )
    scores = normalized_scores(docs, reqs, ll, norm)
    return TaskResult(task, mode, norm, docs, scores, predict(scores, mode))


def evaluate_tasks(
    forward: Forward, tokenizer, tasks: Sequence[str], *, normalization: str = "paper", **kw: Any
) -> dict[str, float]:
    """Accuracy per task under the `normalization` mode (same numbers on every rank); `kw`:
    score_task's limit, batch_size, max_len, device, rank, world_size, data_dir."""
    return {t: score_task(forward, tokenizer, t, mode=normalization, **kw).accuracy for t in tasks}
