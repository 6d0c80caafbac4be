"""How a run talks to Weights & Biases: mode, id and init arguments for accelerate's tracker."""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path
from typing import Any

from gandist.config import TrackingConfig


def resolve_mode(cfg: TrackingConfig) -> str:
    """auto -> online when WANDB_API_KEY is set, else offline (nothing leaves the machine)."""
    if cfg.wandb != "auto":
        return cfg.wandb
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def new_run_id() -> str:
    """An id in W&B's format (8 lowercase letters/digits), kept in checkpoints to resume the run."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def init_kwargs(
    cfg: TrackingConfig, mode: str, run_id: str, run_dir: Path, name: str
) -> dict[str, Any]:
    """Arguments for `wandb.init`, resuming the same run id after a restart."""
    import wandb

    kwargs: dict[str, Any] = {
        "mode": mode,
        "id": run_id,
        "resume": "allow",
        "dir": str(run_dir),
        "name": name,
        "job_type": cfg.job_type,
        # A slow or unreachable server must not stall training start-up for minutes.
        "settings": wandb.Settings(init_timeout=cfg.init_timeout_s, silent=True),
    }
    if cfg.entity:
        kwargs["entity"] = cfg.entity
    if cfg.group:
        kwargs["group"] = cfg.group
    if cfg.tags:
        kwargs["tags"] = list(cfg.tags)
    return kwargs


def log_side_run(
    cfg: TrackingConfig,
    mode: str,
    run_dir: Path,
    job_type: str,
    step: int,
    scalars: dict[str, float] | None = None,
    images: dict[str, Path] | None = None,
    config: dict[str, Any] | None = None,
) -> str | None:
    """Log the results of a job on a finished run (`gandist eval`, `gandist sefa`) as its own
    W&B run of `job_type`, grouped with the training run. Returns the W&B run directory, or
    None when tracking is disabled. `mode` empty: the run's own tracking.wandb setting."""
    mode = mode or resolve_mode(cfg)
    if mode == "disabled":
        return None
    import wandb

    run = wandb.init(
        project=cfg.project,
        entity=cfg.entity or None,
        group=cfg.group or run_dir.name,
        job_type=job_type,
        name=f"{run_dir.name}-{job_type}-step{step}",
        dir=str(run_dir),
        mode=mode,
        config=config or {},
        settings=wandb.Settings(init_timeout=cfg.init_timeout_s, silent=True),
    )
    payload: dict[str, Any] = dict(scalars or {})
    payload.update({k: wandb.Image(str(v)) for k, v in (images or {}).items()})
    run.log(payload, step=step)
    out = run.dir
    run.finish()
    return str(Path(out).parent)
