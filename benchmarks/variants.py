"""Which way of running the same model is fastest: precision x memory layout x torch.compile.

Every variant is the bare loop (`benchmarks.bare`) on copies of the same G and D, timed in
alternating repetitions in one process, so the ratios between variants hold on a shared machine.
Per variant: ms per outer step, img/s and achieved TFLOP/s (with the fraction of the device's
peak on known GPUs); per precision, the fastest layout/compile combination. The gandist trainer's
own overhead under a chosen variant is `python -m benchmarks train --precision ... [--channels-last]
[--compile]`.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.bare import BareLoop
from benchmarks.common import (
    add_clock_argument,
    add_threads_argument,
    alternate,
    machine,
    median,
    rounded,
    settings,
    torch_threads,
)
from benchmarks.flops import count_flops, flops_report
from benchmarks.recipes import bench_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    from benchmarks.recipes import RECIPES

    p.add_argument("--model", choices=sorted(RECIPES), default="dcgan64")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--width", type=int, default=64, help="g_width = d_width")
    p.add_argument("--steps", type=int, default=5, help="timed steps per repetition")
    p.add_argument("--reps", type=int, default=5, help="alternating repetitions (median kept)")
    p.add_argument(
        "--precisions",
        default="",
        help="comma-separated from fp32,bf16,fp16 (default: fp32,bf16; plus fp16 on CUDA)",
    )
    p.add_argument("--layouts", default="nchw,channels_last", help="nchw and/or channels_last")
    p.add_argument(
        "--compile",
        default="eager",
        help="eager and/or compiled (torch.compile; slow to build on CPU). With a GP/R1 penalty "
        "the critic's plain forwards are compiled and the penalty's forward stays eager",
    )
    p.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend (aot_eager: the same autograd path, no code generation)",
    )
    add_threads_argument(p)
    add_clock_argument(p)


def _choices(text: str, allowed: tuple[str, ...]) -> list[str]:
    out = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in out if t not in allowed]
    if bad or not out:
        raise ValueError(f"choose from {', '.join(allowed)}; got {text!r}")
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The measurement under --threads, restored after (a test suite shares the process)."""
    with torch_threads(args.threads):
        return _run(args)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from gandist.training.trainer import Trainer

    cuda = torch.cuda.is_available()
    default = "fp32,bf16,fp16" if cuda else "fp32,bf16"
    precisions = _choices(args.precisions or default, ("fp32", "bf16", "fp16"))
    if "fp16" in precisions and not cuda:
        raise ValueError("fp16 autocast needs CUDA; on CPU use fp32,bf16")
    layouts = _choices(args.layouts, ("nchw", "channels_last"))
    modes = _choices(args.compile, ("eager", "compiled"))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = bench_config(args.model, args.batch, args.width, "fp32", Path(tmp))
        trainer = Trainer(cfg)  # builds G, D and the data; its own step is not timed here
        dev = trainer.acc.device
        flops = count_flops(BareLoop(trainer, cfg).step)
        loops = {
            f"{p}/{lay}/{mode}": BareLoop(
                trainer,
                cfg,
                precision=p,
                channels_last=lay == "channels_last",
                compile=mode == "compiled",
                backend=args.compile_backend,
            )
            for p, lay, mode in itertools.product(precisions, layouts, modes)
        }
        warmup = 3 if "compiled" in modes else 2
        fns = {k: v.step for k, v in loops.items()}
        reps = alternate(fns, args.steps, args.reps, dev, warmup, args.clock)
    images = args.batch * cfg.train.n_critic
    variants: dict[str, Any] = {}
    for name, ms_list in reps.items():
        ms = median(ms_list)
        p = name.split("/")[0]
        variants[name] = {
            "ms_per_step": round(ms, 2),
            "img_per_s": round(images / ms * 1000.0, 1),
            "compiled": loops[name].compiled,
            **flops_report(flops, ms, dev, p),
            "reps_ms": rounded(ms_list),
        }
    fastest = {
        p: min(
            (k for k in variants if k.startswith(f"{p}/")), key=lambda k: variants[k]["ms_per_step"]
        )
        for p in precisions
    }
    base = f"{precisions[0]}/{layouts[0]}/{modes[0]}"
    for v in variants.values():
        v["speedup"] = round(variants[base]["ms_per_step"] / v["ms_per_step"], 3)
    return {
        "benchmark": "variants",
        "machine": machine(),
        "settings": settings(args),
        "n_critic": cfg.train.n_critic,
        "flops_per_step": flops,
        "baseline": base,  # "speedup" of each variant is relative to this one
        "variants": variants,
        "fastest_per_precision": fastest,
    }
