"""A run stopped at a checkpoint and resumed equals the run that never stopped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from tests.integration.conftest import max_diff, metrics, run_gandist, train_args, weights

OLD_SCHEDULES = "custom_checkpoint_0.pkl"  # LambdaLR states, as gandist saved them until 2026-11


def test_resume_auto_matches_uninterrupted(workdir: Path) -> None:
    # BatchNorm G and D, EMA and Adam: every kind of state a resume must restore.
    common = [
        "train.batch_size=16",
        "model.g_width=8",
        "model.d_width=8",
        "train.ema=true",
        "train.ema_decay=0.9",
        "train.output_dir=runs",
        "train.checkpoint_every=2",
        "train.keep_checkpoints=5",
        # no schedules (the recipe has cosine ones): the last check adds one at resume
        "optim.g.schedule=constant",
        "optim.d.schedule=constant",
    ]
    run_gandist(
        train_args("dcgan_digits.yaml", *common, "train.steps=6", "train.run_name=straight"),
        workdir,
    )
    # same run, stopped after step 3 (a non-checkpoint step) ...
    run_gandist(
        train_args("dcgan_digits.yaml", *common, "train.steps=6", "train.run_name=resumed"), workdir
    )
    run = workdir / "runs" / "resumed"
    for p in ("step_4", "step_6"):
        shutil.rmtree(run / "checkpoints" / p)
    (run / "checkpoints" / "latest").write_text("step_2\n")
    state2 = json.loads((run / "checkpoints/step_2/trainer_state.json").read_text())
    # ... and continued with resume=auto
    proc = run_gandist(
        train_args(
            "dcgan_digits.yaml",
            *common,
            "train.steps=6",
            "train.run_name=resumed",
            "train.resume=auto",
        ),
        workdir,
    )
    assert "resumed from runs/resumed/checkpoints/step_2 at step 2" in proc.stdout
    a = workdir / "runs" / "straight" / "checkpoints" / "step_6"
    b = run / "checkpoints" / "step_6"
    for stem in ("generator", "discriminator", "ema_generator"):
        assert max_diff(weights(a, stem), weights(b, stem)) == 0.0, stem
    sa = json.loads((a / "trainer_state.json").read_text())
    sb = json.loads((b / "trainer_state.json").read_text())
    assert sb["wandb_run_id"] == state2["wandb_run_id"]
    assert sa["data"] == sb["data"] and sa["ema_n_averaged"] == sb["ema_n_averaged"] == 6
    steps = [m["step"] for m in metrics(run)]
    assert steps == [1, 2, 3, 4, 5, 6]  # nothing logged twice, nothing dropped

    # Resumed with a learning-rate schedule the run did not have: the rates follow from the
    # step under the new config. Held for 2 steps, a linear / cosine decay is step for step the
    # constant run until there, so the resumed run equals one scheduled from the start. The
    # checkpoint also carries the scheduler file earlier gandist versions wrote: set aside.
    sched = ["optim.g.schedule=linear", "optim.d.schedule=cosine"]
    sched += ["optim.g.stable_steps=2", "optim.d.stable_steps=2", "train.steps=6"]
    run_gandist(
        train_args("dcgan_digits.yaml", *common, *sched, "train.run_name=scheduled"), workdir
    )
    extended = workdir / "runs" / "extended" / "checkpoints" / "step_2"
    shutil.copytree(run / "checkpoints" / "step_2", extended)
    torch.save({"g": {"last_epoch": 2}, "d": {"last_epoch": 2}}, extended / OLD_SCHEDULES)
    proc = run_gandist(
        train_args(
            "dcgan_digits.yaml",
            *common,
            *sched,
            "train.run_name=extended",
            f"train.resume={extended}",
        ),
        workdir,
    )
    assert f"resumed from {extended} at step 2" in proc.stdout
    a = workdir / "runs" / "scheduled" / "checkpoints" / "step_6"
    b = workdir / "runs" / "extended" / "checkpoints" / "step_6"
    for stem in ("generator", "discriminator", "ema_generator"):
        assert max_diff(weights(a, stem), weights(b, stem)) == 0.0, stem
    lr = {m["step"]: (m["lr/g"], m["lr/d"]) for m in metrics(workdir / "runs" / "scheduled")}
    assert lr[3][0] == lr[2][0] > lr[4][0] > lr[6][0]  # held, then decaying
    assert [(m["lr/g"], m["lr/d"]) for m in metrics(workdir / "runs" / "extended")] == [
        lr[s] for s in (3, 4, 5, 6)
    ]
    assert (b / OLD_SCHEDULES).is_file()  # kept, so this run's checkpoints resume the same way


def test_fresh_run_never_overwrites(workdir: Path) -> None:
    args = train_args("toy2d_gan.yaml", "train.steps=1", "train.batch_size=32")
    run_gandist(args, workdir)
    proc = run_gandist(args, workdir)
    assert "run dir runs/toy2d_gan-2" in proc.stdout
    assert (workdir / "runs" / "toy2d_gan" / "checkpoints" / "step_1").is_dir()
