"""The on-disk shard format, shared by the writer (`gandist shard`) and the stream.

A shard is a POSIX tar of samples; a sample is the files sharing a key:
- `<key>.png` | `<key>.jpg` (8-bit L or RGB) or `<key>.npy` (uint8 array (H, W, C));
- `<key>.cls`: the class index as ASCII digits (label_type "class");
- `<key>.json`: {"labels": [label indices]} for label_type "multi", plus optional metadata
  such as {"source_path": ...}. Every sample has a `.json` (it may hold only metadata).
Beside the shards, `dataset.json` (the manifest) describes them; see `Manifest`.
Keys contain no dots (webdataset splits a member name at its first dot).

Shards written by other tools (`webdataset.ShardWriter`) are read too, once `gandist shard index`
(gandist.data.shards.index) has described them: any of `READ_FORMATS` as the image, a `.json`
that is a bare list of label indices, labels under a named field (`<key>.label.cls`,
`<key>.labels.json`: the manifest's `label_member`), images of mixed sizes or modes. Decoding
therefore converts and resizes to the manifest's channels and size rather than trusting the
file.
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
from gandist.data.sources.pil import resize_center_crop, to_channels

MANIFEST = "dataset.json"
FORMAT_NAME = "gandist-shards"
FORMAT_VERSION = 1
IMAGE_FORMATS = ("png", "jpg", "npy")  # what `gandist shard` writes
READ_FORMATS = ("png", "jpg", "jpeg", "webp", "ppm", "npy")  # what a manifest may name
LABEL_EXT = {"class": "cls", "multi": "json"}  # label_type -> the extension holding it
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
    # Written by `gandist shard index` (shards from other tools): "WxH" -> images of that size
    # (image_size is the shorter side of the most common one), and a flag that tells an index
    # (redone when older than its shards) from a manifest `gandist shard` wrote with them.
    image_sizes: dict[str, int] = field(default_factory=dict)
    indexed: bool = False
    # The webdataset field holding the label when it is not the plain `cls` / `json` (other
    # tools' `<key>.label.cls` arrives as "label.cls"); "" for the plain one.
    label_member: str = ""

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
            f", or describe shards another tool wrote with `gandist shard index {directory}`"
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
            source=raw["source"],
            image_size=int(raw["image_size"]),
            channels=int(raw["channels"]),
            image_format=raw["image_format"],
            label_type=raw["label_type"],
            label_names=list(raw["label_names"]),
            shards=shards,
            gandist_version=raw.get("gandist_version", ""),
            skipped=raw.get("skipped", {}),
            image_sizes=dict(raw.get("image_sizes", {})),
            indexed=bool(raw.get("indexed", False)),
            label_member=str(raw.get("label_member", "")),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: manifest is missing or has a malformed field ({exc})") from exc
    if m.image_format not in READ_FORMATS or m.channels not in (1, 3):
        raise ValueError(
            f"{path}: unsupported image_format/channels ({m.image_format!r}, {m.channels})"
        )
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
    img = Image.fromarray(
        arr[:, :, 0] if arr.shape[2] == 1 else arr, mode="L" if arr.shape[2] == 1 else "RGB"
    )
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=1)
    elif fmt == "jpg":
        img.save(buf, format="JPEG", quality=quality)
    else:
        raise ValueError(f"--format: {fmt!r} is not one of {', '.join(IMAGE_FORMATS)}")
    return buf.getvalue()


def decode_image(data: bytes, fmt: str, channels: int, size: int = 0) -> torch.Tensor:
    """File bytes -> (C, size, size) float32 in [-1, 1] (size 0: as stored).

    Converts to `channels` and resizes (shorter side, centre crop: the folder source's rule)
    whatever does not match, so shards of mixed sizes or modes, and a run's data.image_size /
    data.channels that differ from the manifest's, give the shapes the models were built for.
    Images that already match take no extra copy.
    """
    if fmt == "npy":
        arr = np.load(io.BytesIO(data), allow_pickle=False)
        x = uint8_to_tensor(arr)
        if x.shape[0] == channels and (not size or tuple(x.shape[1:]) == (size, size)):
            return x
        hwc = ((x + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        img = Image.fromarray(hwc[:, :, 0] if hwc.shape[2] == 1 else hwc)
        return _pil_to_tensor(img, channels, size)
    with Image.open(io.BytesIO(data)) as img:
        return _pil_to_tensor(img, channels, size)


def _pil_to_tensor(img: Image.Image, channels: int, size: int) -> torch.Tensor:
    img = to_channels(img, channels)
    if size:
        img = resize_center_crop(img, size)
    return uint8_to_tensor(np.array(img))  # a writable copy


def find_image(sample: dict[str, Any]) -> tuple[str, bytes] | None:
    """(format, bytes) of the first member of a raw webdataset sample that is an image.

    webdataset keeps everything after a member's first dot as the extension, so `x.left.jpg`
    arrives as "left.jpg"; its last part names the format.
    """
    for ext, data in sample.items():
        fmt = ext.rsplit(".", 1)[-1]
        if not ext.startswith("__") and fmt in READ_FORMATS:
            return fmt, data
    return None


def image_member(sample: dict[str, Any], preferred: str) -> tuple[str, bytes]:
    """(format, bytes) of a sample's image: the manifest's format, else any readable one."""
    if preferred in sample:
        return preferred, sample[preferred]
    found = find_image(sample)
    if found is not None:
        return found
    raise ValueError(
        f"shard sample {sample.get('__key__')} from {sample.get('__url__')} has no image member "
        f"(looked for .{', .'.join(READ_FORMATS)}); remove it or re-run `gandist shard index`"
    )


def decode_sample(sample: dict[str, Any], manifest: Manifest) -> tuple[torch.Tensor, torch.Tensor]:
    """One raw webdataset sample -> (image at the manifest's size and channels, label)."""
    fmt, data = image_member(sample, manifest.image_format)
    x = decode_image(data, fmt, manifest.channels, manifest.image_size)
    return x, decode_label(sample, manifest.label_type, manifest.num_labels, manifest.label_member)


def encode_label(y: torch.Tensor, label_type: str) -> dict[str, bytes]:
    """Label -> extra tar members (`cls` for a class, `json` for multi-hot)."""
    if label_type == "class":
        return {"cls": str(int(y)).encode()}
    if label_type == "multi":
        idx = torch.nonzero(torch.as_tensor(y) > 0.5).flatten().tolist()
        return {"json": json.dumps({"labels": idx}).encode()}
    return {}


def label_fields(sample: dict[str, Any], ext: str) -> list[str]:
    """The members of a raw webdataset sample that can hold its label of extension `ext`
    (`cls`, `json`): `<key>.<ext>` first, then `<key>.<name>.<ext>` in name order (webdataset
    keeps everything after a member's first dot, so `x.label.cls` arrives as "label.cls")."""
    named = sorted(k for k in sample if k.endswith("." + ext) and not k.startswith("__"))
    return ([ext] if ext in sample else []) + named


def decode_label(
    sample: dict[str, Any], label_type: str, num_labels: int, member: str = ""
) -> torch.Tensor:
    """Tar members of one sample -> the label tensor the trainer expects (see DatasetInfo).
    `member`: the field holding the label (Manifest.label_member); "" for `cls` / `json`."""
    if label_type == "none":
        return torch.tensor(0, dtype=torch.long)
    name = member or LABEL_EXT[label_type]
    if name not in sample:
        raise ValueError(
            f"shard sample {sample.get('__key__')} from {sample.get('__url__')} has no .{name} "
            f"label (members: {', '.join(k for k in sample if not k.startswith('__'))}); every "
            "sample of a conditional data set needs one: fix the shard, or re-run "
            "`gandist shard index` if the shards changed"
        )
    if label_type == "class":
        return torch.tensor(int(sample[name]), dtype=torch.long)
    raw = json.loads(sample[name])
    y = torch.zeros(num_labels, dtype=torch.float32)
    y[raw if isinstance(raw, list) else raw["labels"]] = 1.0  # other tools: a bare list
    return y
