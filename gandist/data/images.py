"""File-backed image sources: any torchvision data set by name, or a folder of image files.

Both decode lazily in `__getitem__` (data sets here can be far larger than memory) and share one
PIL -> tensor pipeline, so a folder and a torchvision data set of the same pictures produce the
same tensors: (C, H, W) float32 in [-1, 1], shorter side resized then centre-cropped.
"""

from __future__ import annotations

import difflib
import inspect
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from gandist.config import DataConfig
from gandist.data.base import DatasetInfo, LabelType, SourceData

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
FOLDER_DEFAULT_SIZE = 64
FOLDER_PROBE = 1000  # image headers read to find a folder's native channels
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


class ImageReadError(RuntimeError):
    """An image file that PIL cannot decode; `path` names it so callers can skip or report it."""

    def __init__(self, path: str | Path, cause: BaseException) -> None:
        super().__init__(f"cannot read image {path}: {type(cause).__name__}: {cause}")
        self.path = str(path)


# ---------------------------------------------------------------- PIL -> tensor


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float grayscale -> 8-bit L, scaled, never clipped to white.

    PIL's own convert("L") clips I;16 values above 255, turning most 16-bit scans white. Integer
    data above 255 is taken as 16-bit (0..65535); float data within [0, 1] as unit range.
    """
    arr = np.asarray(img, dtype=np.float64)
    hi = float(arr.max()) if arr.size else 0.0
    if img.mode == "F" and hi <= 1.0:
        arr = arr * 255.0
    elif img.mode != "F" and hi > 255.0:
        arr = arr * (255.0 / (65535.0 if hi <= 65535.0 else hi))
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def to_channels(img: Image.Image, channels: int) -> Image.Image:
    """Any PIL mode -> "L" (channels 1) or "RGB" (channels 3).

    Transparency is composited over white rather than dropped: transparent pixels of RGBA and
    palette images often hold arbitrary (usually black) colour that would otherwise show up.
    """
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        img = _high_depth_to_l(img)
    elif img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        img.mode == "P" and "transparency" in img.info
    ):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Shorter side -> size (bicubic, antialiased when shrinking), then centre square crop."""
    w, h = img.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return img


class ImageTransform:
    """PIL image (any mode/size) -> float32 (C, size, size) in [-1, 1]. Picklable for workers."""

    def __init__(self, channels: int, size: int) -> None:
        self.channels = channels
        self.size = size

    def __call__(self, img: Any) -> torch.Tensor:
        if isinstance(img, torch.Tensor):  # a few torchvision data sets hand back tensors
            from torchvision.transforms.functional import to_pil_image

            img = to_pil_image(img)
        img = resize_center_crop(to_channels(img, self.channels), self.size)
        arr = np.asarray(img, dtype=np.uint8)
        x = torch.from_numpy(arr.copy()).float()
        x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
        return x.div_(127.5).sub_(1.0)


def mode_channels(img: Image.Image) -> int:
    """1 for a grayscale image (a gray pixel mode, or a palette of grays only), else 3."""
    if img.mode in GRAY_MODES:
        return 1
    if img.mode in ("P", "PA"):
        pal = img.getpalette() or []
        return 1 if all(pal[i] == pal[i + 1] == pal[i + 2] for i in range(0, len(pal), 3)) else 3
    return 3


def _check_channels(channels: int) -> int:
    if channels not in (1, 3):
        raise ValueError(f"data.channels must be 0 (native), 1 or 3, got {channels}")
    return channels


# ---------------------------------------------------------------- torchvision


def _dataset_classes() -> dict[str, type]:
    import torchvision.datasets as tvd

    return {
        name: obj
        for name in dir(tvd)
        if not name.startswith("_")
        and isinstance(obj := getattr(tvd, name), type)
        and issubclass(obj, Dataset)
        and obj.__name__ not in ("VisionDataset",)
    }


class TorchvisionSource(Dataset):
    """A torchvision data set with gandist's transform and label encoding applied on access."""

    def __init__(self, base: Any, transform: ImageTransform, label_type: LabelType) -> None:
        self.base = base
        self.transform = transform
        self.label_type = label_type

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, target = self.base[index]
        if self.label_type == "class":
            y = torch.tensor(int(target), dtype=torch.int64)
        elif self.label_type == "multi":
            y = torch.as_tensor(target).to(torch.float32).reshape(-1)
        else:
            y = torch.tensor(0, dtype=torch.int64)
        return self.transform(img), y


