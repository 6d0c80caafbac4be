"""Real multi-process CPU (gloo) runs: 1 process and 2 processes train the same model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.conftest import CONFIGS, max_diff, run_gandist, train_args, weights
from tests.ports import free_port

# Models without BatchNorm (or with per-sample norms: GroupNorm(1)/LayerNorm), so a 2-process run
# must equal the 1-process run in float64 up to summation-order rounding. Measured 1-vs-2-process
# max |diff| of G and D after 3 steps: wgan-gp 1.6e-16, wgan-clip-rmsprop 1.7e-17, acgan-ns 4.0e-17,
# dcgan-ns 2.9e-17, hinge-r1 1.4e-16, cgan-multilabel 8.4e-16; training moved the parameters by
# 2e-4 to 4e-3 between step 1 and step 3. (Before the losses stopped downcasting float64 logits to
# float32 in training/steps.py, the ns-loss cases drifted to 2e-10 .. 8e-10.) A real mistake (wrong
# slice, wrong reduction, unsynced clamp, wrong penalty scaling) shows at the learning-rate scale.
TOL = 1e-10
EQUIVALENT: dict[str, tuple[str, list[str]]] = {
    "wgan-gp": ("wgan_gp_digits.yaml", ["model.g_norm=layer", "train.n_critic=5"]),
    "wgan-clip-rmsprop": ("wgan_digits.yaml", ["model.g_norm=none", "model.d_norm=none"]),
    "acgan-ns": ("acgan_digits.yaml", ["model.g_norm=layer", "model.d_norm=layer"]),
    # non-saturating GAN: DCGAN with per-sample (layer) norms in G and D
    "dcgan-ns": ("dcgan_digits.yaml", ["model.g_norm=layer", "model.d_norm=layer"]),
    # hinge loss with the R1 penalty on real data; critic without any norm
    "hinge-r1": (
        "dcgan_digits.yaml",
        ["loss.adversarial=hinge", "loss.penalty=r1", "model.g_norm=layer", "model.d_norm=none"],
    ),
    # the recipe's projection critic, summed over positions (model.d_pool), with conditional
    # norms in G (model.g_cond_norm): label-dependent scales that must sum the same over ranks
    "project-pooled-condnorm": (
        "cdcgan_shapes.yaml",
        [
            "data.n_samples=64",
            "data.image_size=32",
            "model.g_norm=layer",
            "model.d_norm=layer",
            "model.condition=project",
            "model.aux_project=false",
            "model.d_pool=sum",
            "model.g_cond_norm=true",
        ],
    ),
    # the recipe's ACGAN critic: a multi-label classifier that learns the real images' labels
    # only (loss.aux_fake false, weight 30), beside a projection term (model.aux_project)
    "acgan-multilabel-realonly": (
        "cdcgan_shapes.yaml",
        ["data.n_samples=64", "data.image_size=32", "model.g_norm=layer", "model.d_norm=layer"],
    ),
    # multi-label conditional DCGAN: 24 multi-hot labels joined to z and to D's input (the lab's
    # concat; the recipe itself uses an ACGAN critic)
    "cgan-multilabel": (
        "cdcgan_shapes.yaml",
        [
            "data.n_samples=64",
            "data.image_size=32",
            "model.g_norm=layer",
            "model.d_norm=layer",
            "model.condition=concat",
            "model.aux_project=false",
        ],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(EQUIVALENT))
def test_two_processes_equal_one_process(case: str, workdir: Path) -> None:
    """After 3 outer steps (n_critic D steps + 1 G step each) the 2-process torchrun run holds
    the same G and D parameters as the 1-process run, and both actually trained.

    The two runs start at the same time (the 1-process run needs no rendezvous), which keeps the
    wall time per case near that of the slower run alone.
    """
    config, extra = EQUIVALENT[case]
    common = [
        *extra,
        "data.shards=off",  # map-style data: the order does not depend on the world size
        "train.steps=3",
        "train.dtype=float64",
        "train.batch_size=16",
        "model.g_width=8",
        "model.d_width=8",
        "train.output_dir=runs",
    ]
    one_args = train_args(
        config,
        *common,
        "train.run_name=one",
        "train.checkpoint_every=1",
        "train.keep_checkpoints=5",
    )
    two_args = train_args(config, *common, "train.run_name=two", "dist.check_consistency_every=1")
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [
            pool.submit(run_gandist, one_args, workdir),
            pool.submit(run_gandist, two_args, workdir, nproc=2),
        ]
        for job in jobs:
            job.result()
    ckpts = workdir / "runs" / "one" / "checkpoints"
    one, two = ckpts / "step_3", workdir / "runs" / "two" / "checkpoints" / "step_3"
    state = json.loads((two / "trainer_state.json").read_text())
    assert state["world_size"] == 2
    for stem in ("generator", "discriminator"):
        diff = max_diff(weights(one, stem), weights(two, stem))
        assert diff < TOL, f"{stem}: 1 vs 2 processes differ by {diff:.3g} (tolerance {TOL:g})"
        # the run did train: parameters moved between step 1 and step 3, by far more than tol
        moved = max_diff(weights(ckpts / "step_1", stem), weights(one, stem))
        assert moved > 1e4 * TOL, f"{stem} moved only {moved:.3g} in 2 steps"


@pytest.mark.slow
def test_batchnorm_model_two_processes_stay_consistent(workdir: Path) -> None:
    """A BatchNorm DCGAN with EMA runs on 2 processes with ranks checked identical every step;
    only rank 0 logs, samples and reports; every rank saves its RNG state."""
    proc = run_gandist(
        train_args(
            "dcgan_digits.yaml",
            "train.steps=4",
            "train.batch_size=16",
            "dist.check_consistency_every=1",
            "train.sample_every=2",
            "train.ema=true",
        ),
        workdir,
        nproc=2,
    )
    assert "2 process(es) on cpu" in proc.stdout
    assert proc.stdout.count("done: 4 steps") == 1  # only the main process reports
    run = workdir / "runs" / "dcgan_digits"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines] == [1, 2, 3, 4]  # logged once, by rank 0
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "step_000002.png",
        "step_000004.png",
    ]
    ck = run / "checkpoints" / "step_4"
    assert (ck / "random_states_0.pkl").is_file() and (ck / "random_states_1.pkl").is_file()


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes_bf16(workdir: Path) -> None:
    """`accelerate launch --multi_gpu` (as documented) starts 2 CPU ranks, with bf16 autocast."""
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--main_process_port",
        str(free_port()),
        "-m",
        "gandist",
        "train",
        str(CONFIGS / "toy2d_wgan_gp.yaml"),
        "train.steps=2",
        "train.precision=bf16",
        "tracking.wandb=disabled",
        "train.sample_every=0",
    ]
    proc = subprocess.run(
        cmd,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "2 process(es) on cpu, precision bf16" in proc.stdout
    state = json.loads(
        (workdir / "runs/toy2d_wgan_gp/checkpoints/step_2/trainer_state.json").read_text()
    )
    assert state["world_size"] == 2


def test_sync_batchnorm_on_cpu_with_two_processes_is_a_clear_error(workdir: Path) -> None:
    proc = run_gandist(
        train_args(
            "dcgan_digits.yaml", "dist.sync_batchnorm=true", "train.steps=1", "data.shards=off"
        ),
        workdir,
        nproc=2,
        check=False,
    )
    assert proc.returncode != 0
    assert "dist.sync_batchnorm=true needs GPUs" in proc.stderr
