"""Shards and folders as other tools write them: webdataset's own ShardWriter, grey PNG folders.

Built from scikit-learn's bundled digits, so nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds
from PIL import Image
from sklearn.datasets import load_digits


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    return (d.images * 16).clip(0, 255).astype(np.uint8), d.target.astype(int)


def digit(i: int, size: int = 16) -> tuple[Image.Image, int]:
    """Digit i of the bundled set as a grey `size` px PIL image, and its class."""
    images, target = _digits()
    img = Image.fromarray(images[i % len(images)], "L")
    return img.resize((size, size), Image.Resampling.BILINEAR), int(target[i % len(target)])


def write_wds(
    out: Path,
    n: int = 200,
    per_shard: int = 50,
    sample: Callable[[int], dict[str, Any]] | None = None,
) -> Path:
    """`n` samples in shards of `per_shard` by webdataset.ShardWriter (`shard-%06d.tar`, no
    dataset.json); default sample: a 16 px grey digit as `.jpg` with its class as `.cls`."""
    out.mkdir(parents=True, exist_ok=True)

    def default(i: int) -> dict[str, Any]:
        img, label = digit(i)
        return {"jpg": img, "cls": label}

    make = sample or default
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for i in range(n):
            sink.write({"__key__": f"sample{i:05d}", **make(i)})
    return out


def grey_digit_folder(root: Path, per_class: int = 12, size: int = 16) -> Path:
    """`root/<digit>/<i>.png`: grey (mode L) PNGs, one subfolder per class, like MNIST PNGs."""
    _, target = _digits()
    counts: dict[int, int] = {}
    for i in range(len(target)):
        label = int(target[i])
        if counts.get(label, 0) >= per_class:
            continue
        img, _ = digit(i, size)
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        img.save(root / str(label) / f"{i}.png")
        counts[label] = counts.get(label, 0) + 1
        if len(counts) == 10 and all(c >= per_class for c in counts.values()):
            break
    return root
