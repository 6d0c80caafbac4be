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
