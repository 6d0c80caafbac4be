"""Image metrics end to end: train an evaluator, score a 2-process run while it trains, then
score its checkpoint again with `gandist eval` on one process: the same samples, the same
numbers, whatever the number of ranks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.integration.conftest import metrics, run_gandist, train_args
from tests.wandb_reader import history

pytestmark = pytest.mark.slow


def test_evaluator_scores_in_training_and_by_gandist_eval(workdir: Path) -> None:
    out = run_gandist(["train-evaluator", "digits", "--image-size", "16", "--epochs", "6"], workdir)
    assert "held-out (179 samples): accuracy" in out.stdout
    evaluator = workdir / "data/evaluators/digits-16px-nativec"
    assert (evaluator / "evaluator.safetensors").is_file()

    args = train_args(
        "cgan_digits.yaml",
        "data.image_size=16",
        "model.g_hidden=[64,128]",
        "model.d_hidden=[128]",
        "train.steps=4",
        "train.batch_size=32",
        "train.log_every=2",
        "train.checkpoint_every=0",
        "eval.every=2",
        "eval.n_samples=101",  # not a multiple of the world size: uneven rank chunks
        "eval.batch_size=32",
        "tracking.wandb=offline",
        "train.run_name=ev",
        "train.ema=true",  # both scorers must pick the EMA generator
    )
    trained = run_gandist(args, workdir, nproc=2)
    run = workdir / "runs/ev"
    assert trained.stdout.count("evaluation    : runs/ev/eval.json (fid ") == 1
    logged = [m for m in metrics(run) if "eval/fid" in m]
    assert [m["step"] for m in logged] == [2, 4]
    final = json.loads((run / "eval.json").read_text())
    for key in (
        "fid",
        "kid_mean",
        "kid_std",
        "precision",
        "recall",
        "density",
        "coverage",
        "cond_accuracy",
        "cond_accuracy_real",
        "cond_diversity",
        "cond_pixel_diversity",
    ):
        assert key in final, key
    assert final["fid"] > 0 and 0 <= final["cond_accuracy"] <= 1
    assert final["cond_accuracy_real"] > 0.8  # the evaluator knows real digits
    wandb_rows = history(next(run.glob("wandb/*run-*/run-*.wandb")))
    assert {r["_step"] for r in wandb_rows if "eval/fid" in r} == {2, 4}

    proc = run_gandist(["eval", str(run), "--wandb", "disabled"], workdir)
    record = json.loads((run / "evals/step_000004-domain.json").read_text())
    assert record["processes"] == 1 and record["n_samples"] == 101 and record["ema"]
    assert record["label_names"] == [str(k) for k in range(10)]  # what the terminal shows
    assert "cond_label_accuracy" in proc.stdout
    for key in (
        "fid",
        "kid_mean",
        "precision",
        "recall",
        "density",
        "coverage",
        "cond_accuracy",
        "cond_pixel_diversity",
    ):
        assert record[key] == pytest.approx(final[key], rel=1e-4, abs=1e-6), key
    assert "fid" in proc.stdout and str(run / "evals") in proc.stdout
    # other settings, other files: the first record stays as it was
    run_gandist(["eval", str(run), "--wandb", "disabled", "--n", "64", "--no-ema"], workdir)
    other = json.loads((run / "evals/step_000004-domain-n64-raw.json").read_text())
    assert (other["n_samples"], other["ema"]) == (64, False)
    assert json.loads((run / "evals/step_000004-domain.json").read_text()) == record
    # the truncation trick: its own file, its psi recorded, other samples and other numbers
    run_gandist(["eval", str(run), "--wandb", "disabled", "--truncation", "0.5"], workdir)
    cut = json.loads((run / "evals/step_000004-domain-psi0.5.json").read_text())
    assert cut["truncation"] == 0.5 and record["truncation"] == 1.0
    assert cut["fid"] != pytest.approx(record["fid"], rel=1e-3)
    # rejection sampling through the run's critic (class-conditional): the same samples and
    # acceptance on 2 processes as on 1
    drs = ["eval", str(run), "--wandb", "disabled", "--rejection", "0.5", "eval.rejection_steps=5"]
    run_gandist([*drs, "--out", "drs2.json"], workdir, nproc=2)
    run_gandist([*drs, "--out", "drs1.json"], workdir)
    two, one = (json.loads((workdir / f).read_text()) for f in ("drs2.json", "drs1.json"))
    assert (two["processes"], one["processes"], one["rejection"]) == (2, 1, 0.5)
    for key in (
        "fid",
        "precision",
        "recall",
        "cond_accuracy",
        "cond_pixel_diversity",
        "rejection_acceptance",
    ):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key
    assert one["fid"] != record["fid"]  # other samples (a 4-step G draws much alike)
    # the real features were cached once, by the training run
    assert len(list(evaluator.glob("reference-domain-*-n101-seed0.safetensors"))) == 1


def test_eval_without_an_evaluator_says_how_to_get_one(workdir: Path) -> None:
    run_gandist(
        train_args(
            "gan_mlp_digits.yaml",
            "data.image_size=16",
            "train.steps=1",
            "model.g_hidden=[32]",
            "model.d_hidden=[32]",
            "train.run_name=noev",
        ),
        workdir,
    )
    proc = run_gandist(["eval", str(workdir / "runs/noev")], workdir, check=False)
    assert proc.returncode == 2
    assert "gandist train-evaluator digits --image-size 16" in proc.stderr


def test_configured_truncation_is_scored_and_labelled(workdir: Path) -> None:
    """eval.truncation in a config: the run's own eval.json and `gandist eval` both score the
    truncated generator, and both say so."""
    args = train_args(
        "toy2d_ring8.yaml",
        "train.steps=2",
        "train.batch_size=64",
        "eval.n_samples=500",
        "eval.truncation=0.5",
        "eval.rejection=0",  # the recipe's rejection sampling: its own test below
        "train.run_name=cut",
    )
    run_gandist(args, workdir)
    run = workdir / "runs/cut"
    final = json.loads((run / "eval.json").read_text())
    assert final["truncation"] == 0.5
    run_gandist(["eval", str(run), "--wandb", "disabled"], workdir)
    again = json.loads((run / "evals/step_000002-modes-psi0.5.json").read_text())
    assert again["truncation"] == 0.5
    assert again["reverse_kl"] == pytest.approx(final["reverse_kl"], abs=1e-6)
    run_gandist(["eval", str(run), "--wandb", "disabled", "--truncation", "1"], workdir)
    # --truncation overrides the config (a 2-step G's mode metrics are saturated, so only the
    # label and the file tell; how scores respond: tests/unit/test_truncation.py and above)
    plain = json.loads((run / "evals/step_000002-modes.json").read_text())
    assert plain["truncation"] == 1.0


def test_configured_rejection_sampling_scores_samples_and_says_so(workdir: Path) -> None:
    """eval.rejection: the run's eval.json and W&B hold the scores with rejection sampling and the
    plain ones beside them; `gandist eval` reproduces them from the checkpoint (same calibration,
    same samples); `gandist sample --rejection` draws through it."""
    args = train_args(
        "toy2d_ring8.yaml",
        "train.steps=4",
        "train.batch_size=64",
        "eval.n_samples=500",
        "eval.rejection=0.5",
        "eval.rejection_steps=10",
        "tracking.wandb=offline",
        "train.run_name=drs",
    )
    out = run_gandist(args, workdir)
    assert "rejection sampling (eval.rejection 0.5): calibrating the critic for 10 steps" in (
        out.stdout + out.stderr
    )
    run = workdir / "runs/drs"
    final = json.loads((run / "eval.json").read_text())
    assert final["rejection"] == 0.5 and 0 < final["rejection_acceptance"] < 1
    assert "without_rejection/reverse_kl" in final and "without_rejection/rejection" not in final
    last = metrics(run)[-1]
    assert last["eval_rejection/rejection"] == 0.5 and "eval/reverse_kl" in last
    logged = history(next(run.glob("wandb/*run-*/run-*.wandb")))[-1]  # what W&B users see
    assert logged["eval_rejection/reverse_kl"] == pytest.approx(final["reverse_kl"])
    assert logged["eval/reverse_kl"] == pytest.approx(final["without_rejection/reverse_kl"])
    run_gandist(["eval", str(run), "--wandb", "disabled"], workdir)
    again = json.loads((run / "evals/step_000004-modes-drs0.5.json").read_text())
    for key in ("reverse_kl", "high_quality_share", "rejection_acceptance"):
        assert again[key] == pytest.approx(final[key], abs=1e-9), key
    run_gandist(["eval", str(run), "--wandb", "disabled", "--rejection", "0"], workdir)
    plain = json.loads((run / "evals/step_000004-modes.json").read_text())
    assert "rejection" not in plain
    assert plain["reverse_kl"] == pytest.approx(final["without_rejection/reverse_kl"], abs=1e-9)
    for q in ("0", "0.5"):
        args = ["sample", str(run), "--n", "300", "--out", f"q{q}.npy", "--rejection", q]
        run_gandist(args, workdir)
    kept, raw = np.load(workdir / "q0.5.npy"), np.load(workdir / "q0.npy")
    assert kept.shape == raw.shape == (300, 2) and not np.allclose(kept, raw)
    bad = run_gandist(["sample", str(run), "--rejection", "1"], workdir, check=False)
    assert bad.returncode == 2 and "--rejection: must be in [0, 1)" in bad.stderr
