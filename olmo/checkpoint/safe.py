"""Reading a checkpoint someone else wrote without running their code.

torch reads DCP's `.metadata` with plain `pickle.load` (FileSystemReader.read_metadata) and the
non-tensor values (optimizer hyperparameters) with `torch.load(weights_only=False)`
(DefaultLoadPlanner.load_bytes): a crafted checkpoint runs code in both, and its crc32s prove
nothing, since whoever crafts it writes them. Here the metadata goes through an unpickler that
resolves only the classes DCP metadata is made of and is then type-checked; every other pickled
file (values, RNG states) through `torch.load(weights_only=True)`. What does not pass is an
OlmoError naming the file; at resume the checkpoint is set aside like a corrupt one.
"""

from __future__ import annotations

import io
import json
import pickle
import re
from pathlib import Path, PosixPath, PurePosixPath
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import (
    _MEM_FORMAT_ENCODING,
    BytesStorageMetadata,
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    StorageMeta,
    TensorProperties,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import ReadItem

from olmo.checkpoint.layout import (
    DCP_METADATA,
    TRAINER_STATE,
    marked_files,
    plain_name,
    verify_files,
)
from olmo.errors import OlmoError

RNG_RE = re.compile(r"^rng-rank\d+\.pt$")
_TRUST = "use another checkpoint, from a source you trust"


def _layout(name: Any) -> torch.layout:
    """Stands in for torch.serialization._get_layout, which caches into a function attribute."""
    layouts = {str(v): v for v in vars(torch).values() if isinstance(v, torch.layout)}
    if not isinstance(name, str) or name not in layouts:
        raise pickle.UnpicklingError(f"unknown tensor layout {name!r}")
    return layouts[name]


_DCP_CLASSES = (
    Metadata,
    MetadataIndex,
    StorageMeta,
    TensorStorageMetadata,
    BytesStorageMetadata,
    ChunkStorageMetadata,
    TensorProperties,
    _StorageInfo,
)
# The globals a `.metadata` refers to, recorded (find_class) from sync and async, 1- and 2-rank
# checkpoints of this kit under torch 2.13: DCP's dataclasses and memory-format enum, torch.Size,
# dtypes (`torch float32`), layouts (`_get_layout('torch.strided')`) and the writer's path
# (StorageMeta.checkpoint_id; `pathlib._local` when Python 3.13 wrote it). DCP's metadata module
# holds the same classes in every torch this kit supports (2.6 on). Nothing else resolves.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{(c.__module__, c.__name__): c for c in (*_DCP_CLASSES, _MEM_FORMAT_ENCODING)},
    ("torch", "Size"): torch.Size,
    **{("torch", k): v for k, v in vars(torch).items() if isinstance(v, torch.dtype)},
    ("torch.serialization", "_get_layout"): _layout,
    **{
        (m, c.__name__): c
        for m in ("pathlib", "pathlib._local")
        for c in (PosixPath, PurePosixPath)
    },
}


