"""The benchmarks run and report what docs/performance.md quotes (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.__main__ import main

TRAIN = [
    "train",
    "--model",
    "wgan_gp64",
    "--width",
    "8",
    "--batch",
    "8",
    "--steps",
    "1",
    "--reps",
    "1",
]
LOADER = [
    "loader",
    "--images",
    "64",
    "--size",
    "32",
    "--batch",
    "16",
    "--workers",
    "0",
    "--epochs",
    "1",
    "--train-steps",
    "0",
]


def test_train_benchmark_reports_the_overhead_ratio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "train.json"
    assert main(["--out", str(out), *TRAIN]) == 0
    result = json.loads(out.read_text())
    assert result["n_critic"] == 5
    assert result["gandist_ms_per_step"] > 0 and result["bare_ms_per_step"] > 0
    ratio = result["gandist_ms_per_step"] / result["bare_ms_per_step"] - 1
    assert abs(result["overhead"] - ratio) < 1e-3
    assert json.loads(capsys.readouterr().out) == result


def test_loader_benchmark_compares_both_paths(tmp_path: Path) -> None:
    out = tmp_path / "loader.json"
    assert main(["--out", str(out), *LOADER]) == 0
    result = json.loads(out.read_text())
    assert result["imagefolder_img_per_s"] > 0 and result["shards_img_per_s"] > 0
    assert "loader_vs_trainer" not in result  # --train-steps 0 skips the trainer
