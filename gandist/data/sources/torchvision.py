"""`torchvision:<Name>`: any torchvision data set by name, decoded lazily in `__getitem__`."""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from gandist.config import DataConfig
from gandist.data.base import DatasetInfo, LabelType, SourceData
from gandist.data.sources.pil import ImageTransform, check_channels, mode_channels


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
    channels = check_channels(cfg.channels or mode_channels(img))
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
