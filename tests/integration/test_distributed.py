"""Real multi-process CPU (gloo) runs: 1 process and 2 processes train the same model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import max_diff, run_gandist, train_args, weights

# Models without BatchNorm, so a 2-process run must equal the 1-process run (float64), up to
# rounding. Adam's first step maps a gradient component g << eps to lr * g / eps, amplifying its
# ~1e-16 rounding by lr/eps = 2e4, and the G/D game compounds that per step: the ACGAN case (Adam
# eps 1e-8, betas (0.5, 0.999)) lands near 3e-10 after 3 steps, hence its looser bound. A real
# mistake (wrong slice, wrong reduction, unsynced clamp) shows up at the learning-rate scale, 1e-4.
EQUIVALENT = {
    "wgan-gp": ("wgan_gp_digits.yaml", ["model.g_norm=layer", "train.n_critic=5"], 1e-10),
    "wgan-clip-rmsprop": ("wgan_digits.yaml", ["model.g_norm=none", "model.d_norm=none"], 1e-10),
    "acgan-ns": ("acgan_digits.yaml", ["model.g_norm=layer", "model.d_norm=layer"], 1e-8),
}


@pytest.mark.parametrize("case", sorted(EQUIVALENT))
def test_two_processes_equal_one_process(case: str, workdir: Path) -> None:
    config, extra, tol = EQUIVALENT[case]
    # data.shards=off: the map-style path makes data order independent of the world size
    common = [*extra, "data.shards=off", "train.steps=3", "train.dtype=float64",
              "train.batch_size=16",
              "model.g_width=8", "model.d_width=8", "train.output_dir=runs"]
    run_gandist(train_args(config, *common, "train.run_name=one"), workdir, nproc=1)
    run_gandist(train_args(config, *common, "train.run_name=two",
                           "dist.check_consistency_every=1"), workdir, nproc=2)
    one, two = (workdir / "runs" / n / "checkpoints" / "step_3" for n in ("one", "two"))
    state = json.loads((two / "trainer_state.json").read_text())
    assert state["world_size"] == 2
    for stem in ("generator", "discriminator"):
        assert max_diff(weights(one, stem), weights(two, stem)) < tol, stem
    # the runs did train: parameters moved away from the shared initialisation
    init = run_gandist(train_args(config, *common, "train.steps=1", "train.run_name=init"),
                       workdir)
    assert init.returncode == 0
    first = workdir / "runs" / "init" / "checkpoints" / "step_1"
    assert max_diff(weights(first, "generator"), weights(one, "generator")) > 1e-6


def test_batchnorm_model_two_processes_stay_consistent(workdir: Path) -> None:
    proc = run_gandist(train_args("dcgan_digits.yaml", "train.steps=4", "train.batch_size=16",
                                  "dist.check_consistency_every=1", "train.sample_every=2",
                                  "train.ema=true"), workdir, nproc=2)
    assert "2 process(es) on cpu" in proc.stdout
    assert proc.stdout.count("done: 4 steps") == 1  # only the main process reports
    run = workdir / "runs" / "dcgan_digits"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines] == [1, 2, 3, 4]  # logged once, by rank 0
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "step_000002.png", "step_000004.png"]
    ck = run / "checkpoints" / "step_4"
    assert (ck / "random_states_0.pkl").is_file() and (ck / "random_states_1.pkl").is_file()


def test_accelerate_launch_two_cpu_processes_bf16(workdir: Path) -> None:
    """`accelerate launch --multi_gpu` (as documented) starts 2 CPU ranks, with bf16 autocast."""
    import os
    import subprocess
    import sys

    from tests.integration.conftest import CONFIGS

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
           "2", "--main_process_port", str(29700 + os.getpid() % 200), "-m", "gandist", "train",
           str(CONFIGS / "toy2d_wgan_gp.yaml"), "train.steps=2", "train.precision=bf16",
           "tracking.wandb=disabled", "train.sample_every=0"]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "2 process(es) on cpu, precision bf16" in proc.stdout
    state = json.loads(
        (workdir / "runs/toy2d_wgan_gp/checkpoints/step_2/trainer_state.json").read_text())
    assert state["world_size"] == 2
