"""Read an offline W&B run file (`run-<id>.wandb`) back, for tests.

The file is LevelDB-log framed: a 7-byte header (b":W&B", a 2-byte magic, a version byte), then
32 KiB blocks of records, each `crc32c (4) | length (2, little endian) | type (1)` + payload,
where type 1 = full, 2/3/4 = first/middle/last fragment, and a block tail shorter than a record
header is zero padding. Payloads are `wandb_internal_pb2.Record` protobufs.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7


def records(path: str | Path) -> list[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file")
    out, pos, parts = [], HEADER, b""
    while pos + 7 <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < 7:
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        if kind == 1:
            parts = payload
        elif kind == 2:
            parts = payload
            continue
        elif kind == 3:
            parts += payload
            continue
        elif kind == 4:
            parts += payload
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(parts)
        out.append(rec)
    return out


def history(path: str | Path) -> list[dict[str, Any]]:
    """Each logged row as {key: value}, with `_step`."""
    rows = []
    for rec in records(path):
        if rec.WhichOneof("record_type") == "history":
            rows.append(
                {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in rec.history.item
                }
            )
    return rows


def config(path: str | Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        items = (
            rec.config.update
            if kind == "config"
            else (rec.run.config.update if kind == "run" else [])
        )
        for item in items:
            out[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out


def run_id(path: str | Path) -> str:
    for rec in records(path):
        if rec.WhichOneof("record_type") == "run":
            return rec.run.run_id
    raise ValueError(f"{path}: no run record")


def run_info(path: str | Path) -> dict[str, Any]:
    """The run record's identity: project, entity, group, tags, job type, name."""
    for rec in records(path):
        if rec.WhichOneof("record_type") == "run":
            r = rec.run
            return {
                "project": r.project,
                "entity": r.entity,
                "group": r.run_group,
                "tags": list(r.tags),
                "job_type": r.job_type,
                "name": r.display_name,
            }
    raise ValueError(f"{path}: no run record")


def summary(path: str | Path) -> dict[str, Any]:
    """The run summary as W&B shows it: the summary updates merged in order."""
    out: dict[str, Any] = {}
    for rec in records(path):
        if rec.WhichOneof("record_type") == "summary":
            for item in rec.summary.update:
                out[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out


def artifacts(path: str | Path) -> list[dict[str, Any]]:
    """Logged artifacts: name, type, aliases, metadata, and {file name: staged local path}."""
    out = []
    for rec in records(path):
        if rec.WhichOneof("record_type") == "artifact":
            a = rec.artifact
            out.append(
                {
                    "name": a.name,
                    "type": a.type,
                    "aliases": list(a.aliases),
                    "metadata": json.loads(a.metadata or "{}"),
                    "files": {c.path: c.local_path for c in a.manifest.contents},
                }
            )
    return out
