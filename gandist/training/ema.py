"""The EMA generator: torch's AveragedModel with the EMA average, minus its host syncs.

`AveragedModel.update_parameters` asks `n_averaged == 0` and `n_averaged > 0` of a device tensor
on every call, which stalls the host until the GPU has finished the step. This subclass keeps a
host-side mirror of the count (read from the tensor once, at the first update after construction
or a load) and applies the same arithmetic as torch's `get_ema_multi_avg_fn`: the first update
copies, later ones lerp floats by (1 - decay) and blend integer buffers the way torch does, so
results are bit for bit those of AveragedModel.
"""

from __future__ import annotations

from itertools import chain

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class EMAGenerator(AveragedModel):
    """Exponential moving average of a generator's parameters and buffers (BatchNorm included)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__(model, use_buffers=True, multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.decay = decay
        self._count: int | None = None  # host mirror of n_averaged; None: read it once

    def load_count(self, n: int) -> None:
        """Set the number of averaged models (a resume or init_from)."""
        self.n_averaged.fill_(n)
        self._count = n

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        if self._count is None:
            self._count = int(self.n_averaged.item())
        ema = [t.detach() for t in chain(self.module.parameters(), self.module.buffers())]
        cur = [t.detach() for t in chain(model.parameters(), model.buffers())]
        if self._count == 0:
            for a, c in zip(ema, cur, strict=True):
                a.copy_(c)
        else:
            groups: dict[tuple[torch.device, torch.dtype], tuple[list, list]] = {}
            for a, c in zip(ema, cur, strict=True):
                if a.is_floating_point():
                    mine, theirs = groups.setdefault((a.device, a.dtype), ([], []))
                    mine.append(a)
                    theirs.append(c.to(a.device))
                else:  # integer buffers (num_batches_tracked), as torch's EMA does them
                    a.copy_(a * self.decay + c * (1 - self.decay))
            for mine, theirs in groups.values():
                torch._foreach_lerp_(mine, theirs, 1 - self.decay)
        self.n_averaged.add_(1)
        self._count += 1
