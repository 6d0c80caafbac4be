"""Learning-rate schedules (gandist/training/schedules.py): values at chosen steps for each kind,
warm-up, and resuming at a step that continues exactly (also into another schedule)."""

from __future__ import annotations

import math

import pytest
import torch

from gandist.config import ConfigError, OptimizerConfig, from_dict
from gandist.training.schedules import lr_factor, set_rates_at

T = 100


@pytest.mark.parametrize(
    ("kind", "step", "warmup", "ratio", "expected"),
    [
        ("constant", 0, 0, 0.0, 1.0),
        ("constant", 99, 0, 0.0, 1.0),
        ("constant", 5, 10, 0.0, 0.5),  # warm-up applies to constant too
        ("linear", 0, 0, 0.0, 1.0),
        ("linear", 50, 0, 0.0, 0.5),
        ("linear", 100, 0, 0.0, 0.0),
        ("linear", 50, 0, 0.2, 0.6),  # 1 - 0.8 * 0.5
        ("linear", 55, 10, 0.0, 0.5),  # p = 45 / 90
        ("cosine", 0, 0, 0.0, 1.0),
        ("cosine", 50, 0, 0.0, 0.5),
        ("cosine", 25, 0, 0.0, 0.5 * (1 + math.cos(math.pi / 4))),
        ("cosine", 100, 0, 0.1, 0.1),
        ("cosine", 10, 10, 0.0, 1.0),  # warm-up done: the peak
        ("cosine", 0, 10, 0.0, 0.0),  # warm-up from 0
        ("cosine", 4, 10, 0.0, 0.4),
        ("linear", 250, 0, 0.3, 0.3),  # past the end: stays at the floor
    ],
)
def test_factor_values(kind: str, step: int, warmup: int, ratio: float, expected: float) -> None:
    assert lr_factor(kind, step, T, warmup, ratio) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("kind", "step", "warmup", "stable", "expected"),
    [
        ("linear", 0, 0, 60, 1.0),
        ("linear", 60, 0, 60, 1.0),  # the decay starts here
        ("linear", 80, 0, 60, 0.5),  # p = 20 / 40
        ("cosine", 70, 0, 60, 0.5 * (1 + math.cos(math.pi / 4))),
        ("linear", 5, 10, 60, 0.5),  # warm-up first
        ("linear", 69, 10, 60, 1.0),
        ("linear", 85, 10, 60, 0.5),  # p = 15 / 30
        ("cosine", 100, 10, 60, 0.0),
    ],
)
def test_stable_steps_hold_the_rate_before_the_decay(
    kind: str, step: int, warmup: int, stable: int, expected: float
) -> None:
    assert lr_factor(kind, step, T, warmup, 0.0, stable) == pytest.approx(expected, abs=1e-12)


def test_decays_are_monotone_and_end_at_the_floor() -> None:
    for kind in ("linear", "cosine"):
        f = [lr_factor(kind, s, T, 10, 0.05) for s in range(T + 1)]
        assert f[:11] == pytest.approx([s / 10 for s in range(11)])
        assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
        assert f[T] == pytest.approx(0.05) and f[T - 1] > 0.05


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="step"):
        lr_factor("step", 0, T)


