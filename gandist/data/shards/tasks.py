"""One shard each: the tasks (which items, under which fingerprint) and writing one atomically.

A shard is written as `.<name>.tmp-<pid>`, its sidecar `.<name>.stats.json` (counts, sha256, a
fingerprint of what the shard should hold) is written next, and only then the tar is renamed to
its final name; a re-run reuses every shard whose tar and matching sidecar exist (`reusable`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from gandist.data.shards.encode import Job, Reader, Skip, add_member, sample_members
from gandist.data.shards.format import FORMAT_VERSION, SHARD_PATTERN, sha256_file
from gandist.data.shards.plan import Item, Plan
from gandist.data.shards.report import Issues, strict_error
from gandist.seeds import derive_seed


@dataclass(frozen=True)
class Task:
    """One shard: its number, file name, items and the fingerprint its sidecar must carry."""

    index: int
    name: str
    items: tuple[Item, ...]
    fingerprint: str


@dataclass
class ShardStats:
    """A written (or reused) shard; persisted as the sidecar `.<name>.stats.json`."""

    name: str
    fingerprint: str
    num_samples: int
    sha256: str
    num_bytes: int
    issues: Issues

    def to_json(self) -> str:
        d = {
            k: getattr(self, k)
            for k in ("name", "fingerprint", "num_samples", "sha256", "num_bytes")
        }
        return json.dumps({**d, **self.issues.to_dict()}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> ShardStats:
        d = json.loads(text)
        return cls(
            d["name"],
            d["fingerprint"],
            int(d["num_samples"]),
            d["sha256"],
            int(d["num_bytes"]),
            Issues.from_dict(d),
        )


def sidecar_path(out_dir: Path, name: str) -> Path:
    return out_dir / f".{name}.stats.json"


SHARD_ORDER = "permuted-1"  # in each shard's fingerprint: shards cut in another order are redone


def shard_slots(size: int) -> list[int]:
    """Source index -> its place in the shards: one fixed permutation of the whole data set.

    Folders (one subfolder per class) and many data sets are stored class by class, and a
    loader worker streams whole shards through a buffer, so shards cut in source order would
    give batches of one class. Permuted, every shard is a random sample of the data set (the
    WebDataset practice: shuffle before writing). Fixed, so a re-run gives the same shards."""
    g = torch.Generator().manual_seed(derive_seed(0, "shard-order"))
    return torch.randperm(size, generator=g).tolist()


def make_tasks(plan: Plan, per_shard: int, job: Job) -> list[Task]:
    """Shard i <- the usable items whose slot (shard_slots) is in [i*S, (i+1)*S), in slot order;
    every i gets a task, even an empty one, so a stale tar from an earlier run under that name
    is cleared. Slots cover the whole index space, skipped items included, so skipping one item
    moves no other."""
    slots = shard_slots(plan.size)
    groups: list[list[tuple[int, Item]]] = [[] for _ in range(math.ceil(plan.size / per_shard))]
    for item in plan.items:
        slot = slots[item.index]
        groups[slot // per_shard].append((slot, item))
    common = [
        FORMAT_VERSION,
        SHARD_ORDER,
        job.cfg.source,
        job.cfg.n_samples,
        job.cfg.seed,
        job.image_format,
        job.channels,
        job.image_size,
        job.label_type,
        plan.label_names,
    ]
    tasks = []
    for i, group in enumerate(groups):
        items = [item for _, item in sorted(group, key=lambda pair: pair[0])]
        payload = json.dumps([common, [[it.index, it.key, it.rel, it.label] for it in items]])
        digest = hashlib.sha256(payload.encode()).hexdigest()
        tasks.append(Task(i, SHARD_PATTERN.format(i), tuple(items), digest))
    return tasks


def reusable(out_dir: Path, task: Task) -> ShardStats | None:
    """The stats of a complete shard from an earlier run with the same inputs, else None.

    Complete: the sidecar (written before the tar's rename) has this task's fingerprint and the
    tar exists with the recorded size (empty shards have no tar).
    """
    side = sidecar_path(out_dir, task.name)
    try:
        stats = ShardStats.from_json(side.read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if stats.fingerprint != task.fingerprint or stats.name != task.name:
        return None
    tar = out_dir / task.name
    if stats.num_samples == 0:
        return stats if not tar.exists() else None
    return stats if tar.is_file() and tar.stat().st_size == stats.num_bytes else None


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_shard(
    task: Task, job: Job, reader: Reader, on_sample: Callable[[], None] | None = None
) -> ShardStats:
    """Write one shard: temporary tar, then sidecar, then rename; the temp never survives."""
    out_dir = Path(job.out_dir)
    final, side = out_dir / task.name, sidecar_path(out_dir, task.name)
    final.unlink(missing_ok=True)  # an outdated shard must not pair with the new sidecar
    side.unlink(missing_ok=True)
    tmp = out_dir / f".{task.name}.tmp-{os.getpid()}"
    issues, count = Issues(), 0
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for item in task.items:
                members = _read_members(item, job, reader, issues)
                if on_sample:
                    on_sample()
                if members is None:
                    continue
                for ext, data in members.items():
                    add_member(tar, f"{item.key}.{ext}", data)
                count += 1
        sha, size = (sha256_file(tmp), tmp.stat().st_size) if count else ("", 0)
        stats = ShardStats(task.name, task.fingerprint, count, sha, size, issues)
        _replace_text(side, stats.to_json())
        if count:
            os.replace(tmp, final)
        return stats
    finally:
        tmp.unlink(missing_ok=True)


def _read_members(item: Item, job: Job, reader: Reader, issues: Issues) -> dict[str, bytes] | None:
    """A sample's members, or None when it is skipped; records (or, strict, raises) issues."""
    where = item.path or item.key
    try:
        x, y, converted = reader.read(item)
    except Skip as skip:
        if job.strict:
            raise strict_error(skip.reason, where) from skip
        issues.add(skip.reason, where)
        return None
    if converted:
        if job.strict:
            raise strict_error(converted, where)
        issues.add(converted, where)
    return sample_members(x, y, item, job)
