"""Generators and discriminators, built from `ModelConfig` plus the data's `DatasetInfo`.

Contract the trainer relies on:
- G(z (B, z_dim), y | None) -> (B, *info.sample_shape); images in [-1, 1]; attribute `z_dim`.
- D(x, y | None) -> (adv logits (B,), aux logits (B, K) | None); never a sigmoid; attribute
  `has_aux`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from gandist.config import ModelConfig
from gandist.data.base import DatasetInfo
from gandist.models.conditioning import LabelEncoder, check_condition
from gandist.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gandist.models.init import init_weights
from gandist.models.mlp import (
    MLPDiscriminator,
    MLPGenerator,
    build_toy_discriminator,
    build_toy_generator,
)
from gandist.registry import Registry

Factory = Callable[[ModelConfig, DatasetInfo], nn.Module]

GENERATORS: Registry[Factory] = Registry("generator")
DISCRIMINATORS: Registry[Factory] = Registry("discriminator")

GENERATORS.register("dcgan")(DCGANGenerator)
GENERATORS.register("mlp")(MLPGenerator)
GENERATORS.register("toy")(build_toy_generator)
DISCRIMINATORS.register("dcgan")(DCGANDiscriminator)
DISCRIMINATORS.register("mlp")(MLPDiscriminator)
DISCRIMINATORS.register("toy")(build_toy_discriminator)


def build_generator(cfg: ModelConfig, info: DatasetInfo) -> nn.Module:
    """The generator named by `cfg.arch`, initialised per `cfg.init`."""
    check_condition(cfg, info)
    return GENERATORS.get(cfg.arch)(cfg, info)


def build_discriminator(cfg: ModelConfig, info: DatasetInfo) -> nn.Module:
    """The discriminator/critic named by `cfg.arch`, initialised per `cfg.init`."""
    check_condition(cfg, info)
    return DISCRIMINATORS.get(cfg.arch)(cfg, info)


def has_batchnorm(module: nn.Module) -> bool:
    """True if any BatchNorm (incl. SyncBatchNorm) is inside: it mixes samples across the batch,
    which breaks per-sample gradient penalties and 1-process == N-process equivalence."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (spectral-norm nets count their original weights once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "DISCRIMINATORS",
    "GENERATORS",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "LabelEncoder",
    "MLPDiscriminator",
    "MLPGenerator",
    "build_discriminator",
    "build_generator",
    "count_parameters",
    "has_batchnorm",
    "init_weights",
]
