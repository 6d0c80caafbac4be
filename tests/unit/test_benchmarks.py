"""The benchmarks run and report what docs/performance.md quotes (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.__main__ import main


def test_train_benchmark_reports_the_overhead_ratio(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "train.json"
    assert (
        main(
            [
                "--out",
                str(out),
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
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["n_critic"] == 5
    assert result["gandist_ms_per_step"] > 0 and result["bare_ms_per_step"] > 0
    assert (
        result["overhead"]
        == round(result["gandist_ms_per_step"] / result["bare_ms_per_step"] - 1, 4)
        or abs(
            result["overhead"] - (result["gandist_ms_per_step"] / result["bare_ms_per_step"] - 1)
        )
        < 1e-3
    )
    assert json.loads(capsys.readouterr().out) == result


def test_loader_benchmark_compares_both_paths(tmp_path: Path) -> None:
    out = tmp_path / "loader.json"
    assert (
        main(
            [
                "--out",
                str(out),
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
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["imagefolder_img_per_s"] > 0 and result["shards_img_per_s"] > 0
    assert "loader_vs_trainer" not in result  # --train-steps 0 skips the trainer
