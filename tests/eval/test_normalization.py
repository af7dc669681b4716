"""Normalizations pinned by hand-made cases: one question whose winner is known under each of
none / per token / per character / unconditional, and the per-task table of both modes."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
import torch

from olmo.errors import OlmoError
from olmo.eval.build_subset import group_requests
from olmo.eval.downstream import Request, normalized_scores, predict, score_task
from olmo.eval.tasks import TASKS, Choice, Doc, load_task

# The question: 4 continuations, each one token repeated, scored after context "Q" (conditional)
# and after "Answer:" (unconditional). Per-token log-probabilities are set by hand:
#   choice  tokens  chars  log p(tok|Q)  log p(tok|Answer:)  none  per_token  per_char  uncond
#   0       1       1      -3            -2.5                -3    -3         -3        -0.5
#   1       8       4      -1.5          -1                  -12   -1.5       -3        -4
#   2       2       30     -4.5          -2                  -9    -4.5       -0.3      -5
#   3       5       5      -3            -4                  -15   -3         -3        +5
CONTS = [" a", " bbbb", " " + "c" * 30, " ddddd"]
TOKENS = {
    "Q": [1],
    "Answer:": [2],
    **{c: [10 + i] * n for i, (c, n) in enumerate(zip(CONTS, (1, 8, 2, 5), strict=True))},
}
LOGP = {1: [-3.0, -1.5, -4.5, -3.0], 2: [-2.5, -1.0, -2.0, -4.0]}  # context token → choice → log p
WINNER = {"none": 0, "per_token": 1, "per_char": 2, "unconditional": 3}
V = 16

# The tables of README's Downstream evaluation section, written out again on purpose.
PAPER = {"arc_easy": "unconditional", "arc_challenge": "unconditional", "openbookqa": "unconditional",
         "hellaswag": "per_token", "piqa": "per_token", "winogrande": "per_token",
         "boolq": "none", "sciq": "none", "copa": "none"}  # fmt: skip
OE_EVAL = {"arc_easy": "none", "arc_challenge": "per_char", "openbookqa": "per_char",
           "hellaswag": "per_char", "piqa": "per_char", "winogrande": "none",
           "boolq": "none", "sciq": "none", "copa": "none"}  # fmt: skip


class Tok:
    pad_id = 0

    def encode(self, text: str) -> list[int]:
        return list(TOKENS[text])


def table_model(ids: torch.Tensor) -> torch.Tensor:
    """Every position predicts from the row's first token (its context) alone: LOGP, the rest of
    the probability on token 3."""
    table = torch.full((V, V), -1e4)
    for ctx, logps in LOGP.items():
        for i, lp in enumerate(logps):
            table[ctx, 10 + i] = lp
        table[ctx, 3] = math.log(1 - sum(math.exp(lp) for lp in logps))
    return table[ids[:, :1]].expand(*ids.shape, V)


def question(gold: int, uncond: bool = True) -> Doc:
    return Doc(0, gold, tuple(Choice("Q", c, "Answer:" if uncond else None) for c in CONTS))


def hand_set() -> tuple[list[Doc], list[Request], torch.Tensor]:
    reqs = [Request([1], TOKENS[c]) for c in CONTS] + [Request([2], TOKENS[c]) for c in CONTS]
    ll = torch.tensor([len(r.continuation) * LOGP[r.context[0]][i % 4] for i, r in enumerate(reqs)])
    return [question(0)], reqs, ll.double()


@pytest.mark.parametrize("norm", list(WINNER))
def test_each_normalization_picks_its_own_winner(norm: str):
    docs, reqs, ll = hand_set()
    (scores,) = normalized_scores(docs, reqs, ll, norm)
    expected = {"none": [-3, -12, -9, -15], "per_token": [-3, -1.5, -4.5, -3],
                "per_char": [-3, -3, -0.3, -3], "unconditional": [-0.5, -4, -5, 5]}  # fmt: skip
    torch.testing.assert_close(scores, torch.tensor(expected[norm], dtype=torch.float64))
    assert predict([scores], "paper") == predict([scores], "oe-eval") == [WINNER[norm]]


def test_per_char_counts_the_characters_after_the_leading_space():
    # ai2-olmo's ICLMetric: len(continuation) - 1. Counting the space would make choice 0 win.
    d = Doc(0, 1, (Choice("Q", " ab"), Choice("Q", " abc")))
    reqs = [Request([1], [5]), Request([1], [6])]
    (s,) = normalized_scores([d], reqs, torch.tensor([-2.0, -2.9]), "per_char")
    assert s.tolist() == pytest.approx([-1.0, -2.9 / 3]) and predict([s], "oe-eval") == [1]
    assert -2.0 / 3 > -2.9 / 4  # with the space counted the order flips


def test_ties_go_to_the_first_choice_and_oe_eval_ties_are_float32_ties():
    s = torch.tensor([-1.0 - 1e-12, -1.0], dtype=torch.float64)
    assert predict([s], "paper") == [1]
    assert predict([s], "oe-eval") == [0]  # equal as float32, as ICLMetric stores them
    assert predict([torch.tensor([-2.0, -1.0, -1.0])], "paper") == [1]


def _write_task(data_dir: Path, task: str, docs: list[Doc]) -> None:
    with gzip.open(data_dir / f"{task}.jsonl.gz", "wt") as f:
        for d in docs:
            choices = [
                {"context": c.context, "continuation": c.continuation}
                | ({"uncond_context": c.uncond_context} if c.uncond_context else {})
                for c in d.choices
            ]
            f.write(json.dumps({"id": d.id, "gold": d.gold, "choices": choices}) + "\n")


@pytest.mark.parametrize("mode,table", [("paper", PAPER), ("oe-eval", OE_EVAL)])
def test_each_task_scores_with_its_modes_normalization(tmp_path: Path, mode: str, table: dict):
    """Through the real path (data file → requests → model → normalization → pick) per task."""
    assert set(table) == set(TASKS)
    for task, norm in table.items():
        _write_task(tmp_path, task, [question(WINNER[norm])])
        res = score_task(
            table_model, Tok(), task, mode=mode, limit=None, batch_size=3, max_len=64,
            device=torch.device("cpu"), data_dir=str(tmp_path),
        )  # fmt: skip
        assert (res.norm, res.preds, res.accuracy) == (norm, [WINNER[norm]], 1.0), task


def test_paper_mode_needs_the_unconditional_requests(tmp_path: Path):
    _write_task(tmp_path, "arc_easy", [question(3, uncond=False)])
    kw = dict(
        limit=None, batch_size=4, max_len=64, device=torch.device("cpu"), data_dir=str(tmp_path)
    )
    with pytest.raises(OlmoError, match="arc_easy doc 0: no unconditional request.*build_subset"):
        score_task(table_model, Tok(), "arc_easy", mode="paper", **kw)
    assert score_task(table_model, Tok(), "arc_easy", mode="oe-eval", **kw).preds == [0]


class LongTok(Tok):
    def encode(self, text: str) -> list[int]:
        return [1] * len(text) if set(text) == {"Q"} else super().encode(text)


def test_oe_eval_cuts_the_context_at_2048_like_the_reference(tmp_path: Path):
    long = "Q" * 3000  # 3000 tokens
    _write_task(tmp_path, "copa", [Doc(0, 0, (Choice(long, " a"), Choice(long, " bbbb")))])
    widths: list[int] = []

    def model(ids: torch.Tensor) -> torch.Tensor:
        widths.append(ids.shape[1])
        return table_model(ids)

    for mode in ("oe-eval", "paper"):
        score_task(model, LongTok(), "copa", mode=mode, limit=None, batch_size=2, max_len=4096,
                   device=torch.device("cpu"), data_dir=str(tmp_path))  # fmt: skip
    assert widths == [2048, 3000 + 8 - 1]  # paper: the model's window; 8 tokens in " bbbb"


def _line(doc_id: int, idx: int, context: str, cont: str, label: int = 1) -> str:
    r = {"doc_id": doc_id, "idx": idx, "label": label,
         "request": {"context": context, "continuation": cont}}  # fmt: skip
    return json.dumps(r)


def test_build_subset_keeps_unconditional_requests_with_their_question():
    lines = [_line(0, 1, "Q0", " y"), _line(0, 0, "Q0", " x"), _line(1, 0, "Q1", " z"),
             _line(1, 1, "Q1", " w"), _line(1_000_000, 1, "Answer:", " y"),
             _line(1_000_000, 0, "Answer:", " x")]  # fmt: skip
    docs = group_requests(lines, "t")
    assert [d["id"] for d in docs] == [0, 1]  # the unconditional doc is no question
    assert docs[0]["choices"] == [
        {"context": "Q0", "continuation": " x", "uncond_context": "Answer:"},
        {"context": "Q0", "continuation": " y", "uncond_context": "Answer:"},
    ]
    assert all("uncond_context" not in c for c in docs[1]["choices"])
    with pytest.raises(ValueError, match="unconditional requests of no question"):
        group_requests([*lines, _line(1_000_005, 0, "Answer:", " x")], "t")
    with pytest.raises(ValueError, match="doc 1: unconditional requests differ"):
        group_requests(
            [*lines, _line(1_000_001, 0, "Answer:", " q"), _line(1_000_001, 1, "Answer:", " w")],
            "t",
        )


def test_bundled_subset_carries_the_unconditional_requests():
    for task in TASKS:
        docs = load_task(task)
        assert [d.id for d in docs] == list(range(100)), task  # the wheel's first 100 questions
        has = {c.uncond_context for d in docs for c in d.choices}
        assert has == ({None} if task in ("boolq", "winogrande") else {"Answer:"}), task
