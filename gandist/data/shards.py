"""`gandist shard`: any image source -> WebDataset tar shards plus a `dataset.json` manifest.

The format itself lives in `gandist.data.shard_format`; this module decides what goes where:

- Partition: shard i holds source indices [i*S, (i+1)*S) (minus skipped ones), so a re-run
  produces the same keys in the same shards, byte for byte (tar members have mtime 0, uid/gid 0,
  a fixed order), and any shard can be rebuilt on its own.
- Atomic and resumable: a shard is written as `.<name>.tmp-<pid>`, its sidecar
  `.<name>.stats.json` (counts, sha256, a fingerprint of what the shard should hold) is written
  next, and only then the tar is renamed to its final name. A re-run reuses every shard whose tar
  and matching sidecar exist, and writes the manifest last, so a directory with a manifest is
  always complete.
- Bad input is converted or skipped, counted per reason (`REASONS`) with the first few paths;
  `strict=True` turns the first one into a ValueError.
- Parts: `part=(k, n)` writes only shards i with i % n == k, so n processes (a SLURM job array,
  slurm/shard.sh) can fill one directory; whichever part finds every shard complete writes the
  manifest, under a lock, so n parts leave the same files as one run.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import math
import multiprocessing
import os
import re
import sys
import tarfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from gandist import __version__
from gandist.config import DataConfig
from gandist.data.base import SourceData
from gandist.data.images import (
    IMAGE_EXTENSIONS,
    ImageFolderSource,
    ImageReadError,
    ImageTransform,
)
from gandist.data.shard_format import (
    FORMAT_VERSION,
    IMAGE_FORMATS,
    MANIFEST,
    SHARD_PATTERN,
    Manifest,
    ShardEntry,
    encode_image,
    encode_label,
    sanitize_key,
    sha256_file,
    tensor_to_uint8,
    write_manifest,
)
from gandist.data.sources import load_source

DEFAULT_SHARD_SIZE = 1000
SIZE_PROBE_SAMPLES = 8  # samples encoded to turn --shard-bytes into a sample count
SIZE_PROBE_TRIES = 64  # give up looking for readable probe samples after this many
MAX_EXAMPLES = 5  # paths remembered per reason
LOG_EVERY_S = 10.0  # plain progress lines (no TTY) at most this often
_TAR_BLOCK = 512

# reason -> what happened; the first group skips a file, the second converts it.
SKIP_REASONS: dict[str, str] = {
    "corrupt": "cannot be decoded (corrupt, truncated or not really an image)",
    "too_large": "more pixels than PIL's decompression-bomb limit",
    "too_small": "shorter side below image_size/4",
    "not_image": "not an image file",
    "missing_label": "no entry in the labels file",
}
CONVERT_REASONS: dict[str, str] = {
    "converted_mode": "pixel mode converted (CMYK/16-bit/alpha/palette/gray<->RGB)",
    "duplicate_name": "key collides with another file's; a __N suffix was added",
}
REASONS = {**SKIP_REASONS, **CONVERT_REASONS}

_BYTE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}  # fmt: skip


def parse_bytes(text: str | int) -> int:
    """'256MB' -> 256_000_000. KB/MB/GB (and K/M/G) are decimal (base 1000), KiB/MiB/GiB binary
    (base 1024), a bare number is bytes; decimal matches what object stores and `ls -h --si`
    report, and the binary suffixes are there for whoever thinks in those."""
    if isinstance(text, int):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
        if not match or match.group(2).lower() not in _BYTE_UNITS:
            raise ValueError(
                f"--shard-bytes: cannot read {text!r}; use e.g. 256MB, 1.5GB, 512MiB or 1000000"
            )
        value, unit = float(match.group(1)), match.group(2).lower()
    size = int(value * _BYTE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"--shard-bytes must be positive, got {text!r}")
    return size


# ---------------------------------------------------------------- bookkeeping


@dataclass
class Issues:
    """Counts per reason plus the first few paths of each, mergeable across shards."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, path: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append(path)

    def merge(self, other: Issues) -> None:
        for reason, n in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + n
            shown = self.examples.setdefault(reason, [])
            shown.extend(other.examples.get(reason, [])[: MAX_EXAMPLES - len(shown)])

    def of(self, reasons: Iterable[str]) -> dict[str, int]:
        return {r: self.counts[r] for r in reasons if self.counts.get(r)}

    def first(self) -> tuple[str, str] | None:
        """The first recorded (reason, path), reasons in `REASONS` order, for --strict."""
        for reason in REASONS:
            if self.examples.get(reason):
                return reason, self.examples[reason][0]
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "examples": self.examples}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Issues:
        return cls(
            dict(d.get("counts", {})), {k: list(v) for k, v in d.get("examples", {}).items()}
        )


