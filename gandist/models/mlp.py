"""Fully connected G and D for images (flattened) and point sets.

Reproduces the labs: anime faces G 100-128-256-512-1024-12288 (no norm on the first layer, BN eps
0.8, LeakyReLU 0.2, Tanh) and D 12288-512-256-1; 2-D points G z-128-256-512-2 (ReLU, linear out)
and D 2-128-256-128-1 (LeakyReLU). Linear layers keep their bias, as in those labs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from gandist.config import ModelConfig
from gandist.data.base import DatasetInfo
from gandist.models.conditioning import (
    CriticHead,
    LabelEncoder,
    check_condition,
    classifier_norm_skip,
    embed_labels,
    generator_encoder,
    join_latent,
)
from gandist.models.init import finish
from gandist.models.norms import norm1d
from gandist.models.packing import check_pack, pack


def _hidden_stack(
    in_dim: int,
    widths: list[int],
    make_act: Callable[[], nn.Module],
    norm: str,
    eps: float,
    key: str,
    dropout: float = 0.0,
) -> tuple[nn.Sequential, int]:
    """Linear -> [norm] -> act -> [dropout] per width; no norm on the first layer."""
    layers: list[nn.Module] = []
    prev = in_dim
    for i, width in enumerate(widths):
        layers.append(nn.Linear(prev, width))
        if i > 0:
            layers.append(norm1d(norm, width, eps, key))
        layers.append(make_act())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        prev = width
    return nn.Sequential(*layers), prev


class MLPGenerator(nn.Module):
    """(z (B, z_dim), y) -> samples (B, *info.sample_shape); Tanh only for images."""

    def __init__(self, cfg: ModelConfig, info: DatasetInfo) -> None:
        super().__init__()
        check_condition(cfg, info)
        self.z_dim = cfg.z_dim
        self.sample_shape = tuple(info.sample_shape)
        self.label = generator_encoder(cfg, info)
        in_dim = cfg.z_dim + (cfg.embed_dim if self.label is not None else 0)
        image = info.kind == "image"

        def make_act() -> nn.Module:
            # Images follow the lab's LeakyReLU; the points lab uses ReLU.
            return nn.LeakyReLU(cfg.leaky_slope) if image else nn.ReLU()

        self.hidden, width = _hidden_stack(
            in_dim, list(cfg.g_hidden), make_act, cfg.g_norm, cfg.norm_eps, "model.g_norm"
        )
        self.out = nn.Linear(width, math.prod(self.sample_shape))
        # Points can live anywhere on the plane, so their output stays linear.
        self.squash: nn.Module = nn.Tanh() if image else nn.Identity()
        finish(self, cfg.g_norm, cfg.init)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.hidden(join_latent(z, embed_labels(self.label, y)))
        return self.squash(self.out(h)).view(-1, *self.sample_shape)


class MLPDiscriminator(nn.Module):
    """(x (B, *sample_shape), y) -> (adv logits (B / pack,), aux logits (B, K) | None).

    With model.pack=k the first layer takes k x (features [+ label embedding]): packs of k
    samples (models/packing.py)."""

    def __init__(self, cfg: ModelConfig, info: DatasetInfo) -> None:
        super().__init__()
        check_condition(cfg, info)
        self.pack = check_pack(cfg)
        self.has_aux = cfg.condition == "acgan"
        self.label = (
            LabelEncoder(info.label_type, info.num_labels, cfg.embed_dim)
            if cfg.condition == "concat"
            else None
        )
        in_dim = math.prod(info.sample_shape) + (cfg.embed_dim if self.label is not None else 0)
        in_dim *= self.pack
        self.hidden, width = _hidden_stack(
            in_dim,
            list(cfg.d_hidden),
            lambda: nn.LeakyReLU(cfg.leaky_slope),
            cfg.d_norm,
            cfg.norm_eps,
            "model.d_norm",
            dropout=cfg.dropout,
        )
        self.head = CriticHead(width, cfg, info)
        finish(self, cfg.d_norm, cfg.init, free=classifier_norm_skip(cfg))

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        h = x.flatten(1)
        if self.label is not None:
            h = torch.cat([h, self.label(y).to(h.dtype)], dim=1)
        return self.head(self.hidden(pack(h, self.pack)), y)


def build_toy_generator(cfg: ModelConfig, info: DatasetInfo) -> MLPGenerator:
    """The MLP generator, restricted to point sets so a mistyped arch fails loudly."""
    _require_points(info)
    return MLPGenerator(cfg, info)


def build_toy_discriminator(cfg: ModelConfig, info: DatasetInfo) -> MLPDiscriminator:
    _require_points(info)
    return MLPDiscriminator(cfg, info)


def _require_points(info: DatasetInfo) -> None:
    if info.kind != "points":
        raise ValueError(
            f"model.arch='toy' is the MLP for point sets, but the data is {info.kind!r} "
            f"({info.source or 'images'}); use model.arch: mlp or dcgan for images"
        )