def opt(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def lr_of(o: torch.optim.Optimizer) -> float:
    return o.param_groups[0]["lr"]


def run_lrs(opts, cfgs, total: int, steps: range) -> list[dict[str, float]]:
    """The rates each step runs with, set and stepped as the trainer does."""
    lrs = []
    for step in steps:
        set_rates_at(step, opts, cfgs, total)
        lrs.append({k: lr_of(o) for k, o in opts.items()})
        for o in opts.values():
            o.step()
    return lrs


def test_scheduler_sets_the_learning_rate_of_each_step() -> None:
    o = opt(0.1)
    cfg = OptimizerConfig(lr=0.1, schedule="cosine", warmup_steps=4)
    seen = [r["g"] for r in run_lrs({"g": o}, {"g": cfg}, 20, range(20))]
    assert seen == pytest.approx([0.1 * lr_factor("cosine", i, 20, 4) for i in range(20)])
    assert seen[0] == 0.0 and seen[4] == pytest.approx(0.1)


def test_a_stable_phase_is_the_constant_run_until_the_decay() -> None:
    """The point of stable_steps: the learning rates a decaying run steps through are those of
    the constant run until warm-up + stable, so its checkpoint there is the constant run's."""
    const = OptimizerConfig(lr=0.1, warmup_steps=5)
    wsd = OptimizerConfig(lr=0.1, schedule="linear", warmup_steps=5, stable_steps=55)
    lrs = run_lrs({"c": opt(0.1), "w": opt(0.1)}, {"c": const, "w": wsd}, T, range(T))
    seen = [(r["c"], r["w"]) for r in lrs]
    assert [c for c, _ in seen[:60]] == [w for _, w in seen[:60]]
    assert seen[61][1] < seen[61][0] and seen[T - 1][1] == pytest.approx(0.1 / 40)


def test_resuming_at_a_step_continues_exactly() -> None:
    cfgs = {"g": OptimizerConfig(lr=0.2, schedule="linear", warmup_steps=3, min_lr_ratio=0.1)}
    cfgs["d"] = OptimizerConfig(schedule="cosine", lr=1e-3)
    straight = run_lrs({"g": opt(0.2), "d": opt(1e-3)}, cfgs, 30, range(30))
    # a new process: the checkpoint's optimizer state (its last rate), then the step
    saved = {"g": opt(0.2), "d": opt(1e-3)}
    run_lrs(saved, cfgs, 30, range(11))
    opts2 = {"g": opt(0.2), "d": opt(1e-3)}
    for k, o in opts2.items():
        o.load_state_dict(saved[k].state_dict())
    assert run_lrs(opts2, cfgs, 30, range(11, 30)) == straight[11:]  # bit for bit


def test_a_constant_run_resumed_with_a_decay_continues_as_if_scheduled() -> None:
    const = {"g": OptimizerConfig(lr=0.2), "d": OptimizerConfig(lr=0.1)}
    wsd = {
        k: OptimizerConfig(lr=c.lr, schedule="linear", stable_steps=20) for k, c in const.items()
    }
    straight = run_lrs({"g": opt(0.2), "d": opt(0.1)}, wsd, 40, range(40))
    saved = {"g": opt(0.2), "d": opt(0.1)}
    run_lrs(saved, const, 40, range(15))  # a constant run, checkpointed at step 15
    opts2 = {"g": opt(0.2), "d": opt(0.1)}
    for k, o in opts2.items():
        o.load_state_dict(saved[k].state_dict())
    assert run_lrs(opts2, wsd, 40, range(15, 40)) == straight[15:]
    # and back: a scheduled run's checkpoint (its rate decayed) resumed at constant rates
    set_rates_at(30, opts2, const, 40)
    assert {k: lr_of(o) for k, o in opts2.items()} == {"g": 0.2, "d": 0.1}


def test_a_constant_network_keeps_its_rate_exactly() -> None:
    """Without a schedule or warm-up the rate is optim.<net>.lr itself at every step."""
    cfgs = {"g": OptimizerConfig(lr=3e-4), "d": OptimizerConfig(lr=3e-4, schedule="linear")}
    lrs = run_lrs({"g": opt(), "d": opt()}, cfgs, 10, range(10))
    assert [r["g"] for r in lrs] == [3e-4] * 10
    assert lrs[-1]["d"] < 3e-4


def test_config_keys() -> None:
    cfg = from_dict(
        {"optim": {"g": {"schedule": "cosine", "warmup_steps": 10, "min_lr_ratio": 0.1}}}
    )
    assert (cfg.optim.g.schedule, cfg.optim.g.warmup_steps, cfg.optim.d.schedule) == (
        "cosine",
        10,
        "constant",
    )
    with pytest.raises(ConfigError, match="optim.d.schedule.*did you mean 'cosine'"):
        from_dict({"optim": {"d": {"schedule": "cosin"}}})
    with pytest.raises(ConfigError, match="optim.g.warmup_steps"):
        from_dict({"optim": {"g": {"warmup_steps": -1}}})
    with pytest.raises(ConfigError, match="optim.d.min_lr_ratio"):
        from_dict({"optim": {"d": {"min_lr_ratio": 1.5}}})
    with pytest.raises(ConfigError, match="optim.g.stable_steps.*must be >= 0"):
        from_dict({"optim": {"g": {"schedule": "linear", "stable_steps": -1}}})
    with pytest.raises(ConfigError, match="optim.d.stable_steps.*set optim.d.schedule"):
        from_dict({"optim": {"d": {"stable_steps": 10}}})
    # A shortened run of a recipe (train.steps=300 to try it) keeps its constant phase: no error.
    short = from_dict(
        {"train": {"steps": 100}, "optim": {"g": {"schedule": "cosine", "stable_steps": 24000}}}
    )
    g = short.optim.g
    assert [lr_factor(g.schedule, s, 100, 0, 0.0, g.stable_steps) for s in (0, 99)] == [1.0, 1.0]