def strict_error(reason: str, path: str) -> ValueError:
    return ValueError(f"--strict: {path}: {reason} ({REASONS[reason]})")


@dataclass
class ShardReport:
    """What `write_shards` did; `summary()` is the closing text of `gandist shard`."""

    out_dir: Path
    manifest: Path
    num_samples: int
    num_shards: int
    skipped: dict[str, int]  # reason -> files left out
    examples: dict[str, list[str]]  # reason -> first few paths (skipped and converted)
    shards_reused: int = 0
    converted: dict[str, int] = field(default_factory=dict)  # reason -> files kept, altered
    part: tuple[int, int] | None = None  # (k, n) when written as one of n parts
    complete: bool = True  # False: a part whose manifest waits for the other parts

    def summary(self) -> str:
        reused = f" ({self.shards_reused} reused from an earlier run)" if self.shards_reused else ""
        which = ""
        if self.part:
            last = ", the last to finish: the whole directory" if self.complete else ""
            which = f"part {self.part[0]}/{self.part[1]}{last}: "
        lines = [
            f"{which}wrote {self.num_samples} samples in {self.num_shards} shards to "
            f"{self.out_dir}{reused}"
        ]
        if not self.complete:
            lines.append("other parts are unfinished: the last part to finish writes the manifest")
        for title, counts in (("skipped", self.skipped), ("converted", self.converted)):
            if counts:
                lines.append(f"{title} {sum(counts.values())}:")
                for reason, n in counts.items():
                    shown = ", ".join(self.examples.get(reason, []))
                    more = ", ..." if n > len(self.examples.get(reason, [])) else ""
                    lines.append(f"  {reason}: {n} - {REASONS[reason]}: {shown}{more}")
        return "\n".join(lines)


# ---------------------------------------------------------------- plan


@dataclass(frozen=True)
class Item:
    """One source index to write: its key, and for folder sources its file and label."""

    index: int
    key: str
    path: str | None = None  # folder sources: the image file
    rel: str | None = None  # folder sources: path relative to the folder (stored as source_path)
    label: int | tuple[int, ...] | None = None  # folder sources; None: take the dataset's label


@dataclass
class Plan:
    """Everything decided before any pixel is read: the items, the label space, and the issues
    that need no decoding (non-image files, duplicate names, missing labels)."""

    items: list[Item]  # usable items, in index order
    size: int  # the index space: len(source)
    label_type: str
    label_names: list[str]
    issues: Issues


def _source_config(
    source: str, image_size: int, channels: int, data_cfg: DataConfig | None
) -> DataConfig:
    base = data_cfg or DataConfig()
    return DataConfig(
        source=source,
        image_size=image_size,
        channels=channels,
        root=base.root,
        download=base.download,
        n_samples=base.n_samples,
        seed=base.seed,
    )


def _folder_root(cfg: DataConfig) -> Path | None:
    name, _, arg = cfg.source.partition(":")
    return Path(arg.strip()).expanduser() if name.strip() == "folder" else None


