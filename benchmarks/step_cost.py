"""What the gradient penalty costs: gandist's WGAN-GP critic step with and without the penalty.

Both sides are `gandist.training.steps.discriminator_step` on the same prepared critic, optimizer,
batch, z and epsilon; the only difference is `loss.penalty` (gp vs none), so the ratio is the
price of the penalty's extra forward and double backward through D. Timed in alternating
repetitions; FLOPs of each are counted as well, since the time ratio should follow them.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    add_clock_argument,
    add_threads_argument,
    alternate,
    machine,
    median,
    paired_ratio,
    rounded,
    settings,
    torch_threads,
)
from benchmarks.flops import count_flops
from benchmarks.recipes import add_model_arguments, bench_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p, model="wgan_gp64")
    add_threads_argument(p)
    add_clock_argument(p)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The measurement under --threads, restored after (a test suite shares the process)."""
    with torch_threads(args.threads):
        return _run(args)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from gandist.training.steps import discriminator_step
    from gandist.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        extra = ["loss.penalty=gp", "loss.adversarial=wasserstein"]
        cfg = bench_config(args.model, args.batch, args.width, args.precision, Path(tmp), *extra)
        trainer = Trainer(cfg)
        dev, dtype = trainer.acc.device, trainer.dtype
        gp_parts = trainer.parts
        plain_parts = dataclasses.replace(
            gp_parts, loss_cfg=dataclasses.replace(gp_parts.loss_cfg, penalty="none")
        )
        real, y = (t.to(dev) for t in trainer.stream.first_samples(args.batch))
        real = real.to(dtype)
        gen = torch.Generator().manual_seed(0)
        z = torch.randn(args.batch, cfg.model.z_dim, generator=gen).to(dev, dtype)
        eps = torch.rand(args.batch, generator=gen).to(dev, dtype)
        steps = {
            "gp": lambda: discriminator_step(gp_parts, real, y, z, eps),
            "plain": lambda: discriminator_step(plain_parts, real, y, z, eps),
        }
        flops = {k: count_flops(fn) for k, fn in steps.items()}
        reps = alternate(steps, args.steps, args.reps, dev, clock=args.clock)
    gp, plain = median(reps["gp"]), median(reps["plain"])
    return {
        "benchmark": "step-cost",
        "machine": machine(),
        "settings": settings(args),
        "gp_d_step_ms": round(gp, 2),
        "plain_d_step_ms": round(plain, 2),
        "gp_vs_plain": round(gp / plain, 3),
        "gp_vs_plain_paired": paired_ratio(reps["gp"], reps["plain"]),
        "gp_d_step_flops": flops["gp"],
        "plain_d_step_flops": flops["plain"],
        "gp_vs_plain_flops": round(flops["gp"] / flops["plain"], 3),
        "reps_ms": {k: rounded(v) for k, v in reps.items()},
    }
