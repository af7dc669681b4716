"""`olmo checkpoint average`: the element-wise (weighted) mean of checkpoints written by any
number of ranks, as a weights-only checkpoint that train, eval and to-hf take; clean errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from olmo.checkpoint.average import average_checkpoints
from olmo.checkpoint.io import load_model, model_config_of, save_model
from olmo.cli import main
from olmo.errors import OlmoError
from olmo.model import build_model
from tests.checkpoint.conftest import train
from tests.distributed.launch import torchrun, train_args

pytestmark = pytest.mark.slow


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_model(ckpt).state_dict()


def _assert_mix(out: Path, parts: list[tuple[float, Path]]) -> None:
    got, wants = _weights(out), [(w, _weights(p)) for w, p in parts]
    assert got.keys() == wants[0][1].keys()
    for name, value in got.items():
        want = sum(w * sd[name].double() for w, sd in wants).to(value.dtype)
        torch.testing.assert_close(value, want, rtol=0, atol=1e-6, msg=name)


def test_average_of_two_rank_and_one_rank_checkpoints_loads_everywhere(
    base_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    proc = torchrun(2, train_args(tmp_path / "r2", "--train.max_steps=5"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    two, one = tmp_path / "r2" / "checkpoints" / "step5", base_run / "checkpoints" / "step20"
    ten = base_run / "checkpoints" / "step10"
    assert json.loads((two / "COMMITTED.json").read_text())["world_size"] == 2

    # the commands run in-process: each would start a Python that imports torch
    uniform = tmp_path / "uniform"
    assert main(["checkpoint", "average", str(two), str(base_run), "--out", str(uniform)]) == 0
    _assert_mix(uniform, [(0.5, two), (0.5, one)])  # base_run's newest: step20
    weighted = tmp_path / "weighted"
    average_checkpoints([two, one], weighted, weights=[3, 1])
    _assert_mix(weighted, [(0.75, two), (0.25, one)])
    average_checkpoints([ten, one], tmp_path / "ones")
    _assert_mix(tmp_path / "ones", [(0.5, ten), (0.5, one)])

    marker = json.loads((uniform / "COMMITTED.json").read_text())
    assert marker["contents"] == ["model"]
    assert [s["step"] for s in marker["averaged_from"]] == [5, 20]
    resumed = train(tmp_path / "soup", "--train.max_steps=1", f"--checkpoint.load={uniform}")
    assert "holds weights only" in resumed.stderr
    assert main(["convert", "to-hf", str(uniform), str(tmp_path / "hf")]) == 0
    capsys.readouterr()
    assert main(["eval", str(uniform), "--tasks", "copa", "--limit", "4", "--json"]) == 0
    assert "copa" in json.loads(capsys.readouterr().out)["accuracy"]


def _other_model(tmp: Path, base: Path, **change) -> Path:
    cfg = dataclasses.replace(model_config_of(base), **change)
    return save_model(build_model(cfg), tmp / "other", {"model": dataclasses.asdict(cfg)})


@pytest.mark.parametrize(
    "case, match",
    [
        ("count", r"--weights: 1 values for 2 checkpoints; give one per checkpoint"),
        ("zero", r"nonzero sum"),
        ("missing", r"checkpoint .*nope: not found"),
        ("shape", r"'embeddings.weight' is \[50304, 32\] torch.float32, .* has \[50304, 64\]"),
        ("keys", r"other: lacks tensor 'layers.1.*' compared with .*step10; average checkpoints"),
        ("out", r"--out .*: already exists"),
    ],
)
def test_average_errors_name_the_problem(base_run: Path, tmp_path: Path, case: str, match: str):
    a, b = base_run / "checkpoints" / "step10", base_run / "checkpoints" / "step20"
    paths, weights, out = [a, b], None, tmp_path / "out"
    if case == "count":
        weights = [1.0]
    elif case == "zero":
        weights = [1.0, -1.0]
    elif case == "missing":
        paths = [a, tmp_path / "nope"]
    elif case == "shape":
        paths = [a, _other_model(tmp_path, a, d_model=32)]
    elif case == "keys":
        paths = [a, _other_model(tmp_path, a, n_layers=1)]
    else:
        out.mkdir()
        (out / "x").touch()
    with pytest.raises(OlmoError, match=match):
        average_checkpoints(paths, out, weights)
    if case != "out":
        assert not out.exists()  # nothing half-written
