"""Checkpoints that a crash cannot corrupt, and the exports that sampling reads.

Layout: `<run>/checkpoints/step_<N>/` holds accelerate's full state (models, optimizers, scaler,
RNG of every rank) plus `generator.safetensors`, `discriminator.safetensors`,
`ema_generator.safetensors` (EMA on), `trainer_state.json` and `config.yaml`. A checkpoint is
written under a hidden temporary name, flushed, and renamed into place; only then does
`checkpoints/latest` (a one-line text file) name it. So the newest *complete* checkpoint is always
what `latest` says, whatever moment a process dies at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from gandist.config import Config, load_config
from gandist.data.base import DatasetInfo
from gandist.run_files import CHECKPOINTS_DIR, CONFIG, LATEST, METRICS, TRAINER_STATE

STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    """Make renames inside `path` durable: a rename is an update of the directory, which a
    power loss can undo unless the directory itself is flushed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def state_dict_for_export(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's tensors as contiguous CPU tensors (safetensors refuses shared/strided ones)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def save_checkpoint(
    accelerator: Accelerator,
    run_dir: Path,
    step: int,
    exports: dict[str, torch.nn.Module],
    trainer_state: dict[str, Any],
    config_yaml: str,
    keep: int,
    before_rename: Callable[[Path], None] | None = None,
) -> Path:
    """Save on all ranks (accelerate writes each rank's RNG); the main process finalises.

    `exports` maps a file stem (e.g. "generator") to the unwrapped module to write as
    `<stem>.safetensors`. Returns the final directory.
    """
    root = checkpoints_dir(run_dir)
    final = root / f"step_{step}"
    tmp = root / f".tmp_step_{step}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for stem, module in exports.items():
            save_file(state_dict_for_export(module), str(tmp / f"{stem}.safetensors"))
        (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2))
        (tmp / CONFIG).write_text(config_yaml)
        if before_rename is not None:
            before_rename(tmp)
        _fsync_tree(tmp)
        if final.exists():  # same step saved twice (e.g. signal right after a periodic save)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)  # the step_N directory exists before `latest` names it
        _write_atomic(root / LATEST, final.name + "\n")
        _fsync_dir(root)
        prune_checkpoints(root, keep)
    accelerator.wait_for_everyone()
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def prune_checkpoints(root: Path, keep: int) -> None:
    """Keep the newest `keep` checkpoints (and never the one `latest` names); drop stale temps."""
    latest = latest_checkpoint(root.parent)
    for p in list_checkpoints(root)[:-keep] if keep > 0 else []:
        if latest is None or p.resolve() != latest.resolve():
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".tmp_step_*"):
        shutil.rmtree(p, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint `latest` names, falling back to the newest complete `step_N` directory."""
    root = checkpoints_dir(run_dir)
    pointer = root / LATEST
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if (candidate / TRAINER_STATE).is_file():
            return candidate
    complete = [p for p in list_checkpoints(root) if (p / TRAINER_STATE).is_file()]
    return complete[-1] if complete else None


def read_trainer_state(ckpt: Path) -> dict[str, Any]:
    path = Path(ckpt) / TRAINER_STATE
    if not path.is_file():
        raise FileNotFoundError(
            f"{ckpt} is not a gandist checkpoint (no trainer_state.json); pass a "
            "<run>/checkpoints/step_<N> directory or a run directory"
        )
    return json.loads(path.read_text())


def load_module_weights(module: torch.nn.Module, path: Path) -> None:
    """Load a `.safetensors` export into a module (safetensors only: no pickle is executed)."""
    module.load_state_dict(load_file(str(path)))


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory holding <run>/checkpoints/step_N (a loose checkpoint is its own)."""
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS_DIR else checkpoint


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory or a checkpoint directory -> the checkpoint directory to read; also the
    run's `checkpoints/` folder or its `checkpoints/latest` file (the README names it, and it
    is what users point at)."""
    p = Path(path)
    if (p / TRAINER_STATE).is_file():
        return p
    if p.name == LATEST and p.parent.name == CHECKPOINTS_DIR and p.is_file():
        p = p.parent.parent
    elif p.name == CHECKPOINTS_DIR and (p / LATEST).is_file():
        p = p.parent
    latest = latest_checkpoint(p)
    if latest is None:
        raise FileNotFoundError(
            f"{p}: no checkpoint found (expected {p}/checkpoints/latest or a step_<N> directory "
            "with trainer_state.json)"
        )
    return latest


def choose_run_dir(cfg: Config) -> Path:
    """Where a run writes. `resume=auto` reuses `<output_dir>/<name>`; a fresh run never
    overwrites an earlier one (it takes `<name>-2`, `<name>-3`, ...); a checkpoint path resumes
    in that checkpoint's run directory."""
    t = cfg.train
    if t.resume not in ("none", "auto"):
        return resolve_checkpoint(t.resume).parent.parent
    base = Path(t.output_dir) / (t.run_name or cfg.name or "run")
    if t.resume == "auto":
        return base
    candidate, n = base, 1
    while (candidate / CHECKPOINTS_DIR).exists() or (candidate / METRICS).exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def checkpoint_step(path: Path) -> int:
    """N of a `step_N` directory, -1 for anything else."""
    m = STEP_DIR.match(Path(path).name)
    return int(m.group(1)) if m else -1


