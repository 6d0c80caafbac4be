"""Every shipped recipe, trained in-process at tiny widths: the systematic resume and
process-count suites (tests/integration/test_recipes_*.py) and the 2-process script
(tests/integration/recipe_worlds.py) build their runs here.

A stop is requested the way a cluster requests it: the process sends itself SIGUSR1 after a
chosen step, and the trainer's own preemption path saves and returns; resuming is
`train.resume=auto`, as the SLURM and Kubernetes scripts do.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

from gandist.config import Config, load_config
from gandist.experiments import resolve_run
from gandist.training.trainer import Trainer, TrainResult

REPO = Path(__file__).resolve().parents[1]
# Experiment files that only reference a shipped recipe (config: + overrides, e.g. a seed) are
# that recipe, tested once as configs/<recipe>.yaml.
RECIPES = sorted(
    [
        p
        for p in [*REPO.glob("configs/*.yaml"), *REPO.glob("configs/experiments/*/*.yaml")]
        if resolve_run(p)[0] == p
    ],
    key=lambda p: str(p.relative_to(REPO)),
)


def recipe_id(path: Path) -> str:
    return str(path.relative_to(REPO / "configs")).removesuffix(".yaml").replace("/", "-")


def tiny_overrides(path: Path, data_root: Path) -> list[str]:
    """The recipe at a size that trains in a second or two; everything else as shipped."""
    raw = load_config(path)
    out = [
        "model.g_width=4",
        "model.d_width=4",
        "model.g_hidden=[16,16]",
        "model.d_hidden=[16,16]",
        "model.z_dim=8",
        "model.embed_dim=4",
        "train.batch_size=128",
        "train.sample_every=0",
        "train.checkpoint_every=0",
        "train.log_every=3",
        "train.num_samples=16",
        "data.workers=0",
        f"data.root={data_root}",
        "tracking.wandb=disabled",
        "eval.images=off",
        "eval.every=0",
        "eval.n_samples=200",
        "eval.rejection_steps=5",  # a recipe's rejection sampling, exercised at a tiny cost
    ]
    if raw.data.source.split(":")[0] in ("shapes", "toy2d"):
        out.append("data.n_samples=512")  # procedural: a short epoch
    if raw.data.source == "shapes" and raw.data.image_size > 32:
        out.append("data.image_size=32")
    return out


def recipe_config(path: Path, data_root: Path, out: Path, *extra: str) -> Config:
    return load_config(path, [*tiny_overrides(path, data_root), f"train.output_dir={out}", *extra])


def make_trainer(cfg: Config, stop_after: int | None = None) -> Trainer:
    """A Trainer for `cfg`; with `stop_after`, it requests a stop (SIGUSR1 to this process, on
    every rank) once that step is done, as a scheduler's preemption notice would."""
    fresh_precision_state()
    trainer = Trainer(cfg)
    if stop_after is not None:
        step_once = trainer.train_step

        def step_and_maybe_signal() -> dict[str, torch.Tensor]:
            metrics = step_once()
            if trainer.step == stop_after:
                os.kill(os.getpid(), signal.SIGUSR1)
            return metrics

        trainer.train_step = step_and_maybe_signal  # type: ignore[method-assign]
    return trainer


def fresh_precision_state() -> None:
    """accelerate keeps one mixed precision per process and refuses an Accelerator with another;
    one recipe here sets bf16, the others no. Reset it between recipes, keeping the process
    group (PartialState), as a new process would start."""
    AcceleratorState._reset_state(reset_partial_state=False)


def train(cfg: Config, stop_after: int | None = None) -> TrainResult:
    try:
        return make_trainer(cfg, stop_after).fit()
    finally:
        fresh_precision_state()  # later tests in this process may want another precision


def batchnorm_or_dropout(cfg: Config) -> bool:
    """Whether the recipe's result legitimately depends on the world size: BatchNorm normalises
    each rank's slice by its own statistics, and each rank draws its own dropout masks."""
    m = cfg.model
    return "batch" in (m.g_norm, m.d_norm) or m.dropout > 0


def final_state(run: TrainResult | Path) -> dict[str, torch.Tensor]:
    """Every exported tensor of a checkpoint (a run's last), keyed '<file>/<tensor>'."""
    checkpoint = run.checkpoint if isinstance(run, TrainResult) else run
    assert checkpoint is not None
    out: dict[str, torch.Tensor] = {}
    for f in sorted(Path(checkpoint).glob("*.safetensors")):
        out.update({f"{f.stem}/{k}": v for k, v in load_file(str(f)).items()})
    return out


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)
