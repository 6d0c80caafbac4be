"""The prepared GPU check (`scripts/gpu_check.sh`, `make gpu-check`) cannot rot: its dry run
runs every part's code on CPU at tiny sizes, here, and the pieces that decide what a real run
reports (variant order, a worker dying mid-variant, pytest's counts) are checked directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check
from benchmarks.gpu_check import DRY, Sizes, _junit, _read_results, markdown, variants

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dry_run_runs_every_part_on_cpu(tmp_path: Path) -> None:
    """`scripts/gpu_check.sh --dry-run`: about 40 s on a 2-core VM. The budget is raised from
    the dry run's 100 s so that a loaded machine still measures every variant."""
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    env.pop("OUT", None)
    script = str(REPO / "scripts" / "gpu_check.sh")
    cmd = ["bash", script, "--dry-run", "--out", str(tmp_path), "--budget", "300"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] and report["ok"]
    parts = report["parts"]
    assert list(parts) == ["install", "environment", "pytest_gpu", "benchmark", "training"]
    assert all(p["status"] == "ok" for p in parts.values()), parts
    assert report["elapsed_s"] < report["budget_s"]

    # pytest -m gpu ran and, without a GPU, skipped every selected test
    pt = parts["pytest_gpu"]
    assert pt["tests"] > 0 and pt["skipped"] == pt["tests"] and pt["failed"] == 0

    rows = parts["benchmark"]["rows"]
    assert len(rows) == len(variants(DRY, cuda=False))
    measured = {
        (r["model"], r["precision"], r["layout"], r["mode"]) for r in rows if r["status"] == "ok"
    }
    for model in gpu_check.MODELS:
        for precision in ("fp32", "bf16"):
            for layout in ("nchw", "channels_last"):
                assert (model, precision, layout, "eager") in measured
            assert (model, precision, "nchw", "compiled") in measured
    for r in rows:
        if r["status"] == "ok":
            assert r["ms_per_step"] > 0 and r["img_per_s"] > 0 and r["flops_per_step"] > 0
            assert r["peak_tflops"] is None  # CPU: no datasheet peak
    wgan = next(
        r
        for r in rows
        if r["model"] == "wgan_gp64" and r["mode"] == "compiled" and r["status"] == "ok"
    )
    # the penalty's forward stays eager; G and the critic's plain forwards are compiled
    assert wgan["compiled"] == ["G", "D (plain forwards; penalty forward eager)"]

    train = parts["training"]
    assert train["run_status"] == "preempted" and train["returncode"] == 75
    assert train["steps"] > 0 and train["img_per_s"] > 0

    md = (tmp_path / "gpu_check.md").read_text()
    assert "| model | batch | precision | layout | compile |" in md
    assert "dry run" in md


def test_variants_run_eager_first_and_skip_fp16_without_cuda() -> None:
    real = variants(Sizes(), cuda=True)
    assert len(real) == 2 * 2 * 3 * 2 * 2  # models x batches x precisions x layouts x compile
    modes = [v["mode"] for v in real]
    assert modes == sorted(modes, key=["eager", "compiled"].index)  # eager ones first
    assert not any(v["skip"] for v in real)
    assert real[0] == {
        "model": "dcgan64",
        "batch": 256,
        "precision": "bf16",
        "layout": "channels_last",
        "mode": "eager",
        "skip": None,
    }
    cpu = variants(Sizes(), cuda=False)
    assert {v["precision"] for v in cpu if v["skip"]} == {"fp16"}


def test_a_variant_the_worker_died_in_is_named(tmp_path: Path) -> None:
    lines = tmp_path / "r.jsonl"
    lines.write_text(
        json.dumps({"start": "a"})
        + "\n"
        + json.dumps({"key": "a", "row": {"status": "ok"}})
        + "\n"
        + json.dumps({"start": "b"})
        + "\n"
    )
    results: dict = {}
    assert _read_results(lines, results) == "b"
    assert results == {"a": {"status": "ok"}} and not lines.exists()


def test_junit_counts(tmp_path: Path) -> None:
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1">'
        '<testcase classname="t" name="a"/><testcase classname="t" name="b">'
        '<failure message="boom"/></testcase><testcase classname="t" name="c"><skipped/>'
        "</testcase></testsuite></testsuites>"
    )
    counts, failures = _junit(xml)
    assert counts == {"tests": 3, "failed": 1, "errors": 0, "skipped": 1, "passed": 1}
    assert failures == [{"test": "t::b", "message": "boom"}]


def test_markdown_of_a_partial_report() -> None:
    """A check cut short still renders: failed parts show their error."""
    data = {
        "dry_run": False,
        "started": "now",
        "elapsed_s": 12.0,
        "budget_s": 465.0,
        "parts": {"environment": {"status": "failed", "seconds": 1, "error": "no | GPU"}},
    }
    md = markdown(data)
    assert "| environment | failed | 1 | no / GPU |" in md


def test_make_target_passes_args() -> None:
    proc = subprocess.run(
        ["make", "-n", "gpu-check", "ARGS=--dry-run"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "scripts/gpu_check.sh --dry-run" in proc.stdout
