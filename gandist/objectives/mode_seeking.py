"""Mode seeking (MSGAN, Mao et al. 2019): make two z of one condition give two different images.

A conditional generator can learn to ignore z: every z then draws the same image for a label
(or one fixed scene for a label set), which keeps D's classifier happy and costs G nothing.
With `loss.mode_seeking: w` the generator step pairs the samples of its batch, (0, 1), (2, 3),
..., gives both samples of a pair the condition of the first, and adds w times

    mean over pairs of 1 / (d(G(z_a, y), G(z_b, y)) / d(z_a, z_b) + eps)

to G's loss, with d the mean absolute difference: it falls as the images of a pair move apart
relative to their noise. The pairs are consecutive samples of the rank's share of the global
batch, so every pair lives on one rank and the loss is a mean over the local batch like every
other term (DDP's average over equal shares is the global mean). MSGAN's reference code takes a
ratio of batch means instead; a mean over pairs is what lets 1 and N processes agree.
"""

from __future__ import annotations

from torch import Tensor

from gandist.config_rules import batch_share_fix

EPS = 1e-5  # MSGAN's; bounds the term at 1 / EPS for a pair of identical images


def paired_conditions(y: Tensor) -> Tensor:
    """y with every odd sample given the condition of the sample before it (a copy)."""
    paired = y.clone()
    paired[1::2] = y[0::2]
    return paired


def mode_seeking_loss(fake: Tensor, z: Tensor, eps: float = EPS) -> Tensor:
    """The regulariser above for a batch whose pairs (2j, 2j + 1) share their condition."""
    if len(fake) % 2:
        raise ValueError(f"mode seeking pairs samples: the batch of {len(fake)} is odd")
    images = (fake[0::2] - fake[1::2]).flatten(1).abs().mean(dim=1)
    noise = (z[0::2] - z[1::2]).flatten(1).abs().mean(dim=1)
    return (1.0 / (images / noise + eps)).mean()


def check_pair_batch(weight: float, batch_size: int, world_size: int) -> None:
    """Every rank's share of the global batch must be whole pairs (pairs never straddle ranks)."""
    if weight <= 0:
        return
    fix = batch_share_fix(2, batch_size, world_size, "2")
    if fix:
        raise ValueError(
            "loss.mode_seeking pairs the samples of every process's share of train.batch_size, "
            f"which must be even: {fix}, or set loss.mode_seeking: 0"
        )
