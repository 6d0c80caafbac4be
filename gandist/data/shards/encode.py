"""Reading and encoding: a planned item -> its image and label tensors -> its tar members.

Unusable files raise `Skip` with a reason (gandist.data.shards.report.REASONS); tar members get
fixed metadata (mtime 0, uid/gid 0, a fixed order) so shards are byte-reproducible.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from gandist.config import DataConfig
from gandist.data.base import SourceData
from gandist.data.shards.format import encode_image, encode_label, tensor_to_uint8
from gandist.data.shards.plan import Item, Plan
from gandist.data.sources.folder import ImageFolderSource
from gandist.data.sources.pil import ImageReadError, ImageTransform

DEFAULT_SHARD_SIZE = 1000
SIZE_PROBE_SAMPLES = 8  # samples encoded to turn --shard-bytes into a sample count
SIZE_PROBE_TRIES = 64  # give up looking for readable probe samples after this many

_TAR_BLOCK = 512


@dataclass(frozen=True)
class Job:
    """What a worker process needs to write shards; picklable (spawn-safe)."""

    cfg: DataConfig
    out_dir: str
    image_format: str
    strict: bool
    label_type: str
    num_labels: int
    channels: int
    image_size: int
    folder: bool
    max_image_pixels: int | None  # PIL's bomb limit in the parent, so workers agree with it


class Skip(Exception):
    """A sample left out for `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _probe(path: str) -> tuple[str, tuple[int, int]] | None:
    """(mode, size) from the header only; None if PIL cannot even open it (the full read then
    says why)."""
    try:
        with Image.open(path) as img:
            return img.mode, img.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


class Reader:
    """Item -> (image, label, conversion reason or None), raising Skip for unusable files."""

    def __init__(self, job: Job, src: SourceData | None) -> None:
        self.job = job
        self.src = src
        self.transform = ImageTransform(job.channels, job.image_size)
        self.target_mode = "L" if job.channels == 1 else "RGB"

    def read(self, item: Item) -> tuple[torch.Tensor, torch.Tensor, str | None]:
        if not self.job.folder:
            assert self.src is not None
            x, y = self.src.dataset[item.index]
            return x, y, None
        return self._read_file(item)

    def _read_file(self, item: Item) -> tuple[torch.Tensor, torch.Tensor, str | None]:
        assert item.path is not None and item.label is not None
        head = _probe(item.path)
        if head is not None and min(head[1]) * 4 < self.job.image_size:
            raise Skip("too_small")
        try:
            x, _ = ImageFolderSource([Path(item.path)], [0], self.transform)[0]
        except ImageReadError as exc:
            bomb = isinstance(exc.__cause__, Image.DecompressionBombError)
            raise Skip("too_large" if bomb else "corrupt") from exc
        converted = "converted_mode" if head and head[0] != self.target_mode else None
        return x, self._label(item.label), converted

    def _label(self, label: int | tuple[int, ...]) -> torch.Tensor:
        if self.job.label_type == "multi":
            y = torch.zeros(self.job.num_labels, dtype=torch.float32)
            y[list(label)] = 1.0  # type: ignore[arg-type]
            return y
        return torch.tensor(int(label), dtype=torch.int64)  # type: ignore[arg-type]


def sample_members(x: torch.Tensor, y: torch.Tensor, item: Item, job: Job) -> dict[str, bytes]:
    """One sample's tar members by extension, in write order: image, label, json."""
    members = {job.image_format: encode_image(tensor_to_uint8(x), job.image_format)}
    labels = encode_label(y, job.label_type)
    meta = json.loads(labels.pop("json")) if "json" in labels else {}
    if item.rel is not None:
        meta["source_path"] = item.rel
    members.update(labels)
    members["json"] = json.dumps(meta).encode()
    return members


def _tar_size(members: dict[str, bytes]) -> int:
    """Bytes the members take in a tar: a header block each, data padded to whole blocks."""
    return sum(_TAR_BLOCK + math.ceil(len(d) / _TAR_BLOCK) * _TAR_BLOCK for d in members.values())


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a file with fixed metadata (mtime 0, root, 0644) so shards are byte-reproducible."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def samples_per_shard(plan: Plan, reader: Reader, job: Job, shard_bytes: int) -> int:
    """--shard-bytes -> samples per shard, from the encoded size of the first readable samples.
    Deterministic (same first samples every run), so resuming keeps the same partition."""
    sizes: list[int] = []
    for item in plan.items[:SIZE_PROBE_TRIES]:
        try:
            x, y, _ = reader.read(item)
        except Skip:
            continue
        sizes.append(_tar_size(sample_members(x, y, item, job)))
        if len(sizes) == SIZE_PROBE_SAMPLES:
            break
    if not sizes:
        return DEFAULT_SHARD_SIZE
    return max(1, int(shard_bytes // (sum(sizes) / len(sizes))))
