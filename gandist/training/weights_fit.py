"""Do a checkpoint's weights fit this run's networks? Errors that name the layer, both shapes and
the settings that differ, for `train.init_from` (a new run from other weights) and
`train.resume` (a run continued with a changed config).

Only the shapes are read (safetensors headers), so the check costs nothing before the real load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from gandist.config import Config
from gandist.data.base import DatasetInfo
from gandist.run_files import CONFIG
from gandist.training.checkpoint import read_trainer_state, saved_config

# The settings that decide parameter names and shapes; a difference explains a mismatch.
SHAPE_KEYS = (
    "arch", "z_dim", "g_hidden", "d_hidden", "g_width", "d_width", "kernel", "g_upsample",
    "g_norm", "d_norm", "d_pool", "condition", "embed_dim", "g_cond_norm",
    "pack",  # pack: D's first layer takes k samples
    "dropout",  # dropout > 0 adds layers, renumbering the ones after them
    "aux_project", "aux_twin", "aux_spectral",  # ACGAN heads
)  # fmt: skip
# Settings only one family of architectures reads: between two runs of the same arch, a
# difference in another family's keys explains nothing.
ARCH_ONLY_KEYS = {
    "dcgan": ("g_width", "d_width", "kernel", "g_upsample", "d_pool"),
    "mlp": ("g_hidden", "d_hidden"),
    "toy": ("g_hidden", "d_hidden"),
}
# data_info field -> the setting that changes it
INFO_KEYS = {
    "kind": "data.source",
    "channels": "data.channels",
    "image_size": "data.image_size",
    "label_type": "data.source",
    "num_labels": "data.source",
    "point_dim": "data.source",
}


def file_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a .safetensors file, from its header."""
    with safe_open(str(path), framework="pt") as f:
        return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118


def misfits(module: torch.nn.Module, theirs: dict[str, tuple[int, ...]], what: str) -> list[str]:
    """What keeps `theirs` (name -> shape) from loading strictly into `module`; [] if it fits."""
    ours = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    problems: list[str] = []
    for name, shape in ours.items():
        if name not in theirs:
            problems.append(f"layer {name!r} {shape} is missing from the file")
        elif theirs[name] != shape:
            problems.append(
                f"layer {name!r} has shape {theirs[name]} in the file but {shape} in this "
                f"run's {what}"
            )
    problems += [
        f"layer {name!r} {shape} is in the file but not in this run's {what}"
        for name, shape in theirs.items()
        if name not in ours
    ]
    return problems


def summary(problems: list[str]) -> str:
    more = len(problems) - 4
    return "; ".join(problems[:4]) + (f"; and {more} more" if more > 0 else "")


def relevant_keys(arch: str) -> tuple[str, ...]:
    """The SHAPE_KEYS that can change a model of `arch` (all of them for an unknown arch)."""
    if arch not in ARCH_ONLY_KEYS:
        return SHAPE_KEYS
    others = {k for a, keys in ARCH_ONLY_KEYS.items() for k in keys} - set(ARCH_ONLY_KEYS[arch])
    return tuple(k for k in SHAPE_KEYS if k not in others)


def config_differences(checkpoint: Path | None, cfg: Config, info: DatasetInfo) -> str | None:
    """'the checkpoint was trained with model.g_width=64 (this run: 32), ...; set these as in
    <checkpoint>/config.yaml' when the checkpoint has its config; None otherwise."""
    theirs = None if checkpoint is None else saved_config(checkpoint)
    if theirs is None:
        return None  # no config, or an older or hand-made one: the generic advice
    try:
        their_info: dict[str, Any] = read_trainer_state(checkpoint)["data_info"]
    except (ValueError, KeyError, FileNotFoundError):
        return None
    keys = SHAPE_KEYS if theirs.model.arch != cfg.model.arch else relevant_keys(cfg.model.arch)
    diffs = [
        f"model.{k}={getattr(theirs.model, k)!r} (this run: {getattr(cfg.model, k)!r})"
        for k in keys
        if getattr(theirs.model, k) != getattr(cfg.model, k)
    ]
    diffs += [
        f"{key}: {k} {their_info[k]!r} (this run: {getattr(info, k)!r})"
        for k, key in INFO_KEYS.items()
        if k in their_info and their_info[k] != getattr(info, k)
    ]
    if not diffs:
        return None
    return (
        f"the checkpoint was trained with {', '.join(diffs)}; set these as in {checkpoint / CONFIG}"
    )


def check_resume_fits(
    found: Path, cfg: Config, info: DatasetInfo, networks: dict[str, torch.nn.Module]
) -> None:
    """Refuse a checkpoint whose generator or discriminator (stem -> unwrapped module) does not
    fit what this run's config builds, before accelerate's load fails with a bare torch
    traceback: the layer, both shapes, the settings that differ and the ways out."""
    for stem, module in networks.items():
        path = found / f"{stem}.safetensors"
        if not path.is_file():
            continue  # accelerate's own state is still checked by its load
        problems = misfits(module, file_shapes(path), stem)
        if problems:
            fix = config_differences(found, cfg, info) or (
                "resume with the model.* settings, image size, channels and labels the "
                "checkpoint was trained with"
            )
            raise ValueError(
                f"train.resume: {path} does not fit this run's {stem}: {summary(problems)}. "
                f"Fix: {fix}; or start a new run (train.resume=none, which takes a new run "
                "directory)."
            )