def _labels_of(ds: Any, first_target: Any) -> tuple[LabelType, tuple[str, ...]]:
    """Label space: `.classes`, else integer `.targets`/`.labels`/`.num_classes`, else CelebA-style
    attributes (a 0/1 vector with `.attr_names`) as multi-hot; anything else is unconditional."""
    classes = getattr(ds, "classes", None)
    if classes is not None and len(classes) > 0 and isinstance(first_target, (int, np.integer)):
        return "class", tuple(str(c) for c in classes)
    if isinstance(first_target, (int, np.integer)):
        for attr in ("targets", "labels"):
            values = getattr(ds, attr, None)
            if values is not None and len(values) > 0:
                n = int(np.max(np.asarray(values))) + 1
                return "class", tuple(str(i) for i in range(n))
    num_classes = getattr(ds, "num_classes", None)  # e.g. FakeData
    if isinstance(num_classes, int) and isinstance(first_target, (int, np.integer)):
        return "class", tuple(str(i) for i in range(num_classes))
    attr_names = getattr(ds, "attr_names", None)
    if attr_names and isinstance(first_target, torch.Tensor) and first_target.ndim == 1:
        return "multi", tuple(str(a) for a in attr_names[: len(first_target)])
    return "none", ()


def build_torchvision(arg: str, cfg: DataConfig) -> SourceData:
    """`torchvision:<Name>`: the train split of torchvision.datasets.<Name>, decoded lazily."""
    classes = _dataset_classes()
    if not arg:
        raise ValueError("data.source: 'torchvision' needs a data set name, e.g. torchvision:MNIST")
    cls = classes.get(arg) or {k.lower(): v for k, v in classes.items()}.get(arg.lower())
    if cls is None:
        close = difflib.get_close_matches(arg, list(classes), n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        examples = ", ".join(n for n in ("MNIST", "FashionMNIST", "CIFAR10", "CelebA", "SVHN"))
        raise ValueError(
            f"data.source: torchvision has no data set {arg!r}; {hint}(e.g. {examples}; "
            f"see torchvision.datasets)"
        )
    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {}
    if "root" in params:
        kwargs["root"] = cfg.root
    if "download" in params:
        kwargs["download"] = cfg.download
    if "train" in params:
        kwargs["train"] = True
    elif "split" in params:
        kwargs["split"] = "train"
    try:
        base = cls(**kwargs)
    except (RuntimeError, FileNotFoundError) as e:
        if cfg.download:
            raise
        raise FileNotFoundError(
            f"data.source {cfg.source!r}: data not found under data.root={cfg.root!r} ({e}). "
            "Set data.download=true to fetch it, or point data.root to where it is."
        ) from e
    except TypeError as e:
        raise ValueError(
            f"data.source {cfg.source!r}: torchvision.datasets.{cls.__name__} needs arguments "
            f"gandist does not pass ({e}); wrap it as a folder source instead"
        ) from e
    if len(base) == 0:
        raise ValueError(f"data.source {cfg.source!r}: the data set is empty")
    img, target = base[0]
    if isinstance(img, torch.Tensor):
        from torchvision.transforms.functional import to_pil_image

        img = to_pil_image(img)
    if not isinstance(img, Image.Image):
        raise ValueError(
            f"data.source {cfg.source!r}: items are {type(img).__name__}, not images; "
            "only image data sets are supported"
        )
    channels = _check_channels(cfg.channels or mode_channels(img))
    size = cfg.image_size or min(img.size)
    label_type, names = _labels_of(base, target)
    info = DatasetInfo(
        kind="image",
        channels=channels,
        image_size=size,
        label_type=label_type,
        num_labels=len(names),
        label_names=names,
        source=cfg.source,
    )
    dataset = TorchvisionSource(base, ImageTransform(channels, size), label_type)
    return SourceData(info=info, dataset=dataset)


# ---------------------------------------------------------------- folder


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
    channels = _check_channels(cfg.channels or native_channels(files, cfg.source))
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
