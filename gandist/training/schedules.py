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

Applying: the trainer sets both networks' rates for step s before it runs (`set_rates_at`), at
the start, after every step and after loading a checkpoint: every network's lr is
optim.<net>.lr x factor(s) under the config the run has. The critic's n_critic updates of one
training step share one rate, so a schedule means the same for every n_critic; a step the fp16
GradScaler skipped still counts (the rate is a function of the step, not of the updates made).
Nothing is saved and no scheduler object is kept: resuming with the settings a run was saved
with continues it bit for bit, and resuming with others applies them from the checkpoint's step
on (a constant-rate run resumed with `schedule: linear, stable_steps: <its step or more>` is from
there the run that had the schedule from the start; a changed train.steps or lr reshapes the
rest). Checkpoints of earlier gandist versions carry torch LambdaLR states
(custom_checkpoint_0.pkl); checkpoint.restore sets them aside.
"""

from __future__ import annotations

import math

import torch

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


def set_rates_at(
    step: int,
    optimizers: dict[str, torch.optim.Optimizer],
    cfgs: dict[str, OptimizerConfig],
    total: int,
) -> None:
    """Set each network's learning rate for 0-based training step `step` of `total`:
    cfg.lr x lr_factor(step) in every param group (an accelerate-wrapped optimizer shares its
    param_groups with the torch optimizer inside)."""
    for name, optimizer in optimizers.items():
        c = cfgs[name]
        f = lr_factor(c.schedule, step, total, c.warmup_steps, c.min_lr_ratio, c.stable_steps)
        for g in optimizer.param_groups:
            g["lr"] = c.lr * f