def _load_images(cfg: DataConfig, quiet: bool) -> SourceData:
    """load_source, refusing point sources. `quiet` hides the folder scan's warning about loose
    top-level files, which a labels file makes irrelevant (every image is used then)."""
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        src = load_source(cfg)
    if src.info.kind != "image":
        raise ValueError(
            f"gandist shard: data.source {cfg.source!r} yields {src.info.kind}, not images; "
            "shards hold images only (digits, shapes, folder:<path>, torchvision:<Name>)"
        )
    return src


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under root, recursively, sorted, hidden entries left out; the
    image rule is the folder source's."""
    images: list[Path] = []
    others: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            is_image = name.lower().endswith(IMAGE_EXTENSIONS)
            (images if is_image else others).append(Path(dirpath) / name)
    return images, others


def folder_keys(rels: list[str], issues: Issues, paths: list[str]) -> list[str]:
    """Keys from relative paths (extension dropped, sanitized). A collision (`a.png`/`a.jpg`,
    `a.b.png`/`a_b.png`) gets the first free `__N` suffix, in file order, so it is stable."""
    natural = [sanitize_key(rel.rsplit(".", 1)[0]) for rel in rels]
    used: set[str] = set()
    keys: list[str] = []
    for key, path in zip(natural, paths, strict=True):
        if key in used:
            n = 1
            while f"{key}__{n}" in used:
                n += 1
            key = f"{key}__{n}"
            issues.add("duplicate_name", path)
        used.add(key)
        keys.append(key)
    return keys


def _plan_indexed(src: SourceData) -> Plan:
    """Generated and torchvision sources: key = zero-padded index, label from the dataset."""
    info = src.info
    items = [Item(i, f"{i:08d}") for i in range(len(src))]
    return Plan(items, len(items), info.label_type, list(info.label_names), Issues())


def _plan_folder(
    src: SourceData, root: Path, labels_file: str | None, objects_file: str | None
) -> Plan:
    """Folder sources: keys from file names; labels from the folder's classes or a labels file."""
    issues = Issues()
    images, others = _walk(root)
    extra = {Path(p).resolve() for p in (labels_file, objects_file) if p}
    for path in others:
        if path.resolve() not in extra:
            issues.add("not_image", str(path))
    if labels_file:
        files = images  # every image, class subfolders or not (scan_folder found some)
        rels = [f.relative_to(root).as_posix() for f in files]
        label_type, names, labels = _labels_from_file(rels, labels_file, objects_file)
    else:
        dataset: ImageFolderSource = src.dataset  # type: ignore[assignment]
        files = [Path(f) for f in dataset.files]
        rels = [f.relative_to(root).as_posix() for f in files]
        labels = list(dataset.labels)
        label_type, names = src.info.label_type, list(src.info.label_names)
    paths = [str(f) for f in files]
    keys = folder_keys(rels, issues, paths)
    items = []
    for i, (key, path, rel, label) in enumerate(zip(keys, paths, rels, labels, strict=True)):
        if label is None:
            issues.add("missing_label", path)
            continue
        items.append(Item(i, key, path, rel, label))
    return Plan(items, len(files), label_type, names, issues)


def make_plan(
    src: SourceData, cfg: DataConfig, labels_file: str | None, objects_file: str | None
) -> Plan:
    root = _folder_root(cfg)
    if root is None:
        if labels_file or objects_file:
            raise ValueError(
                f"--labels/--objects apply to folder:<path> sources only, not {cfg.source!r}"
            )
        return _plan_indexed(src)
    if objects_file and not labels_file:
        raise ValueError("--objects needs --labels (it fixes the vocabulary of a labels file)")
    return _plan_folder(src, root, labels_file, objects_file)


# ---------------------------------------------------------------- labels files

LabelValue = str | int | list[str | int]


def _norm_name(name: str) -> str:
    name = name.strip().replace("\\", "/")
    return name[2:] if name.startswith("./") else name


