"""Read the records of an offline `.wandb` transaction log (tests only).

wandb ≥ 0.30 no longer ships a Python reader (`wandb.sdk.internal.datastore` was removed with the
legacy service), so this follows the file format its Go core writes: a 7-byte header
(`:W&B`, magic 0xBEE1, version 0), then LevelDB-log framing — 32 KiB blocks of chunks, each with a
7-byte header (checksum u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last) — around
serialized `wandb_internal_pb2.Record` protobufs. Checksums are verified (CRC-32 seeded with the
chunk type, as the writer computes them).
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _chunks(data: bytes) -> Iterator[tuple[int, bytes]]:
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), f"not a .wandb file: {data[:7]!r}"
    pos = 7
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer too small for a header: zero padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        body = data[pos + 7 : pos + 7 + length]
        if kind == 0 and length == 0:  # zero fill to the end of a block
            pos += left
            continue
        assert zlib.crc32(body, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF == crc, f"bad crc at {pos}"
        yield kind, body
        pos += 7 + length


def read_records(path: Path) -> list[pb.Record]:
    records, parts = [], []
    for kind, body in _chunks(Path(path).read_bytes()):
        parts.append(body)
        if kind in (FULL, LAST):
            rec = pb.Record()
            rec.ParseFromString(b"".join(parts))
            records.append(rec)
            parts = []
    return records


def history_rows(records: list[pb.Record]) -> list[dict[str, Any]]:
    """Every `run.log` row as {key: value} (values JSON-decoded)."""
    rows = []
    for rec in records:
        if rec.WhichOneof("record_type") == "history":
            rows.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
    return rows


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)
