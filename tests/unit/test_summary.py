"""The block a run prints when it ends: it names only files that exist, and says when the run
was stopped rather than finished."""

from __future__ import annotations

from pathlib import Path

from gandist.run_files import METRICS
from gandist.tracking.summary import summary


def test_closing_block(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "x"
    run.mkdir(parents=True)
    text = summary(12, run, run / "samples", run / "checkpoints/step_12", None, "disabled")
    assert text.startswith("done: 12 steps") and "metrics" not in text  # train.log_every=0
    (run / METRICS).write_text('{"step": 12}\n')
    text = summary(12, run, run / "samples", None, None, "disabled", stopped_of=100)
    assert text.splitlines()[0] == "stopped at step 12 of 100 (continue with train.resume=auto)"
    assert f"metrics       : {run / METRICS}" in text and "done:" not in text
