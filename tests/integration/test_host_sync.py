"""A steady-state training step makes no host synchronisation (issue #17).

On a GPU, `.item()`, `.cpu()`, `bool(tensor)` and friends block the host until the device has
finished all queued work, so the host cannot run ahead and the GPU idles between steps. Logged,
sampled, checkpointed and evaluated steps may synchronise (they need the numbers); the steps in
between must not. `host_sync_probe` trains briefly and records every such call with its step:
on CPU by wrapping the tensor methods, on CUDA with torch.cuda.set_sync_debug_mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.integration.conftest import CONFIGS, REPO

# Short runs with every kind of busy step (log 4, samples 6, the end) and steady ones between.
TOY = [
    str(CONFIGS / "toy2d_wgan_gp.yaml"),
    "train.steps=12",
    "train.batch_size=64",
    "train.log_every=4",
    "train.sample_every=6",
    "train.checkpoint_every=0",
    "tracking.wandb=disabled",
]
DCGAN = [
    str(CONFIGS / "dcgan_digits.yaml"),
    "train.steps=10",
    "train.batch_size=16",
    "model.g_width=8",
    "model.d_width=8",
    "train.log_every=4",
    "train.sample_every=0",
    "train.checkpoint_every=0",
    "data.workers=0",
    "tracking.wandb=disabled",
]


def _pythonpath() -> str:
    """The repo first, then the caller's path (a GPU machine may carry packages there)."""
    return os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)


def probe(tmp_path: Path, argv: list[str], nproc: int = 0, detect: str = "calls") -> list[dict]:
    """Run the probe (one process, or torchrun with nproc CPU processes); every rank's JSON."""
    out = tmp_path / "probe.json"
    args = [*argv, f"train.output_dir={tmp_path / 'runs'}", f"data.root={tmp_path / 'data'}"]
    args += ["--out", str(out), "--detect", detect]
    module = ["-m", "tests.integration.host_sync_probe"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    env["PYTHONPATH"] = _pythonpath()
    env.pop("WORLD_SIZE", None)
    if nproc:
        launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
        cmd = [sys.executable, *launch, *module, *args, f"dist.world_size={nproc}"]
        env["ACCELERATE_USE_CPU"] = "1"
    else:
        cmd = [sys.executable, *module, *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    files = [out] + [out.with_suffix(f".rank{r}.json") for r in range(1, nproc)]
    return [json.loads(f.read_text()) for f in files]


def assert_no_steady_syncs(results: list[dict], world_size: int) -> None:
    for r in results:
        assert r["world_size"] == world_size
        assert len(r["steady_steps"]) >= 5, r["steady_steps"]
        bad = [
            f"step {s['step']} ({s['phase']}): {s['what']} at {s['where']}"
            for s in r["steady_syncs"]
        ]
        assert not bad, f"rank {r['rank']}: host syncs in steady-state steps:\n" + "\n".join(bad)


def assert_detector_works(results: list[dict]) -> None:
    """The busy steps do synchronise (reading the logged metrics): the detector sees them."""
    where = [s["where"] for s in results[0]["records"]]
    assert any("reduce_metrics" in w for w in where), where


@pytest.mark.parametrize("argv", [TOY, DCGAN], ids=["toy2d_wgan_gp", "dcgan_digits"])
def test_one_process_steady_steps_make_no_host_sync(tmp_path: Path, argv: list[str]) -> None:
    results = probe(tmp_path, argv)
    assert_no_steady_syncs(results, 1)
    assert_detector_works(results)


@pytest.mark.slow
def test_two_processes_steady_steps_make_no_host_sync(tmp_path: Path) -> None:
    """torchrun, 2 CPU processes (gloo): DDP's allreduces and the stop-signal agreement
    (an asynchronous allreduce, read one check later) must not block a step either."""
    results = probe(tmp_path, TOY, nproc=2)
    assert [r["rank"] for r in results] == [0, 1]
    assert_no_steady_syncs(results, 2)
    assert_detector_works(results)


def test_ema_update_makes_no_host_sync(tmp_path: Path) -> None:
    assert_no_steady_syncs(probe(tmp_path, [*TOY, "train.ema=true"]), 1)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_cuda_steady_steps_make_no_sync(tmp_path: Path, precision: str) -> None:
    """On a GPU, torch's own sync detector (set_sync_debug_mode) over the same runs. fp16 is
    left out: torch's GradScaler.step reads found_inf on the host after every optimizer step."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    for argv in (TOY, DCGAN):
        results = probe(tmp_path, [*argv, f"train.precision={precision}"], detect="cuda")
        assert results[0]["device"] == "cuda"
        assert_no_steady_syncs(results, 1)


@pytest.mark.slow
def test_stop_poll_agrees_one_check_late_on_every_rank(tmp_path: Path) -> None:
    """The non-blocking stop agreement: a signal on one rank before check 3 is launched at check
    3 and acted on at check 4, by every rank (the same completed allreduce decides)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": _pythonpath()}
    env.pop("WORLD_SIZE", None)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    cmd = [*launch, "2", "-m", "tests.integration.stop_poll_probe", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert r["world"] == 2
        assert r["answers"] == [False, False, False, False, True]
    # rank 0 names the signal rank 1 got (it recorded "peer", as did status.json)
    assert ranks[0]["signal"] == ranks[1]["signal"] == "SIGTERM"
