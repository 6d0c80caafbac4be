"""The benchmarked models as gandist configs: the repository's recipes at a fixed batch.

Convolutional: DCGAN-64 and WGAN-GP-64 (the digits recipes at 64x64, G and D width from
`--width`). Small: the 2-D toy GAN and WGAN-GP (`toy2d_gan`, `toy2d_wgan_gp`: MLPs of 128-512
units on ring8 points) and the fully connected GAN on the 32x32 digits (`gan_mlp`: the lab's nets,
configs/experiments/digits_losses/gan.yaml, which docs/performance.md measured), each exactly
as its recipe builds it (`--width` does not apply to them). All with in-memory data
(`data.shards=off`) and nothing but training switched on (no logging, samples, checkpoints or
W&B), so a timed step is pure training work.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import CONFIGS
from gandist.config import Config, load_config

RECIPES = {
    "dcgan64": "dcgan_digits.yaml",
    "wgan_gp64": "wgan_gp_digits.yaml",
    "toy2d_gan": "toy2d_gan.yaml",
    "toy2d_wgan_gp": "toy2d_wgan_gp.yaml",
    "gan_mlp": "experiments/digits_losses/gan.yaml",
}
# Recipes whose networks are convolutional at 64x64 with a width knob.
CONV = ("dcgan64", "wgan_gp64")
# Settings a benchmark times whatever its recipe trains today: wgan_gp64 is the WGAN-GP paper's
# step (five critic updates with the penalty per G update); the digits recipe trains one.
PINNED = {"wgan_gp64": ["train.n_critic=5"]}
# Benchmark names for precisions; gandist's config calls fp32 "no" (no mixed precision).
PRECISIONS = {"fp32": "no", "no": "no", "bf16": "bf16", "fp16": "fp16"}


def add_model_arguments(p: argparse.ArgumentParser, model: str = "dcgan64") -> None:
    p.add_argument("--model", choices=sorted(RECIPES), default=model)
    p.add_argument("--batch", type=int, default=64, help="global batch")
    p.add_argument(
        "--width", type=int, default=64, help="g_width = d_width (dcgan64 / wgan_gp64 only)"
    )
    p.add_argument("--steps", type=int, default=10, help="timed steps per repetition")
    p.add_argument("--reps", type=int, default=5, help="alternating repetitions (median kept)")
    p.add_argument(
        "--precision",
        choices=sorted(PRECISIONS),
        default="fp32",
        help="fp32 (= no), bf16 autocast, fp16 autocast + GradScaler (CUDA only)",
    )


def bench_config(
    model: str, batch: int, width: int, precision: str, output_dir: Path, *extra: str
) -> Config:
    shape = (
        ["data.image_size=64", f"model.g_width={width}", f"model.d_width={width}"]
        if model in CONV
        else []
    )
    return load_config(
        CONFIGS / RECIPES[model],
        [
            *shape,
            *PINNED.get(model, []),
            "data.shards=off",
            f"train.batch_size={batch}",
            "train.steps=1000000",
            "train.log_every=0",
            "train.sample_every=0",
            "train.checkpoint_every=0",
            "train.ema=false",
            "eval.every=0",
            "tracking.wandb=disabled",
            f"train.output_dir={output_dir}",
            f"train.precision={PRECISIONS[precision]}",
            # NCHW unless a benchmark's --channels-last converts both sides alike
            "train.channels_last=false",
            *extra,
        ],
    )
