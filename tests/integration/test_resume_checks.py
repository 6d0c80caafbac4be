"""Resuming a run in-process: a checkpoint that does not fit the run's model is refused with the
settings to set back; every checkpoint is on disk before its step's evaluation; a run resumed
at its last step says there is nothing left to train."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torchvision.utils

from gandist.run_files import EVAL, read_metrics
from gandist.training.checkpoint import checkpoint_step, latest_checkpoint
from gandist.training.trainer import Trainer
from tests.integration.tiny_runs import tiny_trainer, train_tiny


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step DCGAN run (widths 4, BatchNorm, EMA)."""
    return train_tiny("dcgan", tmp_path_factory.mktemp("source")).run_dir


def new_trainer(out: Path, *extra: str) -> Trainer:
    return tiny_trainer("dcgan", out, "train.run_name=again", *extra)


def test_resume_with_another_model_names_layer_shapes_and_setting(
    source: Path, tmp_path: Path
) -> None:
    """A run resumed with changed model settings stops before loading, with what to set back
    (not torch's bare size-mismatch traceback from inside accelerate's load)."""
    ck = source / "checkpoints" / "step_2"
    with pytest.raises(ValueError) as err:
        new_trainer(tmp_path, f"train.resume={ck}", "model.g_width=8")
    text = str(err.value)
    assert text.startswith(f"train.resume: {ck / 'generator.safetensors'} does not fit")
    assert "layer 'fc.weight' has shape (256, 8) in the file but (512, 8) in this run's" in text
    assert "model.g_width=4 (this run: 8)" in text and str(ck / "config.yaml") in text
    assert "train.resume=none" in text
    # settings the DCGAN does not read (an MLP's hidden sizes) are not offered as the cause
    with pytest.raises(ValueError) as err:
        new_trainer(tmp_path, f"train.resume={ck}", "model.g_width=8", "model.d_hidden=[7]")
    assert "model.g_width=4 (this run: 8)" in str(err.value)
    assert "d_hidden" not in str(err.value)
    with pytest.raises(
        ValueError, match=r"discriminator.safetensors.*model.pack=1 \(this run: 2\)"
    ):
        new_trainer(tmp_path, f"train.resume={ck}", "model.pack=2")
    # dropout > 0 inserts layers: D's later layers are renumbered
    with pytest.raises(ValueError, match=r"model.dropout=0.0 \(this run: 0.1\)"):
        new_trainer(tmp_path, f"train.resume={ck}", "model.dropout=0.1")
    # settings that change no shape resume as before
    t = new_trainer(tmp_path, f"train.resume={ck}", "model.leaky_slope=0.1")
    assert t.resumed_from == ck and t.step == 2


def test_checkpoint_comes_before_the_evaluation(tmp_path: Path, capsys) -> None:
    """A stop or kill during a (long) evaluation loses no training: each step's checkpoint,
    the last one included, is on disk before that step's evaluation starts; the resumed run
    does the evaluation that was cut off (metrics row and eval.json), and only that one."""
    t = new_trainer(tmp_path, "train.steps=3", "train.checkpoint_every=2", "eval.every=2")
    seen: dict[int, int | None] = {}

    def killed_in_final_eval(log=None, rejection: bool = False) -> None:
        found = latest_checkpoint(t.run_dir)
        seen[t.step] = None if found is None else checkpoint_step(found)
        if t.step == 3:
            raise KeyboardInterrupt  # the kill, once the grace time of a stop has run out

    t.evaluate = killed_in_final_eval  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    assert seen == {2: 2, 3: 3}
    assert [row["step"] for row in read_metrics(t.run_dir)] == [1, 2]
    assert not (t.run_dir / EVAL).exists()

    # resumed at its last step: says so, trains nothing, keeps the checkpoint, scores it
    def scores(log=None, rejection: bool = False) -> dict[str, float]:
        calls.append((t2.step, rejection))
        return {"fid": 7.0}

    calls: list[tuple[int, bool]] = []
    t2 = new_trainer(tmp_path, "train.steps=3", "train.resume=auto")
    t2.evaluate = scores  # type: ignore[method-assign]
    capsys.readouterr()
    result = t2.fit()
    out = capsys.readouterr().out
    assert result.step == 3 and result.checkpoint == t.run_dir / "checkpoints" / "step_3"
    assert "nothing left to train (raise train.steps to continue" in out
    assert "step 3's evaluation and samples did not finish before the run stopped" in out
    assert "gandist eval" not in out  # it is being scored now
    assert calls == [(3, False), (3, True)]  # the recipe scores the last step twice
    assert read_metrics(t.run_dir)[-1] == {
        **read_metrics(t.run_dir)[-1],
        "step": 3,
        "eval/fid": 7.0,
    }
    assert json.loads((t.run_dir / EVAL).read_text())["fid"] == 7.0
    assert "d/loss" in read_metrics(t.run_dir)[-1]  # the step's own values too, not only eval
    # resumed with train.steps below the checkpoint: refused before anything is rewritten (it
    # said "the checkpoint is at train.steps=2" and rewrote config.yaml to 2 steps)
    with pytest.raises(ValueError, match=r"train\.steps=2 is below step 3 of the checkpoint"):
        new_trainer(tmp_path, "train.steps=2", "train.resume=auto")
    assert "steps: 3" in (t.run_dir / "config.yaml").read_text()

    # once done, a further resume does not score it again
    calls.clear()
    t2 = new_trainer(tmp_path, "train.steps=3", "train.resume=auto")
    t2.evaluate = scores  # type: ignore[method-assign]
    capsys.readouterr()
    t2.fit()
    assert calls == []
    assert f"`gandist eval {t.run_dir}` scores it" in capsys.readouterr().out


