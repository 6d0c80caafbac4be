"""G and D as a run trains them: built from the config, seeded alike on every rank, optionally
initialised from another run, converted for SyncBatchNorm, dtype and memory layout, before the
optimizers take their parameters; then wrapped by DDP (`distribute`) into the steps' GANParts."""

from __future__ import annotations

import warnings

import torch
from accelerate import Accelerator
from torch import nn

from gandist.config import Config
from gandist.data.base import DatasetInfo
from gandist.models import build_discriminator, build_generator
from gandist.objectives.augment import aux_policy, parse_policy
from gandist.objectives.losses import LOSSES
from gandist.seeds import derive_seed
from gandist.training.init_from import InitFrom, init_networks
from gandist.training.steps import GANParts


def build_networks(
    cfg: Config, info: DatasetInfo, world_size: int, on_cpu: bool
) -> tuple[nn.Module, nn.Module, InitFrom | None]:
    """(G, D, what train.init_from loaded or None).

    Initial weights depend on train.seed only (identical on every rank and for every world
    size). Afterwards the global RNG is re-seeded per rank: from here it serves dropout only,
    and each rank draws its own masks, as independent samples of one large batch do
    (docs/distributed-correctness.md §6).
    """
    torch.manual_seed(derive_seed(cfg.train.seed, "init"))
    G = build_generator(cfg.model, info)
    D = build_discriminator(cfg.model, info)
    init = init_networks(cfg, info, G, D)  # before DDP wraps them; resume wins over it
    if cfg.dist.sync_batchnorm:
        if world_size > 1 and on_cpu:
            raise ValueError(
                "dist.sync_batchnorm=true needs GPUs: SyncBatchNorm has no CPU (gloo) "
                "implementation for more than one process; set dist.sync_batchnorm=false"
            )
        G = nn.SyncBatchNorm.convert_sync_batchnorm(G)
        D = nn.SyncBatchNorm.convert_sync_batchnorm(D)
    if cfg.train.dtype == "float64":
        G, D = G.double(), D.double()
    if uses_channels_last(cfg, info):  # in place, before the optimizers take the parameters
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
    return G, D, init


def uses_channels_last(cfg: Config, info: DatasetInfo) -> bool:
    return cfg.train.channels_last and info.kind == "image"


def reseed_for_rank(cfg: Config, rank: int) -> None:
    torch.manual_seed(derive_seed(cfg.train.seed, "rank-rng", rank))


def distribute(
    acc: Accelerator,
    cfg: Config,
    info: DatasetInfo,
    G: nn.Module,
    D: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
) -> GANParts:
    """G, D and their optimizers through accelerate's prepare (DDP, AMP), with what the D and
    G steps need besides (loss, penalty settings, label type, packing, augmentation)."""
    with warnings.catch_warnings():
        # torch renamed DDP's broadcast_buffers; accelerate still passes the old name.
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
        G, D, opt_g, opt_d = acc.prepare(G, D, opt_g, opt_d)
    policy = parse_policy(cfg.train.augment)
    return GANParts(
        accelerator=acc,
        G=G,
        D=D,
        opt_g=opt_g,
        opt_d=opt_d,
        loss=LOSSES.get(cfg.loss.adversarial),
        loss_cfg=cfg.loss,
        label_type=info.label_type if cfg.model.condition != "none" else "none",
        pack=cfg.model.pack,
        augment=policy,
        augment_aux=aux_policy(cfg.train.augment_aux, policy),
        twin=cfg.model.aux_twin,
    )
