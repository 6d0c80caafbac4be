"""The Python API for using a trained generator: `from gandist import load_generator`.

    G = load_generator("runs/demo")             # latest checkpoint, EMA weights when present
    images = G.sample(16, seed=0)               # (16, C, H, W) in [-1, 1]
    cats = G.sample(8, labels="cat")            # conditional: a class name or index for all
    mixed = G.sample(3, labels=["cat", 2, "dog"])  # or one condition per sample
    x = G(torch.randn(4, G.z_dim), labels)      # or call it on your own noise

The generator is rebuilt exactly as `gandist sample` does (gandist.sampling.load_generator: the
checkpoint's config.yaml and safetensors exports, nothing pickled), then wrapped so that callers
need not know how labels are encoded. It is an `nn.Module` in eval mode: `.to("cuda")`, `.half()`
and `torch.compile` work as on any module.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gandist.data.base import DatasetInfo
from gandist.models.truncation import truncated
from gandist.sampling import load_generator as _build_from_checkpoint
from gandist.sampling import parse_labels

Labels = Tensor | int | str | Sequence[int | str | Sequence[int | str]] | None


class TrainedGenerator(nn.Module):
    """A trained generator with its data description: call it on (z, labels) or `.sample()`.

    Attributes: `z_dim`; `info` (image size, channels, label vocabulary); `label_names`;
    `conditional` (True when it takes labels); `checkpoint` (the directory read); `ema` (True when
    the EMA weights were loaded).
    """

    def __init__(self, net: nn.Module, info: DatasetInfo, checkpoint: Path, ema: bool) -> None:
        super().__init__()
        self.net = net
        self.info = info
        self.checkpoint = checkpoint
        self.ema = ema
        self.z_dim: int = int(net.z_dim)
        self.eval()

    @property
    def conditional(self) -> bool:
        return self.info.label_type != "none"

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(self.info.label_names) if self.conditional else ()

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.info.sample_shape)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """z (B, z_dim) [+ labels: class indices (B,) or multi-hot (B, K)] -> (B, *sample_shape);
        images are in [-1, 1]."""
        return self.net(z, labels)

    @torch.no_grad()
    def sample(
        self, n: int, labels: Labels = None, seed: int = 0, truncation: float = 1.0
    ) -> Tensor:
        """n samples from noise seeded by `seed` (the same on any device), on the module's device;
        `truncation` psi in (0, 1] scales the noise (models/truncation.py; 1: none).

        labels (conditional generators only):
        - None: class models cycle through the classes (0, 1, ..., K-1, 0, ...); multi-label
          models draw 1-3 labels per sample from `seed`;
        - an int or a str: one condition for every sample: a class index or name, or for
          multi-label models label names/indices joined by commas ("red cube,blue sphere");
        - a list of n such items (for multi-label models each may also be a list of names);
        - a tensor: class indices (n,) or multi-hot (n, K), used as given.
        """
        if n < 1:
            raise ValueError(f"sample: n must be >= 1, got {n}")
        param = next(self.net.parameters())
        y = self.labels(labels, n, seed)
        z = torch.randn(n, self.z_dim, generator=torch.Generator().manual_seed(seed))
        z = z.to(param.device, param.dtype)
        if y is not None:
            y = y.to(param.device, param.dtype if y.is_floating_point() else y.dtype)
        return truncated(self.net, truncation)(z, y)

    def labels(self, spec: Labels, n: int, seed: int = 0) -> Tensor | None:
        """The label tensor `sample` feeds the network for `spec` (see `sample`), on the CPU."""
        info = self.info
        spec = _plain(spec)
        if not self.conditional:
            if spec is not None:
                raise ValueError(
                    "labels given, but this generator is unconditional (model.condition=none)"
                )
            return None
        if spec is None:
            if info.label_type == "class":
                return torch.arange(n) % info.num_labels
            # the label sets `gandist sample --seed` draws: the CLI and the API agree
            return parse_labels(None, info, n, seed)[0]
        if isinstance(spec, Tensor):
            return self._check_tensor(spec, n)
        if isinstance(spec, (int, str)):
            return self._parse(spec, n)
        items = [_plain(item) for item in spec]
        if len(items) != n:
            raise ValueError(f"labels: got {len(items)} conditions for n={n} samples")
        return torch.cat([self._parse(item, 1) for item in items])

    def _parse(self, item: int | str | Sequence[int | str], n: int) -> Tensor:
        """One condition for n samples. Python ints are indices; strings are names first (a
        class folder may be named "1"), then indices, as `gandist sample --labels`."""
        ints = [item] if isinstance(item, int) else None
        if not isinstance(item, (int, str)):
            item = [_plain(i) for i in item]
            if all(isinstance(i, int) for i in item):
                ints = list(item)
        if ints is None:
            return self._parse_text(self._item_text(item), n)
        k = self.info.num_labels
        bad = [i for i in ints if not 0 <= i < k]
        if bad or (self.info.label_type == "class" and len(ints) != 1):
            raise ValueError(
                f"labels: {item!r} is not a label index (0..{k - 1})"
                + ("" if bad else "; a class model takes one index per sample")
            )
        if self.info.label_type == "class":
            return torch.full((n,), ints[0], dtype=torch.long)
        y = torch.zeros(n, k)
        y[:, ints] = 1
        return y

    def _parse_text(self, text: str, n: int) -> Tensor:
        try:
            y = parse_labels(text, self.info, n)[0]
        except ValueError as exc:  # the CLI's wording names its flag; here it is an argument
            raise ValueError(str(exc).replace("--labels:", "labels:", 1)) from None
        assert y is not None
        return y

    @staticmethod
    def _item_text(item: int | str | Sequence[int | str]) -> str:
        if isinstance(item, (int, str)):
            return str(item)
        return ",".join(str(i) for i in item)

    def _check_tensor(self, y: Tensor, n: int) -> Tensor:
        k = self.info.num_labels
        if self.info.label_type == "class":
            if y.shape != (n,) or y.is_floating_point():
                raise ValueError(f"labels: class indices must be an integer tensor of shape ({n},)")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
                raise ValueError(f"labels: class indices must be in 0..{k - 1}")
            return y
        if y.shape != (n, k):
            raise ValueError(f"labels: multi-hot labels must have shape ({n}, {k})")
        return y.float()

    def extra_repr(self) -> str:
        shape = "x".join(map(str, self.sample_shape))
        return (
            f"checkpoint={self.checkpoint}, ema={self.ema}, z_dim={self.z_dim}, "
            f"samples={shape}, labels={self.info.label_type}"
        )


def load_generator(
    path: str | Path, ema: bool = True, device: str | torch.device = "cpu"
) -> TrainedGenerator:
    """The generator of a run directory (its latest checkpoint) or a checkpoint directory, in eval
    mode on `device`. `ema=True` loads the EMA weights when the run kept them (train.ema=true),
    else the raw generator; `ema=False` always loads the raw generator."""
    net, info, ck = _build_from_checkpoint(path, use_ema=ema)
    used_ema = ema and (ck / "ema_generator.safetensors").is_file()
    return TrainedGenerator(net, info, ck, used_ema).to(device)


def _plain(spec: Any) -> Any:
    """numpy labels as Python's or torch's (`for c in np.arange(10)` gives np.int64, which is no
    `int`: it was iterated as a sequence and failed with a bare TypeError)."""
    if isinstance(spec, numbers.Integral) and not isinstance(spec, bool):
        return int(spec)
    if isinstance(spec, np.ndarray):
        return torch.as_tensor(spec) if spec.dtype.kind in "iuf" else spec.tolist()
    return spec
