"""Non-finite losses: a lone one (an fp16 step the GradScaler skipped, whose loss holds the
overflowed penalty) never stops a run; a streak of train.max_nonfinite_steps does, and so do
non-finite parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gandist.training import trainer as trainer_module
from gandist.training.guard import NonFiniteWatch, nonfinite_parameters
from tests.recipe_driver import REPO, recipe_config, train

INF = torch.tensor(float("inf"))
ONE = torch.tensor(1.0)


def test_watch_counts_the_longest_streak_between_reads() -> None:
    w = NonFiniteWatch(torch.device("cpu"))
    for loss in (ONE, INF, INF, ONE, INF):
        w.update(loss, ONE)
    assert w.take_worst() == 2
    w.update(INF, ONE)  # the streak of 1 carries over the read
    assert w.take_worst() == 2
    w.update(ONE, torch.tensor(float("nan")))  # a NaN in either loss counts
    w.update(ONE, ONE)
    assert w.take_worst() == 3
    assert w.take_worst() == 0


def test_nonfinite_parameters_are_named() -> None:
    ok, bad = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        bad.bias[0] = float("nan")
    assert nonfinite_parameters({"generator": ok, "discriminator": bad}) == ["discriminator"]


def _inf_loss_at(monkeypatch: pytest.MonkeyPatch, steps: set[int]) -> None:
    """The D step reports an overflowed loss on the given (1-based) steps, as a GradScaler-skipped
    fp16 step with a gradient penalty does; the update itself is untouched."""
    real_step = trainer_module.discriminator_step
    calls = {"n": 0}

    def step(*args, **kwargs):
        metrics = real_step(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] in steps:
            metrics["d/loss"] = metrics["d/loss"] * float("inf")
        return metrics

    monkeypatch.setattr(trainer_module, "discriminator_step", step)


def _config(tmp_path: Path, *extra: str):
    return recipe_config(
        REPO / "configs" / "toy2d_wgan_gp.yaml",
        tmp_path / "data",
        tmp_path,
        "train.n_critic=1",
        "train.log_every=1",
        *extra,
    )


def test_a_skipped_step_on_a_log_step_does_not_stop_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _inf_loss_at(monkeypatch, {2, 4, 5})
    result = train(_config(tmp_path, "train.steps=6", "train.max_nonfinite_steps=3"))
    assert result.step == 6 and not result.preempted


def test_a_streak_of_nonfinite_losses_stops_with_the_last_good_checkpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _inf_loss_at(monkeypatch, {3, 4, 5})
    cfg = _config(
        tmp_path, "train.steps=8", "train.max_nonfinite_steps=3", "train.checkpoint_every=2"
    )
    with pytest.raises(
        FloatingPointError,
        match=r"step 5: 3 steps in a row.*max_nonfinite_steps=3"
        r".*last good checkpoint is .*step_4",
    ):
        train(cfg)
