"""Tiny trained runs (a couple of steps, widths of 4) for the tests that use what a run produced:
export, the Python API and train.init_from. Trained in-process: a subprocess would pay the torch
import again for each run."""

from __future__ import annotations

from pathlib import Path

from gandist.config import load_config
from gandist.training.trainer import Trainer, TrainResult

REPO = Path(__file__).resolve().parents[2]

COMMON = [
    "train.steps=2",
    "train.batch_size=16",
    "train.sample_every=0",
    "train.checkpoint_every=0",
    "train.log_every=1",
    "train.num_samples=8",
    "data.shards=off",
    "data.workers=0",
    "tracking.wandb=disabled",
    "eval.images=off",
    "model.z_dim=8",
    "model.g_width=4",
    "model.d_width=4",
    "model.embed_dim=4",
]

# name -> (recipe, overrides): the generator kinds export must handle.
RUNS: dict[str, tuple[str, list[str]]] = {
    # Unconditional DCGAN with BatchNorm and an EMA (so "EMA by default" is observable).
    "dcgan": ("dcgan_digits.yaml", ["train.ema=true", "train.ema_decay=0.5"]),
    # MLP without an EMA (the recipe has one): load_generator's fallback to the raw G.
    "mlp": (
        "gan_mlp_digits.yaml",
        ["model.g_hidden=[16,16]", "model.d_hidden=[16,16]", "train.ema=false"],
    ),
    # Class-conditional, spectral-norm G (export folds the parametrization).
    "class": (
        "dcgan_digits.yaml",
        ["model.condition=project", "model.g_norm=spectral", "model.d_norm=spectral"],
    ),
    # Multi-label (24 multi-hot labels), at 16 px.
    "multi": ("cdcgan_shapes.yaml", ["data.n_samples=64", "data.image_size=16"]),
}


def tiny_trainer(name: str, out: Path, *extra: str) -> Trainer:
    """The trainer of tiny run `name` under `out` (run name `name` unless `extra` sets one)."""
    recipe, overrides = RUNS[name]
    cfg = load_config(
        REPO / "configs" / recipe,
        [*COMMON, *overrides, f"train.output_dir={out}", f"train.run_name={name}", *extra],
    )
    return Trainer(cfg)


def train_tiny(name: str, out: Path, *extra: str) -> TrainResult:
    return tiny_trainer(name, out, *extra).fit()
