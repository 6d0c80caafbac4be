"""Hand-made shards for stream tests: each image's first two pixels encode its sample index."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import torch

from gandist.data.shards.format import (
    SHARD_PATTERN,
    Manifest,
    ShardEntry,
    encode_image,
    sha256_file,
    write_manifest,
)


def index_image(i: int, size: int = 8) -> np.ndarray:
    arr = np.full((size, size, 1), 128, dtype=np.uint8)
    arr[0, 0, 0], arr[0, 1, 0] = i % 256, i // 256
    return arr


def indices_of(x: torch.Tensor) -> list[int]:
    """Sample indices of a decoded batch (B, 1, H, W) in [-1, 1]."""
    px = ((x[:, 0, 0, :2] + 1) * 127.5).round().long()
    return (px[:, 0] + 256 * px[:, 1]).tolist()


def make_shards(out: Path, sizes: list[int], fmt: str = "png") -> Path:
    """Shards holding consecutive indices, `sizes[k]` samples in shard k, class = index % 3."""
    out.mkdir(parents=True, exist_ok=True)
    entries, start = [], 0
    for k, n in enumerate(sizes):
        name = SHARD_PATTERN.format(k)
        with tarfile.open(out / name, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(start, start + n):
                members = {
                    fmt: encode_image(index_image(i), fmt),
                    "cls": str(i % 3).encode(),
                    "json": json.dumps({"source_path": f"img{i}"}).encode(),
                }
                for ext, data in members.items():
                    ti = tarfile.TarInfo(f"{i:08d}.{ext}")
                    ti.size = len(data)
                    tar.addfile(ti, io.BytesIO(data))
        entries.append(ShardEntry(name, n, sha256_file(out / name), (out / name).stat().st_size))
        start += n
    write_manifest(
        out,
        Manifest(
            source="test",
            image_size=8,
            channels=1,
            image_format=fmt,
            label_type="class",
            label_names=["a", "b", "c"],
            shards=entries,
            gandist_version="test",
        ),
    )
    return out
