"""Wire discriminator rejection sampling (models/rejection.py) to a run: its config, its real
data for the critic's calibration, and its critic's weights."""

from __future__ import annotations

import dataclasses

import torch
from accelerate import Accelerator
from torch import nn

from gandist.config import Config
from gandist.data.base import DatasetInfo
from gandist.models.rejection import RejectionSampler, calibrate, check_rejection

CALIBRATION_REAL = 10000  # real samples the calibration draws its batches from (at most)
CALIBRATION_BYTES = 2**30  # ... and at most this much of them in memory (large images)


def with_rejection(
    G: nn.Module, D: nn.Module, cfg: Config, info: DatasetInfo, quantile: float | None = None
) -> RejectionSampler:
    """G followed by DRS at `quantile` (default: eval.rejection), with a calibrated copy of D.

    Every process builds the same sampler (same seed, same real samples), so scores do not
    depend on the process count."""
    from gandist.evaluation.reference import real_samples, samples_in_memory

    q = check_rejection(cfg.eval.rejection if quantile is None else quantile, "eval.rejection")
    if cfg.model.condition == "none":  # labels of the data, but not the model's
        info = dataclasses.replace(info, label_type="none", num_labels=0)
    seed = cfg.train.seed
    n = samples_in_memory(info, CALIBRATION_REAL, CALIBRATION_BYTES)
    x, y = real_samples(cfg.data, n, seed)
    critic = calibrate(
        D,
        G,
        (x, y if info.label_type != "none" else None),
        pack=cfg.model.pack,
        steps=cfg.eval.rejection_steps,
        seed=seed,
        batch_size=min(cfg.train.batch_size, 256),
    )
    return RejectionSampler(
        G,
        critic,
        pack=cfg.model.pack,
        quantile=q,
        seed=seed,
        label_type=info.label_type,
        num_labels=info.num_labels,
    )


def rejection_record(G: nn.Module, acc: Accelerator | None = None) -> dict[str, float]:
    """What a score record says about rejection sampling: the quantile and the share of
    candidates accepted; nothing when G samples without it. `acc`: the samples were split over
    its processes, so the counts are summed over them (a collective: every rank calls it)."""
    if not isinstance(G, RejectionSampler):
        return {}
    counts = torch.tensor([G.accepted, G.tried], dtype=torch.float64)
    if acc is not None and acc.num_processes > 1:
        counts = acc.reduce(counts.to(acc.device), reduction="sum").cpu()
    accepted, tried = counts.tolist()
    return {"rejection": G.quantile, "rejection_acceptance": round(accepted / max(tried, 1), 4)}


def load_critic(ck, cfg: Config, info: DatasetInfo, device: torch.device) -> nn.Module:
    """The checkpoint's critic (discriminator.safetensors), built from its config."""
    from gandist.models import build_discriminator
    from gandist.training.checkpoint import load_module_weights

    D = build_discriminator(cfg.model, info)
    weights = ck / "discriminator.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(
            f"{weights}: rejection sampling needs the run's critic, and this checkpoint has "
            "none; score without eval.rejection / --rejection"
        )
    load_module_weights(D, weights)
    return D.to(device)
