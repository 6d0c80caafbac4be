"""Optimizer per network from its config section (Adam, RMSprop, SGD), and the config's
hyper-parameters written back over a checkpoint's on resume."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from gandist.config import OptimizerConfig

KINDS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


def settings(cfg: OptimizerConfig) -> dict[str, Any]:
    """The hyper-parameters besides lr that each kind is built with (lr is the schedule's)."""
    if cfg.name == "adam":
        betas = (float(cfg.betas[0]), float(cfg.betas[1]))
        return {"betas": betas, "eps": cfg.eps, "weight_decay": cfg.weight_decay}
    if cfg.name == "rmsprop":
        return {
            "alpha": cfg.alpha,
            "eps": cfg.eps,
            "weight_decay": cfg.weight_decay,
            "momentum": cfg.momentum,
        }
    if cfg.name == "sgd":
        return {"momentum": cfg.momentum, "weight_decay": cfg.weight_decay}
    raise ValueError(f"unknown optimizer {cfg.name!r}; use adam, rmsprop or sgd")


def build_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: OptimizerConfig
) -> torch.optim.Optimizer:
    kwargs = settings(cfg)  # names an unknown kind
    return KINDS[cfg.name](params, lr=cfg.lr, **kwargs)


def _shown(value: Any) -> str:
    return str(list(value)) if isinstance(value, tuple | list) else str(value)


def apply_settings(optimizer: torch.optim.Optimizer, cfg: OptimizerConfig, net: str) -> list[str]:
    """Write the config's hyper-parameters into every param group; returns one line per setting
    that differed from the group's, naming the key (`optim.<net>.<key>`).

    torch's load_state_dict restores the param groups a checkpoint was saved with, so without
    this a run resumed with new betas, eps, momentum or weight decay would silently keep the old
    ones (the learning rate is set from the step, training/schedules.py). The optimizer's moment
    estimates are kept: the new settings apply from the resumed step on."""
    changed = []
    for key, value in settings(cfg).items():
        before = {_shown(g.get(key)) for g in optimizer.param_groups}
        for group in optimizer.param_groups:
            group[key] = value
        if before != {_shown(value)}:
            old = ", ".join(sorted(before))
            changed.append(
                f"optim.{net}.{key} is {_shown(value)} from here on (the checkpoint's optimizer "
                f"had {old})"
            )
    return changed
