"""Per-rank RNG state through the real Checkpointer: save → draw → reseed → load → the same draws.

Training draws no random numbers (deterministic init and data order), so every bitwise resume test
passes with an RNG restore that does nothing. Here the generators are drawn from directly: after
`load`, each rank's next draws must equal the ones it made right after `save`, for every generator
the checkpoint holds, on 1 rank and on 2 (rank r must get its own state back, not rank 0's).
"""

from __future__ import annotations

import datetime
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from olmo.checkpoint.checkpointer import Checkpointer
from olmo.checkpoint.config import CheckpointConfig

Draws = dict[str, list[float]]
STATE = {"train_state": {"step": 1}}


@dataclass(frozen=True)
class Generator:
    draw: Callable[[], list[float]]
    reseed: Callable[[int], object]


# Every generator a checkpoint may hold, by its key in rng-rank{N}.pt. A key the checkpointer
# starts saving must be added here (the test fails on an unknown key), so it is exercised too.
GENERATORS: dict[str, Generator] = {
    "torch": Generator(lambda: torch.rand(4).tolist(), torch.manual_seed),
    "cuda": Generator(lambda: torch.rand(4, device="cuda").tolist(), torch.cuda.manual_seed_all),
    "python": Generator(lambda: [random.random() for _ in range(4)], random.seed),
    "numpy": Generator(lambda: np.random.random(4).tolist(), np.random.seed),
}


def saved_generators(ckpt: Path, rank: int) -> list[str]:
    keys = list(torch.load(ckpt / f"rng-rank{rank}.pt", weights_only=True))
    unknown = set(keys) - set(GENERATORS)
    assert not unknown, f"rng-rank{rank}.pt holds {unknown}: teach GENERATORS to draw from them"
    required = {"torch"} | ({"cuda"} if torch.cuda.is_available() else set())
    assert required <= set(keys), f"rng-rank{rank}.pt lacks {required - set(keys)}"
    return keys


def draw_all(names: list[str]) -> Draws:
    return {name: GENERATORS[name].draw() for name in names}


def roundtrip(root: Path, rank: int, world_size: int) -> dict[str, Draws]:
    """Seed (per rank), save, draw, reseed, load, draw again; returns the three sets of draws."""
    for name, gen in GENERATORS.items():
        if name != "cuda" or torch.cuda.is_available():
            gen.reseed(1000 + rank)
    model = torch.nn.Linear(4, 4)  # what the model is does not matter: the RNG files do
    optim = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 4)).sum().backward()
    optim.step()
    draw_all([n for n in GENERATORS if n != "cuda" or torch.cuda.is_available()])  # mid-stream

    ckpt = Checkpointer(root, CheckpointConfig(), rank, world_size, config={})
    ckpt.save(1, model, optim, STATE)
    path = root / "step1"
    names = saved_generators(path, rank)
    after_save = draw_all(names)
    for name in names:
        GENERATORS[name].reseed(7)  # the perturbation: a state no rank saved
    perturbed = draw_all(names)
    assert ckpt.load(path, model, optim) == STATE
    return {"after_save": after_save, "perturbed": perturbed, "after_load": draw_all(names)}


def check(result: dict[str, Draws]) -> None:
    for name, expected in result["after_save"].items():
        assert result["perturbed"][name] != expected, f"{name}: reseeding changed nothing"
        assert result["after_load"][name] == expected, f"{name}: state not restored by load"


def test_one_rank_restores_every_saved_generator(tmp_path: Path):
    check(roundtrip(tmp_path, rank=0, world_size=1))


def _worker(rank: int, world: int, init: str, root: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=init,
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        result = roundtrip(Path(root), rank, world)
    finally:
        dist.destroy_process_group()
    (Path(root) / f"draws{rank}.json").write_text(json.dumps(result))


@pytest.mark.slow
def test_two_ranks_each_restore_their_own_state(tmp_path: Path):
    mp.spawn(_worker, args=(2, f"file://{tmp_path / 'store'}", str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"draws{r}.json").read_text()) for r in range(2)]
    for result in results:
        check(result)
    # the ranks' streams differ, so loading another rank's file (or rank 0's everywhere) fails
    for name in results[0]["after_save"]:
        assert results[0]["after_save"][name] != results[1]["after_save"][name]