def trainer_state(
    *,
    step: int,
    data: dict[str, Any],
    images_seen: int,
    amp_skipped_steps: dict[str, int],
    wandb_run_id: str,
    ema_n_averaged: int,
    world_size: int,
    config_name: str,
    info: DatasetInfo,
    wandb_place: dict[str, str] | None = None,
    step_outputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The trainer_state.json of a checkpoint: everything a resume needs beyond accelerate's
    state, and the data description `gandist sample`/`export` rebuild the generator from."""
    from gandist import __version__

    return {
        "step": step,
        "epoch": data.get("epoch", 0),
        "data": data,
        "images_seen": images_seen,
        "amp_skipped_steps": amp_skipped_steps,
        "wandb_run_id": wandb_run_id,
        "wandb": wandb_place or {},  # project, entity, group: a resume continues there
        # the step's logged values and whether its evaluation / samples were due: what a resume
        # redoes when the run was killed during them (None: nothing recorded)
        "step_outputs": step_outputs,
        "ema_n_averaged": ema_n_averaged,
        "world_size": world_size,
        "gandist_version": __version__,
        "config_name": config_name,
        "data_info": {
            "kind": info.kind,
            "channels": info.channels,
            "image_size": info.image_size,
            "label_type": info.label_type,
            "num_labels": info.num_labels,
            "label_names": list(info.label_names),
            "point_dim": info.point_dim,
            "source": info.source,
        },
    }


def saved_config(found: Path) -> Config | None:
    """The config a checkpoint was saved with (its config.yaml), or None for one without it or
    whose config this version cannot read (older or hand-made): the resume and init_from checks
    that compare against it then fall back to their generic advice."""
    path = found / CONFIG
    if not path.is_file():
        return None
    try:
        return load_config(path)
    except ValueError:
        return None


def saved_optimizer_names(found: Path) -> dict[str, str]:
    """optim.<net>.name of the run a checkpoint was saved by; {} without a readable config."""
    cfg = saved_config(found)
    return {} if cfg is None else {"g": cfg.optim.g.name, "d": cfg.optim.d.name}


def check_resumable(found: Path, ema: bool, optimizers: dict[str, str] | None = None) -> None:
    """Refuse, naming the key, a checkpoint this run cannot continue: one without the EMA
    generator this run keeps (the missing file would stop the run after the models were
    loaded), or one whose optimizer for a network is another kind than `optimizers` (net ->
    optim.<net>.name): torch would load Adam's moments into RMSprop's param groups and fail, or
    start SGD's momentum afresh, at the first step."""
    if ema and not (found / "ema_generator.safetensors").is_file():
        raise ValueError(
            f"train.resume: {found} has no EMA generator (the run trained with train.ema=false); "
            "resume with train.ema=false, or start a new run from it with train.init_from"
        )
    saved = saved_optimizer_names(found)
    for net, name in (optimizers or {}).items():
        if saved.get(net, name) != name:
            raise ValueError(
                f"train.resume: {found} was saved with optim.{net}.name={saved[net]}, this run "
                f"has optim.{net}.name={name}; resume with optim.{net}.name={saved[net]}, or "
                "start a new run from its weights with train.init_from"
            )


class EarlierScheduleState:
    """Takes the place of the learning-rate schedulers' state that checkpoints of earlier gandist
    versions carry (custom_checkpoint_0.pkl): accelerate loads a checkpoint only with as many
    registered objects as it holds such files. The state is set aside, since the rates follow
    from the step (training/schedules.py); the run's later checkpoints keep the file, empty."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def restore(
    acc: Any,
    found: Path,
    stream: Any,
    ema: Any = None,
    optimizers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Load a checkpoint into the prepared objects (accelerate's state: models, optimizers,
    scaler, RNGs), the data stream's position and the EMA generator; returns its
    trainer_state.json (step, images seen, skipped fp16 steps, W&B run id). `optimizers` (net ->
    optim.<net>.name) must match the checkpoint's. The learning rates and the other
    hyper-parameters are the caller's to set (schedules.set_rates_at, optimizers.apply_settings):
    the loaded param groups hold the saved ones."""
    check_resumable(found, ema is not None, optimizers)
    for _ in found.glob("custom_checkpoint_*.pkl"):  # gandist registers nothing else
        acc.register_for_checkpointing(EarlierScheduleState())
    acc.load_state(str(found))
    state = read_trainer_state(found)
    stream.load_state_dict(state["data"])
    if ema is not None:
        load_module_weights(ema.module, found / "ema_generator.safetensors")
        ema.load_count(int(state.get("ema_n_averaged", 0)))
    return state
