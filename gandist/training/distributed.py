"""Process-group facts the trainer must get right: device choice, world size, rank agreement."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

from gandist.config import Config


def build_accelerator(cfg: Config, log_with: str | None) -> Accelerator:
    """An Accelerator for this config, on CPU when no GPU is present.

    `cpu=True` matters on GPU-less hosts: without it torchrun-started processes each believe they
    are alone (research note §8). Buffers are not broadcast on every forward: D runs twice (real,
    fake) before one backward, and BatchNorm statistics are averaged by `sync_buffers` instead.
    """
    if cfg.train.precision == "fp16" and not torch.cuda.is_available():
        raise ValueError(
            "train.precision=fp16 needs a CUDA GPU (on CPU accelerate silently runs without a loss "
            "scaler); use train.precision=bf16 or no on this machine"
        )
    handlers = [
        DistributedDataParallelKwargs(broadcast_buffers=False, find_unused_parameters=False),
        InitProcessGroupKwargs(timeout=timedelta(seconds=cfg.dist.timeout_s)),
    ]
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=cfg.train.precision,
        log_with=log_with,
        kwargs_handlers=handlers,
    )


def assert_world_size(accelerator: Accelerator, expected: int = 0) -> None:
    """Fail fast when the launcher and accelerate disagree (silent duplication otherwise)."""
    want = expected or int(os.environ.get("WORLD_SIZE", "1"))
    got = accelerator.num_processes
    if got != want:
        raise RuntimeError(
            f"launched for {want} processes but accelerate sees {got} (distributed type "
            f"{accelerator.distributed_type}). On a CPU-only host use "
            "`torchrun --nproc_per_node N` or `accelerate launch --multi_gpu --num_processes N` "
            "(`accelerate launch --cpu --num_processes N` starts only one process); "
            "check dist.world_size."
        )


def sync_buffers(accelerator: Accelerator, *modules: torch.nn.Module) -> None:
    """Average float buffers (BatchNorm running stats) over ranks.

    Running statistics are exponential averages, which are linear, so averaging them now equals
    having averaged every step. Call on all ranks before sampling, evaluation or checkpointing.
    """
    if accelerator.num_processes == 1:
        return
    for module in modules:
        for buf in module.buffers():
            if buf.is_floating_point():
                dist.all_reduce(buf.data, op=dist.ReduceOp.SUM)
                buf.data /= accelerator.num_processes


def check_consistency(accelerator: Accelerator, modules: dict[str, torch.nn.Module]) -> None:
    """Raise if any parameter or buffer differs from rank 0's copy (call on all ranks)."""
    if accelerator.num_processes == 1:
        return
    bad: list[str] = []
    for name, module in modules.items():
        tensors = list(module.named_parameters()) + list(module.named_buffers())
        for key, t in tensors:
            ref = t.detach().clone()
            dist.broadcast(ref, src=0)
            if not torch.equal(ref, t.detach()):
                diff = (ref.float() - t.detach().float()).abs().max().item()
                bad.append(f"{name}.{key} (max |diff| {diff:.3g})")
    flag = torch.tensor([len(bad)], device=accelerator.device)
    dist.all_reduce(flag)
    if flag.item():
        where = "; ".join(bad[:5]) or "on another rank"
        raise RuntimeError(
            f"rank {accelerator.process_index}: parameters differ across ranks: {where}"
        )
