"""Tracking read back for real: the offline .wandb file, local pictures, the HTML report."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.integration.conftest import run_gandist, train_args
from tests.wandb_reader import config, history, run_id, run_info


def wandb_files(run: Path) -> list[Path]:
    return sorted(run.glob("wandb/*run-*/run-*.wandb"))


def test_two_process_run_logs_once_to_an_offline_wandb_run(workdir: Path) -> None:
    args = train_args(
        "toy2d_wgan_gp.yaml",
        "train.steps=6",
        "train.log_every=2",
        "train.sample_every=3",
        "train.batch_size=64",
        "tracking.wandb=offline",
        "train.run_name=wb",
        "train.checkpoint_every=0",
    )
    proc = run_gandist(args, workdir, nproc=2)
    run = workdir / "runs" / "wb"
    files = wandb_files(run)
    assert len(files) == 1, files  # rank 1 never started a W&B run
    rows = history(files[0])
    steps = sorted({r["_step"] for r in rows})
    assert steps == [2, 3, 4, 6]
    scalars = {k for r in rows for k in r}
    for key in (
        "d/loss",
        "g/loss",
        "d/real_score",
        "d/fake_score",
        "d/wasserstein",
        "d/gp",
        "d/gp_grad_norm",
        "d/grad_norm",
        "g/grad_norm",
        "perf/img_per_s",
        "perf/img_per_s_per_device",
        "lr/g",
        "lr/d",
        "epoch",
        "eval/modes_captured",
    ):
        assert key in scalars, key
    images = {r["_step"]: r for r in rows if r.get("samples/_type") == "image-file"}
    assert sorted(images) == [3, 6] and images[6]["samples/format"] == "png"
    state = json.loads((run / "checkpoints/step_6/trainer_state.json").read_text())
    assert run_id(files[0]) == state["wandb_run_id"]
    cfg = config(files[0])
    assert cfg["loss.penalty"] == "gp" and cfg["train.n_critic"] == 5
    # stdout is not a terminal here: plain periodic lines, once (main process only)
    assert proc.stdout.count("step 4/6  d_loss") == 1


def test_pictures_and_report(workdir: Path) -> None:
    args = train_args(
        "toy2d_gan.yaml",
        "train.steps=6",
        "train.log_every=1",
        "train.sample_every=2",
        "train.batch_size=64",
        "train.run_name=pics",
    )
    run_gandist(args, workdir)
    run = workdir / "runs" / "pics"
    curves = Image.open(run / "loss_curves.png")
    assert curves.format == "PNG" and curves.size[0] >= 500
    gif = Image.open(run / "training.gif")
    assert gif.format == "GIF" and gif.n_frames == len(list((run / "samples").glob("*.png"))) == 3
    scatter = Image.open(run / "samples" / "step_000006.png").convert("RGB")
    colours = {
        scatter.getpixel((x, y))
        for x in range(0, scatter.size[0], 7)
        for y in range(0, scatter.size[1], 7)
    }
    assert len(colours) > 5  # a drawn plot, not a blank canvas

    out = run_gandist(["report", str(run)], workdir).stdout.strip()
    page = Path(workdir / out).read_text()
    assert page.startswith("<!doctype html>")
    assert page.count("data:image/png;base64,") == 1 + 3  # curves + 3 sample plots
    assert "data:image/gif;base64," in page and "completed" in page
    assert "toy2d:ring8" in page  # the config is shown
    assert 'src="http' not in page  # self-contained
    assert re.search(r"<td>time</td><td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</td>", page)  # not 1.8e+09
    # a checkpoint directory (it has a config.yaml too) reports its run, not an empty "running"
    from gandist.tracking.report import write_report

    assert write_report(run / "checkpoints" / "step_6") == run / "report.html"
    # a run moved elsewhere names its checkpoint where it is now, not where it was written
    moved = shutil.move(run, workdir / "archive" / "ring")
    page = write_report(moved).read_text()
    assert f"<td>checkpoint</td><td>{workdir}/archive/ring/checkpoints/step_6</td>" in page


def test_unreachable_wandb_falls_back_to_offline(workdir: Path) -> None:
    os.environ["WANDB_API_KEY"] = "a" * 40
    os.environ["WANDB_BASE_URL"] = "http://127.0.0.1:9"  # nothing listens there
    try:
        proc = run_gandist(
            train_args(
                "toy2d_gan.yaml",
                "tracking.wandb=auto",
                "tracking.init_timeout_s=5",
                "train.steps=2",
                "train.batch_size=64",
                "train.run_name=down",
            ),
            workdir,
        )
    finally:
        os.environ.pop("WANDB_API_KEY")
        os.environ.pop("WANDB_BASE_URL")
    assert "logging offline instead" in proc.stderr
    assert "done: 2 steps" in proc.stdout
    assert len(list((workdir / "runs/down/wandb").glob("offline-run-*/run-*.wandb"))) == 1


def test_resumed_run_and_its_eval_stay_where_the_run_started(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run started with WANDB_PROJECT / WANDB_RUN_GROUP set, resumed from a shell without them,
    went on in project `gandist` with no group (a second W&B run under the same id); `gandist
    eval` did too, and crashed after scoring when the server was unreachable. WANDB_NAME and
    WANDB_JOB_TYPE were ignored."""
    base = ["toy2d_gan.yaml", "train.batch_size=64", "train.run_name=moved"]
    monkeypatch.setenv("WANDB_PROJECT", "first")
    monkeypatch.setenv("WANDB_RUN_GROUP", "g1")
    monkeypatch.setenv("WANDB_NAME", "my-name")
    monkeypatch.setenv("WANDB_JOB_TYPE", "pretrain")
    run_gandist(train_args(*base, "train.steps=2", "tracking.wandb=offline"), workdir)
    for key in ("WANDB_PROJECT", "WANDB_RUN_GROUP", "WANDB_NAME", "WANDB_JOB_TYPE"):
        monkeypatch.delenv(key)
    resumed = run_gandist(
        train_args(*base, "train.steps=4", "tracking.wandb=offline", "train.resume=auto"),
        workdir,
    )
    assert "W&B: the run continues where it started (project 'first', group 'g1')" in (
        resumed.stdout
    )
    run = workdir / "runs" / "moved"
    first, second = wandb_files(run)
    assert run_id(first) == run_id(second)
    for f in (first, second):
        info = run_info(f)
        assert (info["project"], info["group"]) == ("first", "g1")
    assert (run_info(first)["name"], run_info(first)["job_type"]) == ("my-name", "pretrain")
    assert f"upload later  : wandb sync {Path('runs/moved/wandb')}/offline-run-*" in resumed.stdout
    # the eval of its checkpoint: in the run's place, and an unreachable server costs no result
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    proc = run_gandist(
        ["eval", str(run), "--wandb", "online", "tracking.init_timeout_s=5"], workdir
    )
    assert "W&B online init failed" in proc.stderr and "logging offline" in proc.stderr
    assert (run / "evals" / "step_000004-modes.json").is_file()
    offline = sorted(run.glob("wandb/offline-run-*/run-*.wandb"))
    (side,) = [f for f in offline if f not in (first, second)]
    info = run_info(side)
    assert (info["project"], info["group"], info["job_type"]) == ("first", "g1", "eval")
