"""Learning-rate schedules: `optim.g.schedule` / `optim.d.schedule` with `warmup_steps`,
`stable_steps` and `min_lr_ratio`.

The factor multiplying `lr` at training step s (0-based; the step about to run), with W warm-up
steps, S stable steps, T = train.steps and r = min_lr_ratio:
- s < W: s / W (linear warm-up from 0, as in Transformers' get_*_schedule_with_warmup: the first
  step runs at lr 0 when W > 0);
- afterwards, with p = (s - W - S) / (T - W - S) clamped to [0, 1]:
  constant 1; linear 1 - (1 - r) p; cosine r + (1 - r) (1 + cos(pi p)) / 2.
So lr holds for S steps after the warm-up (the "stable" phase of Transformers' warm-up / stable /
decay schedule; CycleGAN's constant-then-linear-decay epochs), then decays towards r x lr, which
it would reach at step T (the last step, T - 1, is just above). With S > 0 a run is step for step
the constant-rate run until W + S (what that run measured up to there holds for it); when
W + S >= T (a recipe's run shortened with train.steps) the rate never decays.

Stepping: once per *training step* (one generator update after n_critic critic updates), for
both networks, after the G update. The critic's n_critic updates of one training step share one
learning rate, so a schedule means the same for every n_critic, and the scheduler's step count
is the trainer's step: resuming at step s restores exactly lr(s). A step the fp16 GradScaler
skipped still advances the schedule (it is a function of the step, not of the updates made).

Saving: nothing. The factor is a function of the step and the config, so a resumed run
rebuilds its rates from the checkpoint's step (`set_rates_at`): every network's lr becomes
optim.<net>.lr x factor(step) under the config it resumes with. Resuming with the settings a run
was saved with continues it bit for bit; resuming with others applies them from that step on: a
constant-rate run resumed with `schedule: linear, stable_steps: <its step or more>` continues
step for step as if it had had the schedule from the start, and a changed train.steps or lr
reshapes the rest. Checkpoints of earlier gandist versions carry the schedulers' state
(custom_checkpoint_0.pkl); it is read and set aside (checkpoint.restore).

Not through `accelerator.prepare`: its AcceleratedScheduler steps a scheduler num_processes times
per call (it assumes the per-process batch is fixed and the global batch grows with processes),
so a 2-process run would decay twice as fast.
"""

from __future__ import annotations

import math

import torch
from accelerate.optimizer import AcceleratedOptimizer
from torch.optim.lr_scheduler import LambdaLR

from gandist.config import OptimizerConfig

SCHEDULES = ("constant", "linear", "cosine")


def lr_factor(
    kind: str, step: int, total: int, warmup: int = 0, min_ratio: float = 0.0, stable: int = 0
) -> float:
    """The multiplier of the base learning rate at 0-based training step `step` (see above)."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {kind!r} (known: {', '.join(SCHEDULES)})")
    if step < warmup:
        return step / warmup
    if kind == "constant":
        return 1.0
    start = warmup + stable
    p = min(1.0, max(0.0, (step - start) / max(1, total - start)))
    if kind == "linear":
        return 1.0 - (1.0 - min_ratio) * p
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))


def is_scheduled(cfg: OptimizerConfig) -> bool:
    """Whether the learning rate ever differs from optim.<net>.lr."""
    return cfg.schedule != "constant" or cfg.warmup_steps > 0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimizerConfig, total: int) -> LambdaLR:
    """A LambdaLR for `cfg`'s schedule over `total` training steps. Building it sets the
    optimizer's lr to the step-0 value (0 with warm-up). An accelerate-wrapped optimizer is
    scheduled through the torch optimizer inside it (the one the steps call; they share
    param_groups)."""
    optimizer = _torch_optimizer(optimizer)
    kind, warmup, ratio, stable = cfg.schedule, cfg.warmup_steps, cfg.min_lr_ratio, cfg.stable_steps
    lr_factor(kind, 0, total, warmup, ratio, stable)  # fail now on an unknown kind

    # The schedule's shape comes from the config every time (a resumed run: set_rates_at).
    def factor(step: int) -> float:
        return lr_factor(kind, step, total, warmup, ratio, stable)

    return LambdaLR(optimizer, factor)


class LRSchedules:
    """The G and D schedulers of a run, stepped together once per training step."""

    def __init__(self, schedulers: dict[str, LambdaLR]) -> None:
        self.schedulers = schedulers

    def step(self) -> None:
        for s in self.schedulers.values():
            s.step()


def _torch_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer an accelerate-wrapped one steps (they share param_groups)."""
    return optimizer.optimizer if isinstance(optimizer, AcceleratedOptimizer) else optimizer


def set_rates_at(
    step: int,
    optimizers: dict[str, torch.optim.Optimizer],
    cfgs: dict[str, OptimizerConfig],
    total: int,
    schedules: LRSchedules | None,
) -> None:
    """Put every network at training step `step` of the schedule `cfgs` describe: its lr to
    cfg.lr x factor(step), its scheduler (if any) to that step. Called after a checkpoint is
    loaded, whose optimizer state holds the rate the saved run last used (see above)."""
    scheduled = schedules.schedulers if schedules is not None else {}
    for name, optimizer in optimizers.items():
        c = cfgs[name]
        f = lr_factor(c.schedule, step, total, c.warmup_steps, c.min_lr_ratio, c.stable_steps)
        groups = _torch_optimizer(optimizer).param_groups
        for g in groups:
            g["lr"] = c.lr * f  # LambdaLR's own formula: base_lr * factor(step)
        if name in scheduled:
            sched = scheduled[name]
            sched.base_lrs = [c.lr for _ in groups]
            sched.last_epoch = step  # its next step() computes step + 1's rate


def build_schedules(
    optimizers: dict[str, torch.optim.Optimizer], cfgs: dict[str, OptimizerConfig], total: int
) -> LRSchedules | None:
    """Schedulers for the networks whose config sets a schedule; None when none does (the
    learning rates stay fixed and nothing is added to checkpoints)."""
    chosen = {
        name: build_scheduler(opt, cfgs[name], total)
        for name, opt in optimizers.items()
        if is_scheduled(cfgs[name])
    }
    return LRSchedules(chosen) if chosen else None
