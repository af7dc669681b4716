"""`olmo checkpoint info|verify|consolidate` on a real run's DCP checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from olmo.checkpoint.io import load_model
from olmo.cli import main
from olmo.model import build_model
from tests.checkpoint.conftest import copy_run
from tests.helpers import olmo

pytestmark = pytest.mark.slow


def test_info_json(base_run: Path):
    info = json.loads(olmo("checkpoint", "info", str(base_run), "--json").stdout)
    assert info["path"] == str(base_run / "checkpoints" / "step20")
    assert info["committed"] and info["step"] == 20 and info["world_size"] == 1
    assert info["contents"] == ["model", "optim", "trainer", "data_loader", "rng"]
    model = load_model(base_run / "checkpoints" / "step20")
    n = model.cfg.num_params()
    assert info["tensors"]["model"] == {
        "tensors": len(model.state_dict()),
        "numel": n,
        "bytes": 4 * n,
        "values": 0,
    }
    # AdamW: exp_avg and exp_avg_sq per parameter plus one `step` scalar each
    optim = info["tensors"]["optim"]
    assert optim["tensors"] == 3 * len(model.state_dict()) and optim["numel"] == 2 * n + len(
        model.state_dict()
    )
    assert info["trainer"]["step"] == 20 and info["data_loader"]["steps_consumed"] == 20
    assert info["rng_files"] == 1 and info["bytes"] > 4 * 3 * n
    assert info["config"]["model"]["d_model"] == 64 and info["config"]["seq_len"] == 32
    assert [(r["name"], r["latest"]) for r in info["run"]] == [
        ("step20", True),
        ("step15", False),
        ("step10", False),
    ]


def test_info_text_of_one_checkpoint(base_run: Path):
    out = olmo("checkpoint", "info", str(base_run / "checkpoints" / "step15")).stdout
    assert out.splitlines()[0] == str(base_run / "checkpoints" / "step15")
    for needle in ("step         15, written by 1 rank(s)", "model        9 tensors", "d_model=64"):
        assert needle in out, (needle, out)


def test_verify_ok(base_run: Path):
    proc = olmo("checkpoint", "verify", str(base_run))
    assert proc.stdout.count("ok  ") == 3 and "BAD" not in proc.stdout


def test_consolidate_torch_equals_trained_weights(base_run: Path, tmp_path: Path):
    ckpt = base_run / "checkpoints" / "step20"
    out = tmp_path / "model.pt"
    olmo("checkpoint", "consolidate", str(ckpt), str(out))
    weights = torch.load(out, weights_only=True)
    trained = load_model(ckpt)
    fresh = build_model(trained.cfg, seed=None)
    fresh.load_state_dict(weights)  # strict: exactly the model's keys
    for name, t in trained.state_dict().items():
        assert torch.equal(weights[name], t), name
    assert not list(tmp_path.glob(".*tmp*"))


def test_consolidate_hf_gives_same_logits(base_run: Path, tmp_path: Path):
    transformers = pytest.importorskip("transformers")
    ckpt = base_run / "checkpoints" / "step20"
    olmo("checkpoint", "consolidate", str(base_run), str(tmp_path / "hf"), "--format", "hf")
    hf = transformers.OlmoForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ours = load_model(ckpt).eval()
    tokens = torch.randint(0, 50280, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (hf(tokens).logits - ours(tokens)).abs().max().item()
    assert diff < 1e-4, diff


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    """The `olmo` entry point in-process (the subprocess path is covered above)."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_of_each_command(capsys):
    for cmd in ("info", "verify", "consolidate"):
        with pytest.raises(SystemExit) as exc:
            main(["checkpoint", cmd, "--help"])
        assert exc.value.code == 0
        assert capsys.readouterr().out.startswith("usage: olmo checkpoint " + cmd)


def _one_line_error(result, code: int, needle: str) -> None:
    got, _, err = result
    assert got == code, (got, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert needle in err, err


def test_errors_missing_uncommitted_and_existing_output(base_run: Path, tmp_path: Path, capsys):
    missing = tmp_path / "nope"
    for cmd in (
        ["info", str(missing)],
        ["verify", str(missing)],
        ["consolidate", str(missing), "o"],
    ):
        _one_line_error(_cli(capsys, "checkpoint", *cmd), 2, f"{missing}: not found")
    run = copy_run(base_run, tmp_path / "run")
    half = run / "checkpoints" / ".step25.tmp"
    shutil.copytree(run / "checkpoints" / "step20", half)
    (half / "COMMITTED.json").unlink()
    _one_line_error(_cli(capsys, "checkpoint", "info", str(half)), 2, "no COMMITTED.json")
    out = tmp_path / "w.pt"
    _one_line_error(
        _cli(capsys, "checkpoint", "consolidate", str(half), str(out)), 2, "not a committed"
    )
    assert not out.exists()
    code, stdout, _ = _cli(capsys, "checkpoint", "verify", str(half))
    assert code == 1 and "no COMMITTED.json" in stdout
    out.write_bytes(b"x")
    _one_line_error(_cli(capsys, "checkpoint", "consolidate", str(run), str(out)), 2, "exists")
    _one_line_error(_cli(capsys, "checkpoint", "info", str(tmp_path)), 2, "neither")
