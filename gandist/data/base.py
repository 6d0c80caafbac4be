"""What every data source hands the rest of gandist: a map-style dataset plus its description.

The trainer, the models and the shard writer only look at `DatasetInfo`, so a new source (or the
WebDataset shard stream) plugs in without touching them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

if TYPE_CHECKING:
    from gandist.config import DataConfig

LabelType = Literal["none", "class", "multi"]


@dataclass(frozen=True)
class DatasetInfo:
    """Shape and label space of a data source.

    Images are float tensors (C, H, W) in [-1, 1]; points are float tensors (dim,).
    Labels: "class" -> int64 scalar in [0, num_labels); "multi" -> float32 multi-hot (num_labels,);
    "none" -> int64 scalar 0 (ignored).
    """

    kind: Literal["image", "points"]
    channels: int  # image channels; 0 for points
    image_size: int  # square side in pixels; 0 for points
    label_type: LabelType
    num_labels: int  # classes ("class"), label vocabulary size ("multi"), 0 ("none")
    label_names: tuple[str, ...] = ()
    source: str = ""
    point_dim: int = 2  # only for kind == "points"
    extras: dict = field(default_factory=dict, compare=False)  # source-specific facts (toy modes)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        if self.kind == "points":
            return (self.point_dim,)
        return (self.channels, self.image_size, self.image_size)


@dataclass
class SourceData:
    """A loaded source: `dataset[i] -> (x, y)` as documented on DatasetInfo.

    `tensors` is set when the whole source sits in memory as (x (N, ...), y (N, ...)); the batch
    stream then indexes it directly instead of going through per-item collation.
    """

    info: DatasetInfo
    dataset: Dataset
    tensors: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]


def generated_rgb_source(
    cfg: DataConfig,
    name: str,
    arg: str,
    draw: Callable[[int, int, int], tuple[np.ndarray, np.ndarray]],
    default_size: int,
    default_n: int,
    label_type: LabelType,
    label_names: tuple[str, ...],
) -> SourceData:
    """A source drawn at load in memory: `draw(n, size, seed)` gives (n, size, size, 3) uint8 RGB
    and its labels; this checks the config, converts to [-1, 1] (channels 1 takes luma, ITU-R
    601 weights, as PIL's "L" mode does) and describes it. Shared by `shapes` and `glyphs`."""
    if arg:
        raise ValueError(f"data.source: {name!r} takes no argument, got {cfg.source!r}")
    size = cfg.image_size or default_size
    channels = cfg.channels or 3
    if channels not in (1, 3):
        raise ValueError(f"data.channels must be 1 or 3 for {name}, got {channels}")
    images, labels = draw(cfg.n_samples or default_n, size, cfg.seed)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    if channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        x = (x * weights).sum(dim=1, keepdim=True)
    x = (x / 127.5 - 1.0).clamp_(-1.0, 1.0).contiguous()
    y = torch.from_numpy(labels)
    info = DatasetInfo(
        kind="image",
        channels=channels,
        image_size=size,
        label_type=label_type,
        num_labels=len(label_names),
        label_names=label_names,
        source=cfg.source,
    )
    return SourceData(info=info, dataset=TensorDataset(x, y), tensors=(x, y))
