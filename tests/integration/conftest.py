"""Helpers that run the real `gandist` CLI in subprocesses (1 process or torchrun N)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


def gandist_command(args: list[str], nproc: int = 0, *torchrun_flags: str) -> list[str]:
    """`gandist ARGS` as one plain process (nproc=0) or under torchrun with nproc processes.

    torchrun --standalone picks a free port: a fixed one (it was 29500 + pid % 1000) clashes
    with any other torchrun, test session or user's run, that holds it at the time."""
    if not nproc:
        return [sys.executable, "-m", "gandist", *args]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*torchrun, "--nproc_per_node", str(nproc), *torchrun_flags, "-m", "gandist", *args]


def run_gandist(
    args: list[str], cwd: Path, nproc: int = 0, timeout: int = 300, check: bool = True
) -> subprocess.CompletedProcess:
    """Run `gandist_command(args, nproc)`; fail with its output's tail unless it exits 0."""
    cmd = gandist_command(args, nproc)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
            f"\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def cpu_torchrun_env() -> dict[str, str]:
    """The environment for a `torchrun --nproc_per_node N` of CPU (gloo) processes."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "ACCELERATE_USE_CPU": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("WORLD_SIZE", None)
    return env


def train_args(config: str, *overrides: str) -> list[str]:
    quick = ["train.sample_every=0", "train.log_every=1", "tracking.wandb=disabled"]
    return ["train", str(CONFIGS / config), *quick, *overrides]


def weights(ckpt_dir: Path, stem: str) -> dict:
    return load_file(str(ckpt_dir / f"{stem}.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
