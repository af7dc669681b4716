"""The safe checkpoint reader on small hand-made DCP checkpoints (no training): which globals the
metadata unpickler resolves, what it refuses, and the shape checks of marker and RNG files."""

from __future__ import annotations

import pickle
from pathlib import Path, PosixPath

import pytest
import torch
import torch.distributed.checkpoint as dcp

from olmo.checkpoint.layout import MARKER, file_checksums, read_marker, write_marker
from olmo.checkpoint.safe import (
    ALLOWED_GLOBALS,
    _layout,
    checkpoint_problems,
    dcp_load,
    load_rng,
    read_dcp_metadata,
)
from olmo.errors import OlmoError
from tests.checkpoint.conftest import Payload, refresh_checksums, touch_then


def _save(ckpt: Path, state: dict) -> Path:
    """A committed single-process DCP checkpoint of `state` (sizes and crc32s in the marker)."""
    dcp.save(state, checkpoint_id=str(ckpt), no_dist=True)
    names = sorted(p.name for p in ckpt.iterdir())
    write_marker(ckpt, {"step": 1, "world_size": 1, "files": file_checksums(ckpt, names)})
    return ckpt


def _state() -> dict:
    return {
        "model": {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3, dtype=torch.bfloat16)},
        "optim": {"param_groups": [{"lr": 0.1, "betas": (0.9, 0.95), "fused": None}]},
    }


class _Recorder(pickle.Unpickler):
    def __init__(self, f, seen: set):
        super().__init__(f)
        self.seen = seen

    def find_class(self, module: str, name: str):
        self.seen.add((module, name))
        return super().find_class(module, name)


def test_allowed_globals_cover_what_dcp_writes(tmp_path: Path):
    ckpt = _save(tmp_path / "c", _state())
    seen: set = set()
    with open(ckpt / ".metadata", "rb") as f:
        _Recorder(f, seen).load()
    assert seen <= ALLOWED_GLOBALS.keys(), seen - ALLOWED_GLOBALS.keys()
    assert ("torch", "bfloat16") in seen and ("torch.serialization", "_get_layout") in seen
    md = read_dcp_metadata(ckpt)
    assert md.state_dict_metadata["model.w"].size == torch.Size([2, 3])
    assert md.state_dict_metadata["model.b"].properties.dtype == torch.bfloat16
    # nothing callable beyond DCP's dataclasses, torch.Size, the path classes and a layout lookup
    for (module, _), obj in ALLOWED_GLOBALS.items():
        assert isinstance(obj, (type, torch.dtype)) or obj is _layout, (module, obj)
        if isinstance(obj, type):
            assert obj.__module__.startswith(("torch.distributed.checkpoint", "pathlib")) or (
                obj is torch.Size
            )


def test_own_checkpoint_round_trips(tmp_path: Path):
    ckpt = _save(tmp_path / "c", _state())
    assert checkpoint_problems(ckpt) == []
    state = {
        "model": {"w": torch.zeros(2, 3), "b": torch.zeros(3, dtype=torch.bfloat16)},
        "optim": {"param_groups": [{"lr": 0.0, "betas": (0.0, 0.0), "fused": True}]},
    }
    dcp_load(state, ckpt, no_dist=True)
    assert torch.equal(state["model"]["w"], _state()["model"]["w"])
    assert state["optim"]["param_groups"][0] == {"lr": 0.1, "betas": (0.9, 0.95), "fused": None}


def _rewrite(ckpt: Path, name: str, data: bytes) -> None:
    (ckpt / name).write_bytes(data)
    refresh_checksums(ckpt, name)


def test_metadata_with_a_foreign_global_runs_nothing(tmp_path: Path):
    ckpt = _save(tmp_path / "c", _state())
    touched = tmp_path / "touched"
    _rewrite(ckpt, ".metadata", pickle.dumps(Payload(touch_then(touched))))
    for call in (
        lambda: read_dcp_metadata(ckpt),
        lambda: dcp_load(_state(), ckpt, no_dist=True),
    ):
        with pytest.raises(OlmoError, match=r"\.metadata: not loaded .*builtins\.eval"):
            call()
    assert checkpoint_problems(ckpt)[0].startswith(f"{ckpt / '.metadata'}: not loaded")
    assert not touched.exists()


def test_build_on_a_class_is_refused(tmp_path: Path):
    """BUILD with slot state on an allowed *class* would setattr on it (patching pathlib for
    the whole process); only instances of DCP's classes may receive state."""
    ckpt = _save(tmp_path / "c", _state())
    crafted = b"cpathlib\nPosixPath\n(N}S'_crafted'\nI1\nstb."
    _rewrite(ckpt, ".metadata", crafted)
    with pytest.raises(OlmoError, match="sets the state of an object"):
        read_dcp_metadata(ckpt)
    assert not hasattr(PosixPath, "_crafted")


