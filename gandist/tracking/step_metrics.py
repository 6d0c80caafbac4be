"""The numbers a log step records besides the losses: the metrics' mean over ranks, training
progress (epoch, images, learning rates, fp16 loss-scaler state) and throughput.

Only log steps call these; `reduce_metrics` is a collective (every rank calls it), the one host
sync of a log step.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator


def reduce_metrics(acc: Accelerator, metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean of each scalar metric over ranks, in one allreduce."""
    keys = sorted(metrics)
    stacked = torch.stack([metrics[k].float().reshape(()) for k in keys])
    stacked = acc.reduce(stacked, reduction="mean")
    return dict(zip(keys, stacked.tolist(), strict=True))


def progress(
    epoch: float,
    images_seen: int,
    lr: tuple[float, float],
    scaler: torch.amp.GradScaler | None,
    skipped: dict[str, int],
) -> dict[str, float]:
    """Where the run is: epoch (fractional), images through D, the learning rates the step ran
    with, and under fp16 the optimizer steps the GradScaler skipped and its scale."""
    values = {"epoch": epoch, "images_seen": float(images_seen), "lr/g": lr[0], "lr/d": lr[1]}
    if scaler is not None:  # every rank skips the same steps
        values["amp/d_skipped_steps"] = float(skipped["d"])
        values["amp/g_skipped_steps"] = float(skipped["g"])
        values["amp/loss_scale"] = float(scaler.get_scale())
    return values


def throughput(img_per_s: float, processes: int) -> dict[str, float]:
    out = {"perf/img_per_s": img_per_s, "perf/img_per_s_per_device": img_per_s / processes}
    if torch.cuda.is_available():
        out["perf/gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out