class _MetadataUnpickler(pickle._Unpickler):
    """The pure-Python unpickler (its opcodes can be overridden) with two restrictions:
    globals only from ALLOWED_GLOBALS, and BUILD only on instances of the DCP classes (on a class
    it would set class attributes, e.g. patch pathlib for the rest of the process)."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refers to {module}.{name}, which DCP metadata never holds"
            )
        return ALLOWED_GLOBALS[(module, name)]

    def _load_build(self) -> None:
        if len(self.stack) < 2 or type(self.stack[-2]) not in _DCP_CLASSES:
            raise pickle.UnpicklingError("sets the state of an object DCP metadata never holds")
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = _load_build


def read_dcp_metadata(ckpt: Path) -> Metadata:
    """The DCP metadata of `ckpt`, unpickled without running code and type-checked."""
    path = Path(ckpt) / DCP_METADATA
    try:
        with open(path, "rb") as f:
            md = _MetadataUnpickler(f).load()
    except FileNotFoundError:
        raise OlmoError(f"{path}: missing; not a DCP checkpoint") from None
    except Exception as e:  # any unpickling failure: truncated, garbled or crafted
        raise OlmoError(f"{path}: not loaded ({_why(e)}); {_TRUST}") from None
    try:
        problem = _metadata_problem(md)
    except AttributeError as e:  # built without its fields: NEWOBJ without BUILD
        problem = f"missing field {e.name!r}"
    if problem:
        raise OlmoError(f"{path}: not DCP metadata ({problem}); {_TRUST}")
    return md


def _metadata_problem(md: Any) -> str | None:
    if not isinstance(md, Metadata) or not isinstance(md.state_dict_metadata, dict):
        return "no state_dict_metadata"
    for fqn, entry in md.state_dict_metadata.items():
        if not isinstance(fqn, str) or not _entry_ok(entry):
            return f"bad entry for {fqn!r}"
    if not isinstance(md.storage_data, dict):
        return "no storage_data"
    for index, info in md.storage_data.items():
        if not (_index_ok(index) and _storage_ok(info)):
            return f"bad storage entry for {getattr(index, 'fqn', index)!r}"
    pd = md.planner_data
    if pd is not None and not (
        isinstance(pd, dict)
        and all(isinstance(k, str) and _is_tuple_of(v, (str, int)) for k, v in pd.items())
    ):
        return "bad planner_data"
    if not isinstance(md.storage_meta, (StorageMeta, type(None))):
        return "bad storage_meta"
    return None


def _is_tuple_of(value: Any, kinds: tuple[type, ...]) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, kinds) for v in value)


def _entry_ok(entry: Any) -> bool:
    if isinstance(entry, BytesStorageMetadata):
        return True
    if not isinstance(entry, TensorStorageMetadata) or not isinstance(entry.size, torch.Size):
        return False
    props, dims = entry.properties, len(entry.size)
    return (
        isinstance(props, TensorProperties)
        and isinstance(props.dtype, torch.dtype)
        and isinstance(entry.chunks, list)
        and all(_chunk_ok(c, dims) for c in entry.chunks)
    )


def _chunk_ok(chunk: Any, dims: int) -> bool:
    return (
        isinstance(chunk, ChunkStorageMetadata)
        and isinstance(chunk.offsets, torch.Size)
        and isinstance(chunk.sizes, torch.Size)
        and len(chunk.offsets) == len(chunk.sizes) == dims
    )


def _index_ok(index: Any) -> bool:
    return (
        isinstance(index, MetadataIndex)
        and isinstance(index.fqn, str)
        and isinstance(index.offset, (torch.Size, type(None)))
        and isinstance(index.index, (int, type(None)))
    )


def _storage_ok(info: Any) -> bool:
    """A byte range of a file directly in the checkpoint dir, stored as written (no transforms)."""
    return (
        isinstance(info, _StorageInfo)
        and isinstance(info.relative_path, str)
        and plain_name(info.relative_path)
        and all(isinstance(n, int) and n >= 0 for n in (info.offset, info.length))
        and not getattr(info, "transform_descriptors", None)
    )


class SafeReader(FileSystemReader):
    """FileSystemReader whose metadata comes from read_dcp_metadata."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        md = read_dcp_metadata(Path(self.path))
        if md.storage_meta is None:
            md.storage_meta = StorageMeta()
        md.storage_meta.load_id = self.load_id
        return md


class SafePlanner(DefaultLoadPlanner):
    """DefaultLoadPlanner that unpickles non-tensor values with weights_only=True and refuses
    one stored in place of a tensor (the metadata decides which entries are values)."""

    def __init__(self, ckpt: Path):
        super().__init__()
        self.ckpt = ckpt

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        fqn = read_item.dest_index.fqn
        obj = torch.load(value, map_location="cpu", weights_only=True)
        want = self.state_dict.get(fqn)
        if isinstance(want, torch.Tensor) or isinstance(obj, torch.Tensor):
            raise OlmoError(f"{self.ckpt}: value {fqn} stored in place of a tensor; {_TRUST}")
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[fqn], obj)
        else:
            self.state_dict[fqn] = obj