def read_labels_file(path: str | Path) -> dict[str, LabelValue]:
    """CSV with header `filename,label`, or JSON {"name": label | [labels]} (iCLEVR style).

    Names are paths relative to the image folder (or bare file names); a label is a class name or
    index, or for JSON a list of names/indices (multi-hot).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--labels: file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return _labels_json(path, text)
    return _labels_csv(path, text)


def _labels_json(path: Path, text: str) -> dict[str, LabelValue]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--labels {path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f'--labels {path}: expected an object {{"img.png": label, ...}}')
    out: dict[str, LabelValue] = {}
    for name, value in raw.items():
        ok = isinstance(value, (str, int)) or (
            isinstance(value, list) and all(isinstance(v, (str, int)) for v in value)
        )
        if not ok or isinstance(value, bool):
            raise ValueError(
                f"--labels {path}: {name!r}: a label must be a name, an index or a "
                f"list of them, got {value!r}"
            )
        out[_norm_name(name)] = value
    return out


def _labels_csv(path: Path, text: str) -> dict[str, LabelValue]:
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip() for f in reader.fieldnames or []]
    if "filename" not in fields or "label" not in fields:
        raise ValueError(
            f"--labels {path}: a CSV labels file needs a header `filename,label`, "
            f"got {','.join(fields) or 'nothing'}"
        )
    out: dict[str, LabelValue] = {}
    for row in reader:
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        name = _norm_name(row["filename"])
        if name in out and out[name] != row["label"]:
            raise ValueError(f"--labels {path}: {name!r} has two different labels")
        out[name] = row["label"]
    return out


def read_objects_file(path: str | Path) -> list[str]:
    """The label vocabulary: JSON {"gray cube": 0, ...} (iCLEVR's objects.json) or ["a", ...]."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--objects: file not found: {path}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"--objects {path}: not valid JSON ({exc})") from exc
    if isinstance(raw, list) and all(isinstance(n, str) for n in raw):
        names = list(raw)
    elif (
        isinstance(raw, dict)
        and all(isinstance(i, int) for i in raw.values())
        and sorted(raw.values()) == list(range(len(raw)))
    ):
        names = sorted(raw, key=raw.__getitem__)
    else:
        raise ValueError(
            f"--objects {path}: expected a list of names or {{name: index}} with indices 0..n-1"
        )
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"--objects {path}: names must be unique and at least one")
    return names


def _is_index(value: str | int) -> bool:
    return isinstance(value, int) or value.strip().isdigit()


def _vocabulary(values: list[LabelValue], objects_file: str | None) -> list[str]:
    """The objects file's names; else, if every label is an integer, "0".."max"; else the label
    names found, sorted (so the order does not depend on the order of the file)."""
    if objects_file:
        return read_objects_file(objects_file)
    flat = [v for value in values for v in (value if isinstance(value, list) else [value])]
    if flat and all(_is_index(v) for v in flat):
        return [str(i) for i in range(max(int(v) for v in flat) + 1)]
    return sorted({str(v) for v in flat})


def _label_index(value: str | int, lookup: dict[str, int], name: str, source: str) -> int:
    if str(value) in lookup:
        return lookup[str(value)]
    if _is_index(value) and 0 <= int(value) < len(lookup):
        return int(value)
    raise ValueError(
        f"--labels {source}: label {value!r} of {name!r} is not in the label "
        f"vocabulary ({', '.join(list(lookup)[:8])}{', ...' if len(lookup) > 8 else ''})"
    )


def _match(rel: str, table: dict[str, LabelValue], basename_count: dict[str, int]) -> Any:
    """A file's label: by relative path, else by bare file name if no other image shares it."""
    if rel in table:
        return table[rel]
    base = rel.rsplit("/", 1)[-1]
    return table.get(base) if basename_count.get(base) == 1 else None


