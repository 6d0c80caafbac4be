"""`folder:<path>`: a folder of image files, flat or one subfolder per class.

Decoded lazily in `__getitem__` (data sets here can be far larger than memory) through the PIL ->
tensor pipeline of gandist.data.sources.pil, the same one torchvision sources and shards use.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from gandist.config import DataConfig
from gandist.data.base import DatasetInfo, SourceData
from gandist.data.keys import DEFAULT_IMAGE_SIZES
from gandist.data.sources.pil import ImageReadError, ImageTransform, check_channels, mode_channels

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
FOLDER_DEFAULT_SIZE = DEFAULT_IMAGE_SIZES["folder"]
FOLDER_PROBE = 1000  # image headers read to find a folder's native channels


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _images_under(directory: Path) -> list[Path]:
    """All image files below `directory`, recursively, in a stable (sorted) order."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if _is_image(f))
    return found


def scan_folder(root: Path) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """Index a folder: (files, class index per file, class names).

    Layout: image files directly in `root` -> flat, unlabelled (no class names). Otherwise each
    subfolder holding images (at any depth) is a class, classes sorted by name. If both exist the
    class layout wins and the loose top-level files are ignored with a warning.
    """
    if not root.exists():
        raise FileNotFoundError(f"data.source: image folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"data.source: not a directory: {root}")
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    top = [Path(e.path) for e in entries if e.is_file() and _is_image(e.name)]
    subdirs = [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]
    per_class = [(d.name, _images_under(d)) for d in subdirs]
    per_class = [(name, files) for name, files in per_class if files]
    if not per_class:
        if not top:
            raise ValueError(
                f"data.source: no images in {root} (looked for {', '.join(IMAGE_EXTENSIONS)}, "
                "directly or in one subfolder per class)"
            )
        return top, [0] * len(top), ()
    if top:
        warnings.warn(
            f"{root}: using one subfolder per class; ignoring {len(top)} image files at the top "
            "level",
            stacklevel=2,
        )
    files: list[Path] = []
    labels: list[int] = []
    for idx, (_, class_files) in enumerate(per_class):
        files.extend(class_files)
        labels.extend([idx] * len(class_files))
    return files, labels, tuple(name for name, _ in per_class)


class ImageFolderSource(Dataset):
    """Images listed at build time, decoded (and so verified) only when read."""

    def __init__(self, files: list[Path], labels: list[int], transform: ImageTransform) -> None:
        self.files = [str(f) for f in files]
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.files[index]
        try:
            with Image.open(path) as img:
                img.seek(0)  # GIF/TIFF: first frame
                img.load()  # decode now, so a truncated file fails here
                img = ImageOps.exif_transpose(img)
                x = self.transform(img)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise ImageReadError(path, e) from e
        return x, torch.tensor(self.labels[index], dtype=torch.int64)


def native_channels(files: list[Path], source: str) -> int:
    """What the images are: 1 channel when most are grayscale, else 3.

    A folder of grey digits trained as RGB triples the work and learns three copies of one
    channel, so the folder's own pixel modes decide, not a fixed RGB. Only headers are read, of
    at most FOLDER_PROBE files spread evenly over the (sorted) list, so a million-file folder
    costs the same as a small one. A mixed folder follows the majority and says so on stderr;
    unreadable files are left to the loader, which names them.
    """
    step = max(1, len(files) // FOLDER_PROBE)
    probe = files[::step][:FOLDER_PROBE]
    gray = colour = 0
    for path in probe:
        try:
            with Image.open(path) as img:
                one = mode_channels(img) == 1
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            continue
        gray, colour = gray + one, colour + (not one)
    channels = 1 if gray > colour else 3
    if gray and colour:
        what = f"{gray + colour} sampled" if len(probe) < len(files) else f"{gray + colour}"
        print(
            f"gandist: {source}: of {what} images {gray} are grayscale and {colour} colour; "
            f"using {channels} channel{'s' if channels > 1 else ''} (the majority; set "
            "data.channels=1 or 3 to choose)",
            file=sys.stderr,
            flush=True,
        )
    return channels


def build_folder(arg: str, cfg: DataConfig) -> SourceData:
    """`folder:<path>`: a flat folder (unlabelled) or one subfolder per class; channels are the
    images' own (see native_channels) unless data.channels says otherwise."""
    if not arg:
        raise ValueError("data.source: 'folder' needs a directory, e.g. folder:data/faces")
    files, labels, names = scan_folder(Path(arg).expanduser())
    channels = check_channels(cfg.channels or native_channels(files, cfg.source))
    size = cfg.image_size or FOLDER_DEFAULT_SIZE
    info = DatasetInfo(
        kind="image",
        channels=channels,
        image_size=size,
        label_type="class" if names else "none",
        num_labels=len(names),
        label_names=names,
        source=cfg.source,
    )
    return SourceData(
        info=info, dataset=ImageFolderSource(files, labels, ImageTransform(channels, size))
    )
