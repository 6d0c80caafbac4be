"""The run directory's contract: the files a run leaves, their readers, and the exit codes.

SLURM and Kubernetes scripts, sweeps, experiment tables, `gandist report` and `gandist eval` all
read a run through these names, so they live in one place. No torch import: the launchers and
table builders use this module without loading a training stack.

    <run>/
      config.yaml            the resolved config the run trains with
      status.json            {"state": completed | preempted | failed, "step", ...}
      metrics.jsonl          one JSON object per logged step
      eval.json              the final scores (when an extractor is available)
      evals/step_N-<x>.json  scores written later by `gandist eval`
      samples/step_N.png     sample grids; loss_curves.png, training.gif
      checkpoints/latest     names the newest complete checkpoint
      checkpoints/step_N/    trainer_state.json, config.yaml, *.safetensors, accelerate state
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

CONFIG = "config.yaml"
STATUS = "status.json"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
EVALS_DIR = "evals"
SAMPLES_DIR = "samples"
LOSS_CURVES = "loss_curves.png"
CHECKPOINTS_DIR = "checkpoints"
LATEST = "latest"  # inside checkpoints/
TRAINER_STATE = "trainer_state.json"  # inside checkpoints/step_N/

# A stopped-on-request run exits 75 (EX_TEMPFAIL, "try again"): launch scripts requeue it.
EXIT_PREEMPTED = 75
STATES = ("completed", "preempted", "failed")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, or {} when it is missing or torn (a process killed mid-write)."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read_status(run_dir: Path) -> dict[str, Any]:
    """`status.json` of a run, {} before the run has written one."""
    return read_json(Path(run_dir) / STATUS)


def write_status(run_dir: Path, state: str, **fields: Any) -> Path:
    """Atomically write `<run>/status.json` (read by slurm/ and k8s/ scripts)."""
    if state not in STATES:
        raise ValueError(f"run state must be one of {STATES}, got {state!r}")
    path = Path(run_dir) / STATUS
    tmp = path.with_name(f".{STATUS}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"state": state, "time": time.time(), **fields}, indent=2))
    os.replace(tmp, path)
    return path


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Rows of a run's metrics.jsonl; a torn last line (a run killed mid-write) is skipped."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def eval_records(run_dir: Path) -> list[Path]:
    """`gandist eval` records of a run, oldest first (by step, then file time)."""
    d = Path(run_dir) / EVALS_DIR
    found = d.glob("*.json") if d.is_dir() else []
    return sorted(found, key=lambda p: (read_json(p).get("step", -1), p.stat().st_mtime))


def is_run_dir(path: Path) -> bool:
    """Whether a training run has written here (its config, metrics or checkpoints)."""
    p = Path(path)
    return (p / CONFIG).is_file() or (p / METRICS).exists() or (p / CHECKPOINTS_DIR).exists()
