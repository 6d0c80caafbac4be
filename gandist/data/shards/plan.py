"""What goes where, decided before any pixel is read: the source's items, keys and labels.

Each source index has a fixed place in the shards (a permutation of the whole data set,
gandist.data.shards.tasks.shard_slots, so every shard is a random sample of it), and a re-run
produces the same keys in the same shards; folder sources take keys from file names and labels
from their classes or a labels file (gandist.data.shards.labels).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from gandist.config import DataConfig
from gandist.data.base import SourceData
from gandist.data.shards.format import sanitize_key
from gandist.data.shards.labels import labels_from_file
from gandist.data.shards.report import Issues
from gandist.data.sources.folder import IMAGE_EXTENSIONS, ImageFolderSource
from gandist.data.sources.registry import load_source


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


def source_config(
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


def folder_root(cfg: DataConfig) -> Path | None:
    name, _, arg = cfg.source.partition(":")
    return Path(arg.strip()).expanduser() if name.strip() == "folder" else None


def load_images(cfg: DataConfig, quiet: bool) -> SourceData:
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
        label_type, names, labels = labels_from_file(rels, labels_file, objects_file)
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
    root = folder_root(cfg)
    if root is None:
        if labels_file or objects_file:
            raise ValueError(
                f"--labels/--objects apply to folder:<path> sources only, not {cfg.source!r}"
            )
        return _plan_indexed(src)
    if objects_file and not labels_file:
        raise ValueError("--objects needs --labels (it fixes the vocabulary of a labels file)")
    return _plan_folder(src, root, labels_file, objects_file)
