"""`gandist sweep` end to end: one command trains every point of a real (tiny) grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import CONFIGS, run_gandist


@pytest.mark.timeout(120)
def test_two_point_sweep_trains_both_points(workdir: Path) -> None:
    """`gandist sweep FILE` runs each point in its own process: two run directories named
    <sweep>-<index>-<key=value>, each config.yaml carrying the sweep's and its point's
    overrides, both completed, and a summary table."""
    sweep = workdir / "toy.yaml"
    sweep.write_text(
        f"config: {CONFIGS / 'toy2d_wgan.yaml'}\n"
        "overrides: [train.steps=2, train.n_critic=1, train.batch_size=64, "
        "train.sample_every=0, train.log_every=1, tracking.wandb=disabled]\n"
        "grid:\n"
        "  loss.clip_value: [0.005, 0.02]\n"
    )
    # Two at a time: half the wall time on 2 cores, and the children's output goes through the
    # line-prefixing relay.
    proc = run_gandist(["sweep", str(sweep), "--max-parallel", "2"], workdir, timeout=110)

    names = {0.005: "toy-000-clip_value=0.005", 0.02: "toy-001-clip_value=0.02"}
    assert "sweep toy: 2 of 2 completed" in proc.stdout, proc.stdout
    for index, (clip, name) in enumerate(names.items()):
        run = workdir / "runs" / name
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        assert cfg["loss"]["clip_value"] == clip
        assert cfg["train"]["run_name"] == name and cfg["train"]["steps"] == 2
        assert cfg["tracking"]["group"] == "toy" and cfg["tracking"]["wandb"] == "disabled"
        assert cfg["model"]["arch"] == "toy"  # the rest is the base config
        status = json.loads((run / "status.json").read_text())
        assert status["state"] == "completed" and status["step"] == 2
        assert f"[{index}] sweep toy: point {index} (of 2): loss.clip_value={clip}" in proc.stdout
        assert f"runs/{name}" in proc.stdout.split("run directory")[-1]  # the summary table
