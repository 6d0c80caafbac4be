"""`digits`: scikit-learn's bundled 8x8 digits, resized, in memory (no download)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from gandist.config import DataConfig
from gandist.data.base import DatasetInfo, SourceData
from gandist.data.keys import DEFAULT_IMAGE_SIZES

DIGITS_DEFAULT_SIZE = DEFAULT_IMAGE_SIZES["digits"]


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size), bilinear; antialiased when shrinking so small sizes
    average pixels instead of dropping them."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    shrink = size < min(x.shape[-2:])
    return F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
    )


def build_digits(arg: str, cfg: DataConfig) -> SourceData:
    """`digits`: the 1797 scikit-learn 8x8 digits, ink bright on dark like MNIST, in memory.

    Bundled with scikit-learn, so it is the one image source that works offline from a fresh
    install, which is why it is the default.
    """
    if arg:
        raise ValueError(f"data.source: 'digits' takes no argument, got {cfg.source!r}")
    from sklearn.datasets import load_digits

    channels = cfg.channels or 1
    if channels not in (1, 3):
        raise ValueError(f"data.channels must be 0 (native), 1 or 3, got {channels}")
    size = cfg.image_size or DIGITS_DEFAULT_SIZE
    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # [0, 1]
    x = resize_images(x, size).clamp_(0.0, 1.0).mul_(2.0).sub_(1.0)
    if channels == 3:
        x = x.repeat(1, 3, 1, 1)
    x = x.contiguous()
    y = torch.from_numpy(digits.target.astype(np.int64))
    info = DatasetInfo(
        kind="image",
        channels=channels,
        image_size=size,
        label_type="class",
        num_labels=10,
        label_names=tuple(str(i) for i in range(10)),
        source=cfg.source,
    )
    return SourceData(info=info, dataset=TensorDataset(x, y), tensors=(x, y))
