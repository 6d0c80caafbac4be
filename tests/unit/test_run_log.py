"""The console lines of a run (plain log, not a terminal)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from gandist.tracking.run_log import RunLog


def test_an_evaluation_between_log_steps_prints_its_scores_not_nan_losses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    acc = SimpleNamespace(is_main_process=True)
    log = RunLog(acc, tmp_path, total_steps=100, start_step=0, use_tracker=False, interactive=False)
    log.scalars(50, {"eval/modes_captured": 7.0, "eval/reverse_kl": 0.25})
    log.scalars(100, {"d/loss": 1.5, "g/loss": 0.75, "perf/img_per_s": 300.0})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("step 50/100  eval: modes_captured 7") and "nan" not in out[0]
    assert out[1].startswith("step 100/100  d_loss 1.5  g_loss 0.75  img/s 300")
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2  # both recorded


def test_a_resumed_runs_time_carries_on(tmp_path: Path) -> None:
    """metrics.jsonl's `time` restarted at 0 after a resume (58.5 at step 40, 1.3 at step 50):
    it now carries on from the last kept row, and rows after the checkpoint are dropped."""
    import json

    rows = [{"step": s, "time": 10.0 * s, "d/loss": 1.0} for s in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    acc = SimpleNamespace(is_main_process=True)
    log = RunLog(acc, tmp_path, total_steps=10, start_step=2, use_tracker=False, interactive=False)
    log.scalars(3, {"d/loss": 2.0})
    kept = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in kept] == [1, 2, 3] and kept[:2] == rows[:2]
    assert 20.0 <= kept[2]["time"] < 30.0 and kept[2]["d/loss"] == 2.0
