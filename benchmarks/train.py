"""Trainer overhead: a gandist step vs a bare PyTorch loop doing the same work, side by side.

Both use the very same G and D architectures (built by gandist.models from one config), the same
global batch, optimizers, loss and penalty, and the same in-memory data (the bare loop is in
`benchmarks.bare`). Repetitions alternate between the two so machine noise hits both alike.
Reported: ms per outer step each, the overhead ratio (target <= 0.03), the fixed cost per step
in ms (what the ratio becomes on a faster device), img/s, and FLOPs per step with the achieved
TFLOP/s. `--channels-last` and `--compile` switch both sides alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.bare import BareLoop, compile_pair, to_channels_last
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
from benchmarks.flops import count_flops, flops_report
from benchmarks.recipes import add_model_arguments, bench_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--channels-last", action="store_true", help="NHWC weights on both sides")
    p.add_argument("--compile", action="store_true", help="torch.compile G and D on both sides")
    add_threads_argument(p)
    add_clock_argument(p)


def apply_variant(trainer: Any, channels_last: bool, compile: bool) -> list[str]:
    """The layout/compile switches on a built trainer's networks (one process, no DDP)."""
    parts = trainer.parts
    if channels_last:
        to_channels_last(parts.G_plain, parts.D_plain)
    if not compile:
        return []
    G, D, D_penalty, compiled = compile_pair(parts.G, parts.D, parts.loss_cfg.penalty)
    if D_penalty is not D:
        # gandist's critic step runs the penalty through the same D as the plain forwards, and
        # a compiled D has no double backward: D stays eager there.
        D, compiled = parts.D, ["G"]
    trainer.parts = dataclasses.replace(parts, G=G, D=D)
    return compiled


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The measurement under --threads, restored after (a test suite shares the process)."""
    with torch_threads(args.threads):
        return _run(args)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from gandist.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = bench_config(args.model, args.batch, args.width, args.precision, Path(tmp))
        trainer = Trainer(cfg)
        dev = trainer.acc.device
        # FLOPs from an eager copy (a compiled graph hides its ops from the counter).
        flops = count_flops(BareLoop(trainer, cfg).step)
        bare = BareLoop(trainer, cfg, channels_last=args.channels_last, compile=args.compile)
        compiled = apply_variant(trainer, args.channels_last, args.compile)
        if args.compile and compiled == ["G"]:  # gandist's penalised D stays eager: so here too
            bare.D, bare.compiled = bare.D_penalty, compiled
        warmup = 3 if args.compile else 2  # compiled graphs: D step, G step, recompiles
        fns = {"gandist": trainer.train_step, "bare": bare.step}
        reps = alternate(fns, args.steps, args.reps, dev, warmup, args.clock)
    g, b = median(reps["gandist"]), median(reps["bare"])
    images = args.batch * cfg.train.n_critic  # real images through D per outer step
    return {
        "benchmark": "train",
        "machine": machine(),
        "settings": settings(args),
        "n_critic": cfg.train.n_critic,
        "compiled": compiled,
        "gandist_ms_per_step": round(g, 2),
        "bare_ms_per_step": round(b, 2),
        "overhead": round(g / b - 1.0, 4),
        # gandist/bare per repetition, pairs timed back to back: median and quartiles
        "paired_ratio": paired_ratio(reps["gandist"], reps["bare"]),
        "overhead_target": 0.03,
        "fixed_cost_ms_per_step": round(g - b, 3),
        "gandist_img_per_s": round(images / g * 1000.0, 1),
        "bare_img_per_s": round(images / b * 1000.0, 1),
        "flops": flops_report(flops, g, dev, args.precision),
        "reps_ms": {k: rounded(v) for k, v in reps.items()},
    }
