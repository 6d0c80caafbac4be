"""PIL -> tensor, shared by every file-backed image source and by shard decoding.

One pipeline, so a folder, a torchvision data set and shards of the same pictures produce the same
tensors: (C, H, W) float32 in [-1, 1], shorter side resized then centre-cropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


class ImageReadError(ValueError):
    """An image file that PIL cannot decode; `path` names it so callers can skip or report it.

    A ValueError, so the command line reports it as one line (file, cause, fix). Raised in a
    DataLoader worker, it is rebuilt by torch from its report alone (`ImageReadError(report)`):
    the report's last line is the original message, which is kept and the traceback dropped.
    """

    FIX = (
        "delete or replace the file, or train from shards (data.shards=auto, the default: "
        "writing them skips unreadable files)"
    )

    def __init__(self, path: str | Path, cause: BaseException | None = None) -> None:
        if cause is None:  # a loader worker's report: "...\n<module>.ImageReadError: <message>"
            last = str(path).rstrip().splitlines()[-1]
            message = last.split("ImageReadError: ", 1)[-1]
            self.path = message.removeprefix("cannot read image ").split(": ", 1)[0]
        else:
            message = f"cannot read image {path}: {type(cause).__name__}: {cause}; {self.FIX}"
            self.path = str(path)
        super().__init__(message)


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


def check_channels(channels: int) -> int:
    if channels not in (1, 3):
        raise ValueError(f"data.channels must be 0 (native), 1 or 3, got {channels}")
    return channels