def _labels_from_file(
    rels: list[str], labels_file: str, objects_file: str | None
) -> tuple[str, list[str], list[int | tuple[int, ...] | None]]:
    """(label_type, names, label per file; None where the file has no entry)."""
    table = read_labels_file(labels_file)
    multi = any(isinstance(v, list) for v in table.values())
    names = _vocabulary(list(table.values()), objects_file)
    lookup = {n: i for i, n in enumerate(names)}
    counts: dict[str, int] = {}
    for rel in rels:
        base = rel.rsplit("/", 1)[-1]
        counts[base] = counts.get(base, 0) + 1
    labels: list[int | tuple[int, ...] | None] = []
    for rel in rels:
        value = _match(rel, table, counts)
        if value is None:
            labels.append(None)
        elif multi:
            values = value if isinstance(value, list) else [value]
            labels.append(
                tuple(sorted({_label_index(v, lookup, rel, labels_file) for v in values}))
            )
        else:
            labels.append(_label_index(value, lookup, rel, labels_file))
    return ("multi" if multi else "class"), names, labels


# ---------------------------------------------------------------- reading and encoding


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


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
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


# ---------------------------------------------------------------- shards


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


def make_tasks(plan: Plan, per_shard: int, job: Job) -> list[Task]:
    """Shard i <- the usable items with index in [i*S, (i+1)*S); every i gets a task, even an
    empty one, so a stale tar from an earlier run under that name is cleared."""
    groups: list[list[Item]] = [[] for _ in range(math.ceil(plan.size / per_shard))]
    for item in plan.items:
        groups[item.index // per_shard].append(item)
    common = [
        FORMAT_VERSION,
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
    for i, items in enumerate(groups):
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
                    _add_member(tar, f"{item.key}.{ext}", data)
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


# ---------------------------------------------------------------- workers

_WORKER: dict[str, Any] = {}


def _init_worker(job: Job) -> None:
    """Per worker process: one thread (the workers are the parallelism) and its own reader."""
    torch.set_num_threads(1)
    Image.MAX_IMAGE_PIXELS = job.max_image_pixels
    src = None if job.folder else load_source(job.cfg)
    _WORKER["job"], _WORKER["reader"] = job, Reader(job, src)


def _worker_write(task: Task) -> ShardStats:
    return write_shard(task, _WORKER["job"], _WORKER["reader"])


class Progress:
    """A tqdm bar on a TTY; otherwise a plain line every LOG_EVERY_S seconds (logs, CI)."""

    def __init__(self, samples: int, shards: int, enabled: bool) -> None:
        self.samples, self.shards = samples, shards
        self.done_samples = self.done_shards = 0
        self.enabled = enabled
        self.bar = None
        self.last = time.monotonic()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=samples, unit="img", desc="gandist shard", dynamic_ncols=True)

    def sample(self, n: int = 1) -> None:
        self.done_samples += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.monotonic() - self.last >= LOG_EVERY_S:
            self._log()

    def shard(self, samples: int = 0) -> None:
        self.done_shards += 1
        self.sample(samples)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.done_shards}/{self.shards} shards")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            self._log()

    def _log(self) -> None:
        self.last = time.monotonic()
        print(
            f"gandist shard: {self.done_shards}/{self.shards} shards, "
            f"{self.done_samples}/{self.samples} samples",
            file=sys.stderr,
            flush=True,
        )


def run_tasks(
    tasks: list[Task], job: Job, reader: Reader, workers: int, progress: Progress
) -> list[ShardStats]:
    """Write `tasks` in this process (workers <= 1) or in a spawn pool, whole shards each."""
    if workers <= 1 or len(tasks) <= 1:
        out = []
        for task in tasks:
            out.append(write_shard(task, job, reader, on_sample=progress.sample))
            progress.shard()
        return out
    ctx = multiprocessing.get_context("spawn")
    out = []
    sizes = {t.name: len(t.items) for t in tasks}
    with ctx.Pool(min(workers, len(tasks)), initializer=_init_worker, initargs=(job,)) as pool:
        for stats in pool.imap_unordered(_worker_write, tasks):
            out.append(stats)
            progress.shard(sizes[stats.name])
    return sorted(out, key=lambda s: s.name)


