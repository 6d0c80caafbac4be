"""The two benchmarked models as gandist configs: DCGAN-64 and WGAN-GP-64 at a fixed batch.

They are the repository's recipes at 64x64 with in-memory data (`data.shards=off`, digits
resized) and nothing but training switched on (no logging, samples, checkpoints or W&B), so a
timed step is pure training work.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import CONFIGS
from gandist.config import Config, load_config

RECIPES = {"dcgan64": "dcgan_digits.yaml", "wgan_gp64": "wgan_gp_digits.yaml"}
# Benchmark names for precisions; gandist's config calls fp32 "no" (no mixed precision).
PRECISIONS = {"fp32": "no", "no": "no", "bf16": "bf16", "fp16": "fp16"}


def add_model_arguments(p: argparse.ArgumentParser, model: str = "dcgan64") -> None:
    p.add_argument("--model", choices=sorted(RECIPES), default=model)
    p.add_argument("--batch", type=int, default=64, help="global batch")
    p.add_argument("--width", type=int, default=64, help="g_width = d_width")
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
    return load_config(
        CONFIGS / RECIPES[model],
        [
            "data.image_size=64",
            "data.shards=off",
            f"train.batch_size={batch}",
            f"model.g_width={width}",
            f"model.d_width={width}",
            "train.steps=1000000",
            "train.log_every=0",
            "train.sample_every=0",
            "train.checkpoint_every=0",
            "tracking.wandb=disabled",
            f"train.output_dir={output_dir}",
            f"train.precision={PRECISIONS[precision]}",
            # NCHW unless a benchmark's --channels-last converts both sides alike
            "train.channels_last=false",
            *extra,
        ],
    )
