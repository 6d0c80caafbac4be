"""The EMA generator: torch's AveragedModel with the EMA average, minus its host syncs.

`AveragedModel.update_parameters` asks `n_averaged == 0` and `n_averaged > 0` of a device tensor
on every call, which stalls the host until the GPU has finished the step. This subclass keeps a
host-side mirror of the count (read from the tensor once, at the first update after construction
or a load) and applies the same arithmetic as torch's `get_ema_multi_avg_fn`: the first update
copies, later ones lerp floats by (1 - decay) and blend integer buffers the way torch does, so
results are bit for bit those of AveragedModel. `train.ema_rampup` adds a warm-up of the decay
(ramped_decay), a function of the update count, which checkpoints carry, so resumes stay exact.
"""

from __future__ import annotations

import copy
import math
from itertools import chain

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from gandist.models.conditioning import random_labels


def ramped_decay(decay: float, rampup: float, count: int) -> float:
    """The EMA decay for the update after `count` earlier ones, with a warm-up.

    StyleGAN2-ADA's ema_rampup, counted in updates: the half-life (in updates) of `decay` is
    capped at `rampup * count`, so a young average weighs mostly the recent generators instead
    of dragging the first, poor ones along for thousands of steps. rampup 0 returns `decay`.
    """
    if rampup <= 0.0:
        return decay
    half_life = math.log(0.5) / math.log(decay)
    return 0.5 ** (1.0 / max(min(half_life, rampup * count), 1e-8))


class EMAGenerator(AveragedModel):
    """Exponential moving average of a generator's parameters and buffers (BatchNorm included)."""

    def __init__(self, model: nn.Module, decay: float, rampup: float = 0.0) -> None:
        super().__init__(model, use_buffers=True, multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.decay = decay
        self.rampup = rampup
        self._count: int | None = None  # host mirror of n_averaged; None: read it once
        self._sampling: tuple[tuple, nn.Module] | None = None  # for_sampling's copy, by state

    def for_sampling(self, label_type: str, num_labels: int, seed: int) -> nn.Module:
        """The averaged generator to sample from: without BatchNorm the module itself, else a
        copy with its statistics recomputed (refresh_norm_stats), made once per EMA update (a
        step's evaluation and sample grid share it). The training state is left as it is, so
        resumes stay exact."""
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.module.modules()):
            return self.module
        key = (self._count, label_type, num_labels, seed)
        if self._sampling is None or self._sampling[0] != key:
            G = refresh_norm_stats(copy.deepcopy(self.module), label_type, num_labels, seed)
            self._sampling = (key, G)
        return self._sampling[1]

    def load_count(self, n: int) -> None:
        """Set the number of averaged models (a resume or init_from)."""
        self.n_averaged.fill_(n)
        self._count = n
        self._sampling = None  # the weights were just loaded

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        if self._count is None:
            self._count = int(self.n_averaged.item())
        ema = [t.detach() for t in chain(self.module.parameters(), self.module.buffers())]
        cur = [t.detach() for t in chain(model.parameters(), model.buffers())]
        decay = ramped_decay(self.decay, self.rampup, self._count)
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
                    a.copy_(a * decay + c * (1 - decay))
            for mine, theirs in groups.values():
                torch._foreach_lerp_(mine, theirs, 1 - decay)
        self.n_averaged.add_(1)
        self._count += 1


@torch.no_grad()
def refresh_norm_stats(
    G: nn.Module,
    label_type: str = "none",
    num_labels: int = 0,
    seed: int = 0,
    n: int = 1024,
    batch: int = 256,
) -> nn.Module:
    """Recompute the BatchNorm running statistics of an averaged generator from its own output.

    The EMA averages each BatchNorm's running mean and variance along with the weights, and the
    result describes the activations of the networks it averaged, not those of the averaged
    network: on the digits DCGAN (docs/experiments.md) the EMA generator scored FID 72 with
    its averaged statistics, 10 with recomputed ones (the raw G: 5). G's statistics depend only
    on z and the labels, so n fresh samples give them exactly, without data (as SWA's
    `update_bn` does with data for a classifier). Changes G in place and returns it in eval
    mode; a G without BatchNorm is returned as it is.
    """
    norms = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return G
    p = next(G.parameters())
    g = torch.Generator().manual_seed(seed)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    G.train()
    for lo in range(0, n, batch):
        b = min(batch, n - lo)
        z = torch.randn(b, G.z_dim, generator=g)
        y = None if label_type == "none" else random_labels(label_type, num_labels, b, g)
        G(z.to(p.device, p.dtype), None if y is None else y.to(p.device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return G.eval()