def test_metadata_of_the_wrong_shape(tmp_path: Path):
    ckpt = _save(tmp_path / "c", _state())
    md = read_dcp_metadata(ckpt)
    index = next(iter(md.storage_data))
    md.storage_data[index].relative_path = "../elsewhere.distcp"
    _rewrite(ckpt, ".metadata", pickle.dumps(md))
    with pytest.raises(OlmoError, match=r"not DCP metadata \(bad storage entry"):
        read_dcp_metadata(ckpt)
    _rewrite(ckpt, ".metadata", pickle.dumps({"state_dict_metadata": {}}))
    with pytest.raises(OlmoError, match="not DCP metadata"):
        read_dcp_metadata(ckpt)
    from torch.distributed.checkpoint.metadata import Metadata

    _rewrite(ckpt, ".metadata", pickle.dumps(Metadata.__new__(Metadata)))  # no fields at all
    with pytest.raises(OlmoError, match="missing field 'state_dict_metadata'"):
        read_dcp_metadata(ckpt)
    _rewrite(ckpt, ".metadata", b"\x80\x04garbage")
    with pytest.raises(OlmoError, match=r"\.metadata: not loaded"):
        read_dcp_metadata(ckpt)


def test_value_with_code_runs_nothing(tmp_path: Path):
    """torch's DefaultLoadPlanner reads non-tensor values with weights_only=False."""
    touched = tmp_path / "touched"
    state = _state()
    state["optim"]["param_groups"][0]["lr"] = Payload(touch_then(touched))
    ckpt = _save(tmp_path / "c", state)
    assert not touched.exists()
    with pytest.raises(OlmoError, match="not loaded|cannot load"):
        dcp_load(_state(), ckpt, no_dist=True)
    problems = checkpoint_problems(ckpt)
    assert len(problems) == 1 and "value optim.param_groups.0.lr not loaded" in problems[0]
    assert not touched.exists()


def test_value_in_place_of_a_tensor(tmp_path: Path):
    state = _state()
    state["model"]["w"] = 7  # the metadata then says "value" where the model has a tensor
    ckpt = _save(tmp_path / "c", state)
    with pytest.raises(OlmoError, match="model.w stored in place of a tensor"):
        dcp_load(_state(), ckpt, no_dist=True)


MARKERS = [
    ("{", "not JSON"),
    ("[1, 2]", "a JSON list, not an object"),
    ('{"files": {"a": {"crc32": 1}}}', "lacks an integer 'crc32' or 'size'"),
    ('{"files": {"a": {"crc32": 1, "size": "9"}}}', "lacks an integer"),
    ('{"files": {"a": 3}}', "lacks an integer"),
    ('{"files": {"../../etc/passwd": {"crc32": 1, "size": 9}}}', "not a plain file name"),
    ('{"files": []}', "bad 'files'"),
    ('{"step": "20"}', "bad 'step'"),
    ('{"step": true}', "bad 'step'"),
    ('{"world_size": 0}', "bad 'world_size'"),
    ('{"time": NaN}', "bad 'time'"),
    ('{"time": 1e300}', "bad 'time'"),
    ('{"contents": "model"}', "bad 'contents'"),
    ('{"contents": [1]}', "bad 'contents'"),
    ("[" * 100000, "not JSON"),
]


@pytest.mark.parametrize("text,needle", MARKERS)
def test_marker_of_the_wrong_shape(tmp_path: Path, text: str, needle: str):
    (tmp_path / MARKER).write_text(text)
    with pytest.raises(OlmoError) as e:
        read_marker(tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / MARKER}: corrupt marker file (") and needle in msg, msg
    assert msg.endswith("; use an older checkpoint") and "\n" not in msg


def test_rng_files(tmp_path: Path):
    good = tmp_path / "good.pt"
    torch.save({"torch": torch.get_rng_state()}, good)
    assert torch.equal(load_rng(good)["torch"], torch.get_rng_state())
    touched = tmp_path / "touched"
    bad = {
        "garbage": b"not a torch file",
        "code": Payload(touch_then(touched)),
        "list": [torch.get_rng_state()],
        "short": {"torch": torch.zeros(3, dtype=torch.uint8)},
        "float": {"torch": torch.get_rng_state().float()},
        "bad cuda": {"torch": torch.get_rng_state(), "cuda": torch.zeros(2, 2)},
    }
    for what, content in bad.items():
        path = tmp_path / "rng-rank0.pt"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            torch.save(content, path)
        with pytest.raises(OlmoError, match=r"rng-rank0\.pt: not") as e:
            load_rng(path)
        assert "\n" not in str(e.value), what
    assert not touched.exists()
