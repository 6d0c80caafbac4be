"""When a run must stop for non-finite numbers, and when it must not.

Under fp16 a loss that overflows is routine: the GradScaler skips that optimizer step and lowers
its scale. With a gradient penalty the loss itself contains the (scaled) input gradients, so the
same overflow makes the *loss* non-finite while nothing is wrong with the run. A single
non-finite loss therefore never stops training; `max_nonfinite_steps` of them in a row do (the
scale has then been halved that many times: the run is diverging), and so do non-finite
parameters, which no later step can repair.

The streak is counted on the device, without a host sync per step; the trainer reads it only on
log steps, where it synchronises anyway.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn


class NonFiniteWatch:
    """Longest run of consecutive steps with a non-finite loss since the last `take_worst()`."""

    def __init__(self, device: torch.device) -> None:
        self.streak = torch.zeros((), dtype=torch.int64, device=device)
        self.worst = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, *losses: torch.Tensor) -> None:
        """Record one step's losses (device ops only)."""
        # few tiny ops: on a small model each is a noticeable share of the step
        finite = torch.stack([loss.detach().float() for loss in losses]).isfinite().all()
        self.streak = (self.streak + 1) * finite.logical_not()
        self.worst = torch.maximum(self.worst, self.streak)

    def take_worst(self) -> int:
        """The longest streak over all ranks since the last call (a collective when distributed:
        every rank calls it), then forget it; the current streak carries on."""
        worst = self.worst.clone()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        self.worst = self.streak.clone()
        return int(worst.item())


def nonfinite_parameters(nets: dict[str, nn.Module]) -> list[str]:
    """Names of the networks holding a non-finite parameter (one host sync for all)."""
    names = list(nets)
    flags = torch.stack(
        [
            torch.stack([p.detach().isfinite().all() for p in nets[n].parameters()]).all()
            for n in names
        ]
    )
    return [n for n, ok in zip(names, flags.tolist(), strict=True) if not ok]


def check_health(
    worst_streak: int, limit: int, broken: list[str], step: int, run_dir: Path
) -> None:
    """Raise FloatingPointError, naming the last good checkpoint, when the run must stop."""
    if worst_streak < limit and not broken:
        return
    from gandist.training.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run_dir)
    what = (
        f"non-finite parameters in the {' and '.join(broken)}"
        if broken
        else f"{worst_streak} steps in a row with a non-finite loss "
        f"(train.max_nonfinite_steps={limit})"
    )
    raise FloatingPointError(
        f"step {step}: {what}; training stopped (nothing saved from this state). The last good "
        f"checkpoint is {latest or 'none (no checkpoint yet)'}. Lower the learning rates, use "
        "train.precision=no, or check the penalty settings."
    )
