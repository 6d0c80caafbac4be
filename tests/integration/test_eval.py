"""Image metrics end to end: train an evaluator, score a 2-process run while it trains, then
score its checkpoint again with `gandist eval` on one process: the same samples, the same
numbers, whatever the number of ranks."""

from __future__ import annotations

import json
from pathlib import Path

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
    ):
        assert key in final, key
    assert final["fid"] > 0 and 0 <= final["cond_accuracy"] <= 1
    assert final["cond_accuracy_real"] > 0.8  # the evaluator knows real digits
    wandb_rows = history(next(run.glob("wandb/*run-*/run-*.wandb")))
    assert {r["_step"] for r in wandb_rows if "eval/fid" in r} == {2, 4}

    proc = run_gandist(["eval", str(run), "--wandb", "disabled"], workdir)
    record = json.loads((run / "evals/step_000004-domain.json").read_text())
    assert record["processes"] == 1 and record["n_samples"] == 101 and record["ema"]
    for key in ("fid", "kid_mean", "precision", "recall", "density", "coverage", "cond_accuracy"):
        assert record[key] == pytest.approx(final[key], rel=1e-4, abs=1e-6), key
    assert "fid" in proc.stdout and str(run / "evals") in proc.stdout
    # the truncation trick: its own file, its psi recorded, other samples and other numbers
    run_gandist(["eval", str(run), "--wandb", "disabled", "--truncation", "0.5"], workdir)
    cut = json.loads((run / "evals/step_000004-domain-psi0.5.json").read_text())
    assert cut["truncation"] == 0.5 and record["truncation"] == 1.0
    assert cut["fid"] != pytest.approx(record["fid"], rel=1e-3)
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
