"""`train.init_from`: start a new run from another run's weights (fine-tuning, warm starts).

What is taken: the generator, the discriminator and, when the new run keeps an EMA
(`train.ema=true`) and the source has one, the EMA generator; all read from the safetensors
exports of a checkpoint (gandist/training/checkpoint.py), so nothing pickled is executed. What is
not: the step, the optimizer state, the GradScaler, the RNG and the data position. They belong
to the source's own schedule, and a new run is a new schedule: it counts from step 0 on its own
data with fresh optimizers.

Sources:
- a run directory: its latest checkpoint (as `gandist sample` reads it);
- a checkpoint directory `<run>/checkpoints/step_<N>`;
- a `.safetensors` file: generator weights only (`generator.safetensors` or
  `ema_generator.safetensors` of any checkpoint); the discriminator starts freshly initialised.

Resume wins: when the run continues from its own checkpoint (`train.resume=auto` finding one, or
a `train.resume` path), that checkpoint has everything and init_from is ignored, so a preempted
fine-tuning run that restarts with the same command continues instead of starting over.

The weights must fit the new model exactly. A mismatch stops before training with the layer, both
shapes and, when the source has a config.yaml, the settings that differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from gandist.config import Config
from gandist.data.base import DatasetInfo
from gandist.training import checkpoint as ckpt
from gandist.training.ema import EMAGenerator
from gandist.training.weights_fit import config_differences, file_shapes, misfits, summary

KEY = "train.init_from"


@dataclass(frozen=True)
class InitSource:
    """Where each network's starting weights come from (None: that network starts fresh)."""

    spec: str  # the config value, quoted in messages
    generator: Path
    discriminator: Path | None
    ema: Path | None
    checkpoint: Path | None  # None for a bare .safetensors file
    step: int | None  # the source's step, for the log line
    ema_n_averaged: int


@dataclass
class InitFrom:
    """The outcome for this run: what was loaded (or why nothing was), and the EMA still to do."""

    source: InitSource | None  # None: ignored because the run resumes
    message: str
    loaded_ema: bool = False

    def load_ema(self, ema: EMAGenerator | None) -> None:
        """Start the run's EMA from the source's EMA generator, when both exist.

        Called after the EMA is created (a copy of the just-loaded G). n_averaged must become
        non-zero: AveragedModel's first update otherwise overwrites the average with G.
        """
        src = self.source
        if ema is None or src is None or src.ema is None:
            return
        _load_checked(ema.module, src.ema, "EMA generator", None)
        ema.load_count(max(1, src.ema_n_averaged))
        self.loaded_ema = True
        self.message = self.message.replace("G, D", "G, D, EMA", 1)


def resolve_source(spec: str) -> InitSource:
    """Turn the config value into the files to read; errors name the key and what to pass."""
    path = Path(spec).expanduser()
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise FileNotFoundError(f"{KEY}: {path} does not exist (a generator .safetensors file)")
        return InitSource(spec, path, None, None, None, None, 0)
    if not path.exists():
        raise FileNotFoundError(
            f"{KEY}: {path} does not exist; give a run directory, a checkpoint directory "
            "(<run>/checkpoints/step_<N>) or a generator .safetensors file"
        )
    try:
        found = ckpt.resolve_checkpoint(path)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{KEY}: {exc}") from None
    state = ckpt.read_trainer_state(found)
    gen = found / "generator.safetensors"
    if not gen.is_file():
        raise FileNotFoundError(f"{KEY}: {found} has no generator.safetensors (incomplete copy?)")
    disc = found / "discriminator.safetensors"
    ema = found / "ema_generator.safetensors"
    return InitSource(
        spec,
        gen,
        disc if disc.is_file() else None,
        ema if ema.is_file() else None,
        found,
        int(state.get("step", 0)),
        int(state.get("ema_n_averaged", 0)),
    )


def resuming_checkpoint(cfg: Config) -> Path | None:
    """The run's own checkpoint that the trainer will resume from, if any (then resume wins)."""
    t = cfg.train
    if t.resume == "none":
        return None
    if t.resume != "auto":
        return Path(t.resume)
    return ckpt.latest_checkpoint(ckpt.choose_run_dir(cfg))


def init_networks(
    cfg: Config, info: DatasetInfo, G: torch.nn.Module, D: torch.nn.Module
) -> InitFrom | None:
    """Load `train.init_from` into freshly built G and D (before they are wrapped for DDP or
    handed to optimizers). None when init_from is not set."""
    spec = cfg.train.init_from.strip()
    if not spec:
        return None
    own = resuming_checkpoint(cfg)
    if own is not None:
        return InitFrom(
            None, f"{KEY}={spec} ignored: the run resumes from its own checkpoint {own}"
        )
    src = resolve_source(spec)
    hint = config_differences(src.checkpoint, cfg, info)
    _load_checked(G, src.generator, "generator", hint)
    if src.discriminator is not None:
        _load_checked(D, src.discriminator, "discriminator", hint)
    where = f"{src.checkpoint} (step {src.step})" if src.checkpoint else str(src.generator)
    if src.checkpoint is None:
        text = (
            f"initialised G from {where}; D starts fresh (a .safetensors file holds the "
            "generator only)"
        )
    else:
        text = f"initialised G, D from {where}"
        if src.discriminator is None:
            text = text.replace("G, D", "G") + "; D starts fresh (no discriminator.safetensors)"
        if src.ema is not None and not cfg.train.ema:
            text += "; its EMA is not used (train.ema=false)"
    text += "; step, optimizer state and data position start fresh"
    pairing = label_pairing(src.checkpoint, cfg, info)
    if pairing:
        text += f". {pairing}"
    return InitFrom(src, text)


def label_pairing(checkpoint: Path | None, cfg: Config, info: DatasetInfo) -> str:
    """How the source's labels become this run's when their names differ ("" when they are
    the same, or unknown): a conditional model's labels are indices, so label k keeps what the
    source learnt for its label k, whatever this data set calls it (class folders "zero".."nine"
    sort as eight, five, four, ...: the source's "0" would be drawn for "eight")."""
    if checkpoint is None or cfg.model.condition == "none":
        return ""
    try:
        theirs = tuple(ckpt.read_trainer_state(checkpoint)["data_info"].get("label_names") or ())
    except (ValueError, KeyError, FileNotFoundError):
        return ""
    ours = tuple(info.label_names)
    if not theirs or not ours or theirs == ours:
        return ""
    pairs = ", ".join(f"{a!r} -> {b!r}" for a, b in list(zip(theirs, ours, strict=False))[:6])
    more = ", ..." if len(ours) > 6 else ""
    reorder = (
        " (the same names in another order: rename or reorder the classes to keep their meaning)"
        if sorted(theirs) == sorted(ours)
        else ""
    )
    return (
        f"Labels are taken by position, and their names differ: the source's {pairs}{more}{reorder}"
    )


def _load_checked(module: torch.nn.Module, path: Path, what: str, hint: str | None) -> None:
    """load_state_dict(strict) with an error that names the layer, both shapes and the fix."""
    problems = misfits(module, file_shapes(path), what)
    if problems:
        fix = hint or (
            "build the new run with the source's model settings (model.*) and the same image "
            "size, channels and labels"
        )
        raise ValueError(
            f"{KEY}: {path} does not fit this run's {what}: {summary(problems)}. Fix: {fix}, or "
            f"start without {KEY}."
        )
    module.load_state_dict(load_file(str(path)))