def test_a_step_cut_off_in_its_evaluation_is_redone_whatever_the_resumed_config(
    tmp_path: Path,
) -> None:
    """Killed during step 2's evaluation, resumed with another eval.every: the step's row (its
    losses and its scores) and its grid were lost for good; the checkpoint now records what
    the step had due and its logged values."""
    t = new_trainer(
        tmp_path,
        "train.steps=4",
        "train.checkpoint_every=2",
        "eval.every=2",
        "train.sample_every=2",
    )

    def killed(log=None, rejection: bool = False) -> None:
        raise KeyboardInterrupt  # a kill -9 during the evaluation

    t.evaluate = killed  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    assert [row["step"] for row in read_metrics(t.run_dir)] == [1]
    t2 = new_trainer(
        tmp_path, "train.steps=4", "train.resume=auto", "eval.every=3", "train.sample_every=2"
    )
    t2.evaluate = lambda log=None, rejection=False: {"fid": 5.0}  # type: ignore[method-assign]
    t2.fit()
    rows = {row["step"]: row for row in read_metrics(t.run_dir)}
    assert sorted(rows) == [1, 2, 3, 4]
    assert rows[2]["eval/fid"] == 5.0 and "d/loss" in rows[2] and "lr/g" in rows[2]
    assert (t.run_dir / "samples" / "step_000002.png").is_file()
    assert "eval/fid" in rows[3] and "eval/fid" in rows[4]  # the resumed config's own


def test_a_signal_during_the_last_steps_evaluation_is_reported(tmp_path: Path, capsys) -> None:
    """A stop that comes while the last step is being scored cannot stop anything: the run
    completes, and now says the signal came (it was ignored without a word)."""
    from gandist.training.preemption import StopRequest

    t = new_trainer(tmp_path, "train.steps=2", "eval.every=2")
    stop = StopRequest()  # handlers not installed: the test plays the signal

    def signalled(log=None, rejection: bool = False) -> None:
        stop.signal_name = "SIGTERM"

    t.evaluate = signalled  # type: ignore[method-assign]
    result = t.fit(stop)
    assert not result.preempted and result.step == 2
    assert "SIGTERM arrived after the last step: the run is complete" in capsys.readouterr().out
    assert json.loads((t.run_dir / "status.json").read_text())["state"] == "completed"


def test_a_grid_cut_off_while_written_is_redone_alone(tmp_path: Path, capsys) -> None:
    """Killed while step 2's grid was written (its metrics row comes first): the resume saw the
    row and left the grid missing for good. Now the grid alone is redone; a grid is never left
    half-written under its name."""
    t = new_trainer(tmp_path, "train.steps=3", "train.checkpoint_every=2", "train.sample_every=2")
    grid = t.run_dir / "samples" / "step_000002.png"

    def killed_in_png(*args, **kwargs) -> None:
        raise KeyboardInterrupt  # a kill -9 while the PNG was being written

    real_save = torchvision.utils.save_image
    torchvision.utils.save_image = killed_in_png
    try:
        with pytest.raises(KeyboardInterrupt):
            t.fit()
    finally:
        torchvision.utils.save_image = real_save
    assert [row["step"] for row in read_metrics(t.run_dir)] == [1, 2]
    assert list((t.run_dir / "samples").iterdir()) == []  # no truncated or temporary file
    calls: list[int] = []
    t2 = new_trainer(tmp_path, "train.steps=3", "train.resume=auto", "train.sample_every=2")
    t2.evaluate = lambda log=None, rejection=False: calls.append(t2.step)  # type: ignore[method-assign]
    capsys.readouterr()
    t2.fit()
    assert "step 2's sample grid was not written before the run stopped" in capsys.readouterr().out
    assert grid.is_file()
    assert [row["step"] for row in read_metrics(t.run_dir)] == [1, 2, 3]  # step 2 once
    assert set(calls) == {3}  # only the last step is scored (step 2 was)

    # a checkpoint copied into a new run directory owes it nothing (no grid, no row of its
    # step: the source run logged them); the same run moved elsewhere still redoes them
    for name, copied in (("copy", t.run_dir / "checkpoints" / "step_2"), ("moved", t.run_dir)):
        target = tmp_path / "elsewhere" / name
        if name == "copy":
            shutil.copytree(copied, target / "checkpoints" / "step_2")
        else:
            shutil.copytree(copied, target)
            grid_moved = target / "samples" / "step_000002.png"
            grid_moved.unlink()
        t3 = tiny_trainer(
            "dcgan", target.parent, f"train.run_name={name}",
            f"train.resume={target / 'checkpoints' / 'step_2'}",
            "train.steps=3", "train.sample_every=2",
        )  # fmt: skip
        t3.evaluate = lambda log=None, rejection=False: None  # type: ignore[method-assign]
        capsys.readouterr()
        t3.fit()
        out = capsys.readouterr().out
        assert ("was not written before" in out) == (name == "moved"), name
        assert (target / "samples" / "step_000002.png").exists() == (name == "moved")
        assert [row["step"] for row in read_metrics(target)][-1:] == [3]