_SHARD_NAME = re.escape(SHARD_PATTERN).replace(r"\{:06d\}", r"(\d+)")
_TEMP_FILE = re.compile(
    rf"\.(?:{_SHARD_NAME}(?:\.stats\.json)?|{re.escape(MANIFEST)})\.tmp(?:-\d+)?"
)
_OUR_FILE = re.compile(rf"\.?{_SHARD_NAME}(?:\.stats\.json)?")


def _clean_out_dir(out_dir: Path, num_shards: int) -> None:
    """Before a run: no manifest (it is written last, so its absence marks an unfinished run),
    no temporaries of crashed runs, no shards (or sidecars) beyond this run's count. Files that
    are not ours are left alone. One run per directory at a time."""
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for path in out_dir.iterdir():
        ours = _OUR_FILE.fullmatch(path.name)
        stale = _TEMP_FILE.fullmatch(path.name) or (ours and int(ours.group(1)) >= num_shards)
        if stale and path.is_file():
            path.unlink()


# ---------------------------------------------------------------- entry point


def write_shards(
    source: str,
    out_dir: Path,
    *,
    image_size: int = 0,
    channels: int = 0,
    shard_size: int = 0,
    shard_bytes: int = 0,
    image_format: str = "png",
    workers: int = 1,
    strict: bool = False,
    labels_file: str | None = None,
    objects_file: str | None = None,
    data_cfg: DataConfig | None = None,
    progress: bool = True,
    min_shards: int = 0,
    part: tuple[int, int] | None = None,
) -> ShardReport:
    """Write `source` (any image `data.source`) as tar shards plus `dataset.json` under `out_dir`.

    `data_cfg` supplies root/download/n_samples/seed; `source`, `image_size` and `channels`
    override it. Shards hold `shard_size` samples, or as many as fit `shard_bytes`, or 1000;
    `min_shards` caps the size so that small data sets still split over processes x workers.
    A re-run with the same inputs reuses complete shards. Raises ValueError for bad arguments,
    an empty folder or (strict) the first bad input file.

    `part=(k, n)`: write only shards i with i % n == k (one of n concurrent writers with the same
    arguments); the part that finds every shard complete writes the manifest and returns a
    report of the whole directory, the others a report of their own shards with complete=False.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"--format: {image_format!r} is not one of {', '.join(IMAGE_FORMATS)}")
    if shard_size and shard_bytes:
        raise ValueError("give --shard-size or --shard-bytes, not both")
    if shard_size < 0 or shard_bytes < 0 or workers < 0:
        raise ValueError("--shard-size, --shard-bytes and --workers must not be negative")
    if part is not None and not 0 <= part[0] < part[1]:
        raise ValueError(f"part (k, n) needs 0 <= k < n, got {part}")
    cfg = _source_config(source, image_size, channels, data_cfg)
    src = _load_images(cfg, quiet=labels_file is not None)
    plan = make_plan(src, cfg, labels_file, objects_file)
    if strict and (first := plan.issues.first()):
        raise strict_error(*first)
    out_dir = Path(out_dir)
    job = Job(
        cfg=cfg,
        out_dir=str(out_dir),
        image_format=image_format,
        strict=strict,
        label_type=plan.label_type,
        num_labels=len(plan.label_names),
        channels=src.info.channels,
        image_size=src.info.image_size,
        folder=_folder_root(cfg) is not None,
        max_image_pixels=Image.MAX_IMAGE_PIXELS,
    )
    reader = Reader(job, src)
    per_shard = shard_size or (
        samples_per_shard(plan, reader, job, shard_bytes) if shard_bytes else DEFAULT_SHARD_SIZE
    )
    if min_shards > 0:
        per_shard = max(1, min(per_shard, math.ceil(len(plan.items) / min_shards)))
    tasks = make_tasks(plan, per_shard, job)
    out_dir.mkdir(parents=True, exist_ok=True)
    if part is not None:
        return _write_part(tasks, part, plan, job, reader, workers, progress)
    _clean_out_dir(out_dir, len(tasks))
    stats, reused = _write_all(tasks, job, reader, workers, progress)
    return _finish(out_dir, stats, reused, plan, job)


_PART_LOCK = f".{MANIFEST}.lock"


def _write_part(
    tasks: list[Task],
    part: tuple[int, int],
    plan: Plan,
    job: Job,
    reader: Reader,
    workers: int,
    progress: bool,
) -> ShardReport:
    """Part k of n: write shards i % n == k, then, under a lock, finish the directory if every
    shard is complete. Each part removes the manifest before touching a shard (a directory with
    a manifest stays complete) and only its own temporaries (the other parts may be writing)."""
    k, n = part
    out_dir = Path(job.out_dir)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for path in out_dir.iterdir():
        temp = _TEMP_FILE.fullmatch(path.name)
        if temp and temp.group(1) is not None and int(temp.group(1)) % n == k and path.is_file():
            path.unlink()
    mine = [t for t in tasks if t.index % n == k]
    stats, reused = _write_all(mine, job, reader, workers, progress)
    with open(out_dir / _PART_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one finisher at a time (shared manifest temp file)
        everything = [reusable(out_dir, t) for t in tasks]
        if all(s is not None for s in everything):
            # Every shard complete: no part is writing any more, so the full clean is safe.
            _clean_out_dir(out_dir, len(tasks))
            whole = [s for s in everything if s is not None]
            report = _finish(out_dir, whole, reused, plan, job)
            report.part = part
            return report
    report = _report(out_dir, stats, reused, Issues())
    report.part, report.complete = part, False
    return report


def _write_all(
    tasks: list[Task], job: Job, reader: Reader, workers: int, progress: bool
) -> tuple[list[ShardStats], int]:
    """Reuse complete shards, write the rest: stats in shard order, and how many non-empty shards
    were reused."""
    bar = Progress(sum(len(t.items) for t in tasks), len(tasks), progress)
    done: dict[str, ShardStats] = {}
    pending = []
    for task in tasks:
        old = reusable(Path(job.out_dir), task)
        if old is None:
            pending.append(task)
        else:
            done[task.name] = old
            bar.shard(len(task.items))
    reused = sum(1 for s in done.values() if s.num_samples)
    try:
        for stats in run_tasks(pending, job, reader, workers, bar):
            done[stats.name] = stats
    finally:
        bar.close()
    return [done[t.name] for t in tasks], reused


def _report(out_dir: Path, stats: list[ShardStats], reused: int, issues: Issues) -> ShardReport:
    """Totals over shard stats; `issues` may already hold plan-level findings."""
    for s in stats:
        issues.merge(s.issues)
    written = [s for s in stats if s.num_samples]
    return ShardReport(
        out_dir=out_dir,
        manifest=out_dir / MANIFEST,
        num_samples=sum(s.num_samples for s in written),
        num_shards=len(written),
        skipped=issues.of(SKIP_REASONS),
        examples=issues.examples,
        shards_reused=reused,
        converted=issues.of(CONVERT_REASONS),
    )


def _finish(
    out_dir: Path, stats: list[ShardStats], reused: int, plan: Plan, job: Job
) -> ShardReport:
    """Total the issues, write the manifest (last), build the report."""
    issues = Issues()
    issues.merge(plan.issues)
    report = _report(out_dir, stats, reused, issues)
    written = [s for s in stats if s.num_samples]
    if not written:
        raise ValueError(
            f"gandist shard: no usable samples in {job.cfg.source}\n{report.summary()}"
        )
    manifest = Manifest(
        source=job.cfg.source,
        image_size=job.image_size,
        channels=job.channels,
        image_format=job.image_format,
        label_type=plan.label_type,
        label_names=list(plan.label_names),
        shards=[ShardEntry(s.name, s.num_samples, s.sha256, s.num_bytes) for s in written],
        gandist_version=__version__,
        skipped=report.skipped,
    )
    write_manifest(out_dir, manifest)
    return report
