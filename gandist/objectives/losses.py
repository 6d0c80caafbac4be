"""Adversarial losses as pure functions of raw critic logits.

Every term is a mean over the local batch: with equal local batches, DDP's gradient average over
ranks then equals the gradient of the same loss on the global batch. Log-sigmoid terms use
softplus (log(1 + e^x)), which never overflows, instead of log(sigmoid(x)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from gandist.registry import Registry


class AdversarialLoss(NamedTuple):
    """`d(real_logits, fake_logits)` and `g(fake_logits)`, both scalars to minimise."""

    name: str
    d: Callable[[Tensor, Tensor], Tensor]
    g: Callable[[Tensor], Tensor]


LOSSES: Registry[AdversarialLoss] = Registry("adversarial loss")


def _bce_d(real: Tensor, fake: Tensor) -> Tensor:
    # -log D(x) - log(1 - D(G(z))) with D = sigmoid: softplus(-real) + softplus(fake).
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def _ns_g(fake: Tensor) -> Tensor:
    # Non-saturating: maximise log D(G(z)) -> minimise softplus(-fake).
    return F.softplus(-fake).mean()


def _minimax_g(fake: Tensor) -> Tensor:
    # Original minimax: minimise log(1 - sigmoid(fake)) = -softplus(fake).
    return -F.softplus(fake).mean()


def _wasserstein_d(real: Tensor, fake: Tensor) -> Tensor:
    return fake.mean() - real.mean()


def _neg_mean(fake: Tensor) -> Tensor:
    return -fake.mean()


def _hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def _lsgan_d(real: Tensor, fake: Tensor) -> Tensor:
    return 0.5 * ((real - 1.0).pow(2).mean() + fake.pow(2).mean())


def _lsgan_g(fake: Tensor) -> Tensor:
    return 0.5 * (fake - 1.0).pow(2).mean()


for _loss in (
    AdversarialLoss("ns", _bce_d, _ns_g),
    AdversarialLoss("minimax", _bce_d, _minimax_g),
    AdversarialLoss("wasserstein", _wasserstein_d, _neg_mean),
    AdversarialLoss("hinge", _hinge_d, _neg_mean),
    AdversarialLoss("lsgan", _lsgan_d, _lsgan_g),
):
    LOSSES.register(_loss.name)(_loss)


def aux_losses(aux_logits: Tensor, y: Tensor, label_type: str) -> Tensor:
    """ACGAN classifier loss per element, on raw logits (cross_entropy applies log-softmax
    itself): "class": y int64 (B,) -> (B,); "multi": y multi-hot (B, K), one independent sigmoid
    per label -> (B, K)."""
    if label_type == "class":
        return F.cross_entropy(aux_logits, y.long().view(-1), reduction="none")
    if label_type == "multi":
        return F.binary_cross_entropy_with_logits(
            aux_logits, y.to(aux_logits.dtype), reduction="none"
        )
    raise ValueError(f"aux_loss needs class or multi labels, got label_type {label_type!r}")


def aux_loss(aux_logits: Tensor, y: Tensor, label_type: str) -> Tensor:
    """The ACGAN classifier loss: the mean of `aux_losses`."""
    return aux_losses(aux_logits, y, label_type).mean()


def capped_mean(per: Tensor, confidence: float) -> Tensor:
    """`loss.aux_g_confidence` (0 < p < 1) on per-element classifier losses: each counts only
    above -log(p), so an element D's classifier already reads with probability >= p adds neither
    loss nor gradient.

    With the plain loss, G gains most by drawing for each condition the one image the classifier
    reads best, which costs it the use of z; capped, a readable image is as good as the most
    readable one, and the adversarial term alone decides among them. (The same reasoning as the
    margins of ReACGAN's data-to-data loss, Kang et al. 2021, here on the plain classifier.)
    """
    return F.relu(per + math.log(confidence)).mean()


def capped_aux_loss(aux_logits: Tensor, y: Tensor, label_type: str, confidence: float) -> Tensor:
    """G's side of the ACGAN classifier loss with `loss.aux_g_confidence` (see `capped_mean`)."""
    return capped_mean(aux_losses(aux_logits, y, label_type), confidence)


def split_twin(aux_logits: Tensor, twin: bool) -> tuple[Tensor, Tensor | None]:
    """D's aux logits -> (the classifier's, the twin's | None): with model.aux_twin the head
    returns (B, 2K), the classifier's K logits first."""
    if not twin:
        return aux_logits, None
    k = aux_logits.shape[1] // 2
    return aux_logits[:, :k], aux_logits[:, k:]


def wasserstein_estimate(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """mean D(real) - mean D(fake): the critic's W1 estimate, detached because it is only logged."""
    with torch.no_grad():
        return real_logits.mean() - fake_logits.mean()
