"""Read back what an offline wandb run recorded, from its ``run-<id>.wandb`` file (for tests).

wandb 0.31 writes no ``wandb-summary.json`` or ``config.yaml`` offline, and ships no Python reader; the file is
a LevelDB-style log (header ``:W&B`` + magic 0xBEE1 + version, then 32 KiB blocks of records with a 7-byte
header: crc32, length, type FULL/FIRST/MIDDLE/LAST), each record a ``wandb.proto`` ``Record`` message.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_payloads(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<H", data[4:6])[0] == 0xBEE1, f"{path} is not a .wandb file"
    position, pending = HEADER, b""
    while position + HEADER <= len(data):
        left_in_block = BLOCK - position % BLOCK
        if left_in_block < HEADER:  # trailer too small for a header: zero padding
            position += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        payload = data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            yield pending + payload


def read_records(path: Path, timeout_s: float = 30.0) -> list[Any]:
    """The ``Record`` messages of a finished run. ``run.finish()`` can return before wandb-core has written the
    file out, so wait (up to ``timeout_s``) until it holds the final ``exit`` record."""
    from wandb.proto import wandb_internal_pb2 as pb

    deadline = time.monotonic() + timeout_s
    while True:
        records = []
        for payload in read_payloads(path):
            record = pb.Record()
            record.ParseFromString(payload)
            records.append(record)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def read_run(path: Path) -> dict[str, Any]:
    """``{"config": {key: value}, "history": [{key: value}, ...], "files": [path, ...]}`` of one run file."""
    config: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    files: list[str] = []
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "config":
            for item in record.config.update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "history":
            history.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
        elif kind == "files":
            files += [f.path for f in record.files.files]
    return {"config": config, "history": history, "files": files}