def dcp_load(
    state: dict[str, Any], ckpt: Path, no_dist: bool = False, reader: SafeReader | None = None
) -> None:
    """dcp.load through SafeReader (or `reader`, one reused across loads) and SafePlanner; any
    failure is one OlmoError line."""
    try:
        dcp.load(
            state,
            storage_reader=reader or SafeReader(str(ckpt)),
            planner=SafePlanner(Path(ckpt)),
            no_dist=no_dist,
        )
    except (Exception, CheckpointException) as e:  # DCP wraps rank failures in a BaseException
        cause = _first_failure(e)
        if isinstance(cause, OlmoError):
            raise OlmoError(str(cause)) from None
        raise OlmoError(
            f"{ckpt}: cannot load ({_why(cause)}); does model.* match the run that wrote it?"
        ) from None


def _first_failure(e: BaseException) -> BaseException:
    failures = getattr(e, "failures", None)
    if isinstance(e, CheckpointException) and failures:
        return next(iter(failures.values()))[0]
    return e


def _why(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


def load_rng(path: Path) -> dict[str, Any]:
    """A per-rank RNG state file: {"torch": state, "cuda": state (optional), ...}; the states
    _set_rng_state applies must be byte tensors of the right size (other keys pass through)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, or one holding more than tensors and containers
        raise OlmoError(f"{path}: not loaded ({_why(e)}); {_TRUST}") from None
    if not (
        isinstance(state, dict)
        and _byte_state(state.get("torch"), torch.get_rng_state().numel())
        and ("cuda" not in state or _byte_state(state["cuda"]))
    ):
        raise OlmoError(f"{path}: not an RNG state written by this kit; {_TRUST}")
    return state


def _byte_state(value: Any, numel: int | None = None) -> bool:
    return (
        isinstance(value, torch.Tensor)
        and value.dtype == torch.uint8
        and value.dim() == 1
        and numel in (None, value.numel())
    )


def read_trainer_state(ckpt: Path) -> dict[str, Any]:
    """trainer_state.json: a JSON object of objects ({} when the checkpoint has none)."""
    path = Path(ckpt) / TRAINER_STATE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (ValueError, RecursionError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise OlmoError(f"{path}: not a JSON object of objects; {_TRUST}")
    return data


def _check_values(ckpt: Path) -> None:
    """The metadata, and every non-tensor value it points to loads with weights_only."""
    md = read_dcp_metadata(ckpt)
    for index, info in md.storage_data.items():
        if isinstance(md.state_dict_metadata.get(index.fqn), BytesStorageMetadata):
            path = Path(ckpt) / info.relative_path
            try:
                with open(path, "rb") as f:
                    f.seek(info.offset)
                    torch.load(io.BytesIO(f.read(info.length)), weights_only=True)
            except Exception as e:  # a crafted pickle, or a range outside the file
                raise OlmoError(
                    f"{path}: value {index.fqn} not loaded ({_why(e)}); {_TRUST}"
                ) from None


def content_problems(ckpt: Path, names: list[str]) -> list[str]:
    """Files among `names` that would not load safely, one line each (the metadata with the
    values it points to, RNG states, the trainer state); [] = all load."""
    problems = []
    for name in names:
        try:
            if name == DCP_METADATA:
                _check_values(ckpt)
            elif RNG_RE.match(name):
                load_rng(Path(ckpt) / name)
            elif name == TRAINER_STATE:
                read_trainer_state(ckpt)
        except OlmoError as e:
            problems.append(str(e))
    return problems


def checkpoint_problems(ckpt: Path, names: list[str] | None = None) -> list[str]:
    """verify_files (sizes and crc32s), then, when those are intact, content_problems."""
    problems = verify_files(ckpt, names)
    if problems:
        return problems
    return content_problems(ckpt, marked_files(ckpt) if names is None else names)
