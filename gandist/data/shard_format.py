"""The on-disk shard format, shared by the writer (`gandist shard`) and the stream.

A shard is a POSIX tar of samples; a sample is the files sharing a key:
- `<key>.png` | `<key>.jpg` (8-bit L or RGB) or `<key>.npy` (uint8 array (H, W, C));
- `<key>.cls`: the class index as ASCII digits (label_type "class");
- `<key>.json`: {"labels": [label indices]} for label_type "multi", plus optional metadata
  such as {"source_path": ...}. Every sample has a `.json` (it may hold only metadata).
Beside the shards, `dataset.json` (the manifest) describes them; see `Manifest`.
Keys contain no dots (webdataset splits a member name at its first dot).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from gandist.data.base import DatasetInfo

MANIFEST = "dataset.json"
FORMAT_NAME = "gandist-shards"
FORMAT_VERSION = 1
IMAGE_FORMATS = ("png", "jpg", "npy")
SHARD_PATTERN = "data-{:06d}.tar"
_KEY_OK = re.compile(r"[^A-Za-z0-9_\-/]")


@dataclass
class ShardEntry:
    name: str
    num_samples: int
    sha256: str
    num_bytes: int = 0


@dataclass
class Manifest:
    """`dataset.json`: what the shards hold, so the trainer needs no other description."""

    source: str
    image_size: int
    channels: int
    image_format: str
    label_type: str  # none | class | multi
    label_names: list[str]
    shards: list[ShardEntry]
    gandist_version: str
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count

    @property
    def num_samples(self) -> int:
        return sum(s.num_samples for s in self.shards)

    @property
    def num_labels(self) -> int:
        return len(self.label_names) if self.label_type != "none" else 0

    def info(self, source: str = "") -> DatasetInfo:
        return DatasetInfo(
            kind="image",
            channels=self.channels,
            image_size=self.image_size,
            label_type=self.label_type,  # type: ignore[arg-type]
            num_labels=self.num_labels,
            label_names=tuple(self.label_names),
            source=source or self.source,
        )

    def to_json(self) -> str:
        d = asdict(self)
        d["num_samples"] = self.num_samples
        return json.dumps(d, indent=2)


def read_manifest(directory: str | Path) -> Manifest:
    """Load and check `<directory>/dataset.json`; errors name the file and what is wrong."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no shard manifest; create shards with `gandist shard <source> {directory}`"
        )
    return parse_manifest(path.read_text(), str(path))


def parse_manifest(text: str, path: str) -> Manifest:
    """Manifest from JSON text; `path` (a file or URL) names it in errors."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if raw.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: not a gandist shard manifest (format={raw.get('format')!r})")
    if raw.get("version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{path}: manifest version {raw['version']} is newer than this gandist understands "
            f"({FORMAT_VERSION}); upgrade gandist"
        )
    try:
        shards = [ShardEntry(**s) for s in raw["shards"]]
        m = Manifest(
            source=raw["source"], image_size=int(raw["image_size"]),
            channels=int(raw["channels"]), image_format=raw["image_format"],
            label_type=raw["label_type"], label_names=list(raw["label_names"]), shards=shards,
            gandist_version=raw.get("gandist_version", ""), skipped=raw.get("skipped", {}),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: manifest is missing or has a malformed field ({exc})") from exc
    if m.image_format not in IMAGE_FORMATS or m.channels not in (1, 3):
        raise ValueError(f"{path}: unsupported image_format/channels "
                         f"({m.image_format!r}, {m.channels})")
    return m


def write_manifest(directory: str | Path, manifest: Manifest) -> Path:
    """Write `dataset.json` atomically (temporary file, then rename)."""
    path = Path(directory) / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(manifest.to_json())
    tmp.replace(path)
    return path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sanitize_key(text: str) -> str:
    """A webdataset-safe key: no dots, no characters outside [A-Za-z0-9_-/]."""
    return _KEY_OK.sub("_", text.replace(".", "_"))


# ---------------------------------------------------------------- images


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) float in [-1, 1] -> (H, W, C) uint8, the inverse of `uint8_to_tensor`."""
    arr = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return arr.permute(1, 2, 0).cpu().numpy()


def uint8_to_tensor(arr: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(H, W, C) or (C, H, W) uint8 -> (C, H, W) float32 in [-1, 1]."""
    t = torch.as_tensor(arr)
    if t.dim() == 2:
        t = t.unsqueeze(0)
    elif t.shape[-1] in (1, 3) and t.shape[0] not in (1, 3):
        t = t.permute(2, 0, 1)
    return t.float().div_(127.5).sub_(1.0)


def encode_image(arr: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    """(H, W, C) uint8 -> file bytes in `fmt` (png, jpg, npy)."""
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
        return buf.getvalue()
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr,
                          mode="L" if arr.shape[2] == 1 else "RGB")
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=1)
    elif fmt == "jpg":
        img.save(buf, format="JPEG", quality=quality)
    else:
        raise ValueError(f"--format: {fmt!r} is not one of {', '.join(IMAGE_FORMATS)}")
    return buf.getvalue()


def decode_image(data: bytes, fmt: str, channels: int) -> torch.Tensor:
    """File bytes -> (C, H, W) float32 in [-1, 1]."""
    if fmt == "npy":
        return uint8_to_tensor(np.load(io.BytesIO(data), allow_pickle=False))
    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("L" if channels == 1 else "RGB")
        return uint8_to_tensor(np.array(img))  # a writable copy


def encode_label(y: torch.Tensor, label_type: str) -> dict[str, bytes]:
    """Label -> extra tar members (`cls` for a class, `json` for multi-hot)."""
    if label_type == "class":
        return {"cls": str(int(y)).encode()}
    if label_type == "multi":
        idx = torch.nonzero(torch.as_tensor(y) > 0.5).flatten().tolist()
        return {"json": json.dumps({"labels": idx}).encode()}
    return {}


def decode_label(sample: dict[str, Any], label_type: str, num_labels: int) -> torch.Tensor:
    """Tar members of one sample -> the label tensor the trainer expects (see DatasetInfo)."""
    if label_type == "class":
        return torch.tensor(int(sample["cls"]), dtype=torch.long)
    if label_type == "multi":
        y = torch.zeros(num_labels, dtype=torch.float32)
        y[json.loads(sample["json"])["labels"]] = 1.0
        return y
    return torch.tensor(0, dtype=torch.long)
