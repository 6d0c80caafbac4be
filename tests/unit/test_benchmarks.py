"""The benchmarks run and report what docs/performance.md quotes (no timing assertions).

Tiny models (width 4-8, batch 8, one timed step) so each test takes seconds; they check the JSON
schema and that every ratio is a positive, finite number.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.__main__ import main

TINY = ["--width", "8", "--batch", "8", "--steps", "1", "--reps", "1", "--threads", "1"]
TRAIN = ["train", "--model", "wgan_gp64", *TINY]
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


def run(tmp_path: Path, argv: list[str]) -> dict:
    out = tmp_path / "result.json"
    assert main(["--out", str(out), *argv]) == 0
    return json.loads(out.read_text())


def positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


def test_train_benchmark_reports_the_overhead_ratio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(tmp_path, TRAIN)
    assert result["n_critic"] == 5
    assert positive(result["gandist_ms_per_step"]) and positive(result["bare_ms_per_step"])
    ratio = result["gandist_ms_per_step"] / result["bare_ms_per_step"] - 1
    assert abs(result["overhead"] - ratio) < 1e-3
    assert positive(result["gandist_img_per_s"]) and positive(result["bare_img_per_s"])
    paired = result["paired_ratio"]
    assert 0 < paired["q1"] <= paired["median"] <= paired["q3"] < math.inf
    flops = result["flops"]
    assert flops["flops_per_step"] > 0 and positive(flops["achieved_tflops"])
    assert flops["peak_tflops"] is None and flops["fraction_of_peak"] is None  # CPU: no peak
    assert result["machine"]["torch_threads"] == 1
    assert json.loads(capsys.readouterr().out) == result


def test_train_benchmark_channels_last_switch(tmp_path: Path) -> None:
    result = run(tmp_path, ["train", "--model", "dcgan64", "--channels-last", *TINY])
    assert result["settings"]["channels_last"] is True and result["compiled"] == []
    assert result["n_critic"] == 1 and positive(result["bare_ms_per_step"])


def test_step_cost_compares_gp_with_a_plain_critic_step(tmp_path: Path) -> None:
    result = run(tmp_path, ["step-cost", *TINY, "--clock", "cpu"])  # CPU time: --threads 1
    assert positive(result["gp_vs_plain"]) and positive(result["gp_vs_plain_flops"])
    assert positive(result["gp_vs_plain_paired"]["median"])
    # The penalty's extra forward and double backward through D are real work.
    assert result["gp_d_step_flops"] > result["plain_d_step_flops"] > 0


def test_variants_benchmark_names_the_fastest_per_precision(tmp_path: Path) -> None:
    result = run(tmp_path, ["variants", "--width", "4", *TINY[2:]])
    layouts = ("nchw", "channels_last")
    assert set(result["variants"]) == {
        f"{p}/{lay}/eager" for p in ("fp32", "bf16") for lay in layouts
    }
    assert result["variants"][result["baseline"]]["speedup"] == 1.0
    for v in result["variants"].values():
        assert positive(v["img_per_s"]) and positive(v["speedup"]) and v["flops_per_step"] > 0
    assert set(result["fastest_per_precision"]) == {"fp32", "bf16"}


@pytest.mark.slow
def test_scaling_benchmark_runs_two_real_processes(tmp_path: Path) -> None:
    """One torchrun launch of 2 CPU processes (about 20 s); the world size is checked."""
    argv = ["scaling", "--nprocs", "2", "--width", "4", "--batch", "8", "--steps", "1"]
    result = run(tmp_path, [*argv, "--reps", "1", "--threads", "1"])
    two = result["processes"]["2"]
    assert two["world_size"] == 2 and two["threads_per_process"] == 1
    assert positive(two["img_per_s"]) and math.isfinite(two["stop_check_ms_per_step"])
    assert two["stop_check_alone_ms"] >= 0 and two["stop_poll_alone_ms"] >= 0
    assert two["speedup_vs_1"] is None  # no 1-process launch in this run


def test_loader_benchmark_compares_both_paths(tmp_path: Path) -> None:
    result = run(tmp_path, LOADER)
    assert positive(result["imagefolder_img_per_s"]) and positive(result["shards_img_per_s"])
    assert "loader_vs_trainer" not in result  # --train-steps 0 skips the trainer


@pytest.mark.parametrize("model", ["toy2d_gan", "toy2d_wgan_gp", "gan_mlp"])
def test_train_benchmark_small_models(tmp_path: Path, model: str) -> None:
    """The 2-D toys and the MLP GAN, exactly as their recipes build them (no --width)."""
    argv = ["train", "--model", model, "--batch", "64", "--steps", "2", "--reps", "2"]
    result = run(tmp_path, [*argv, "--threads", "1", "--clock", "cpu"])
    assert result["n_critic"] == (5 if model == "toy2d_wgan_gp" else 1)
    assert positive(result["gandist_ms_per_step"]) and positive(result["bare_ms_per_step"])
    assert positive(result["paired_ratio"]["median"]) and result["flops"]["flops_per_step"] > 0


def test_noise_benchmark_times_both_ways_per_world_size(tmp_path: Path) -> None:
    argv = ["noise", "--worlds", "1,4", "--steps", "1", "--reps", "1", "--local-batch", "4"]
    rows = run(tmp_path, argv)["rows"]
    assert [r["world_size"] for r in rows] == [1, 4]
    assert all(positive(r["ms_per_step_own_rows"]) for r in rows)
    assert rows[1]["global_batch"] == 16
