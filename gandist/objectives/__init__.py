"""Adversarial losses (on raw logits), the ACGAN auxiliary loss, and critic penalties."""

from __future__ import annotations

from gandist.objectives.losses import (
    LOSSES,
    AdversarialLoss,
    aux_loss,
    capped_aux_loss,
    wasserstein_estimate,
)
from gandist.objectives.penalties import (
    clip_weights_,
    gradient_penalty,
    interpolate,
    r1_penalty,
)

__all__ = [
    "LOSSES",
    "AdversarialLoss",
    "aux_loss",
    "capped_aux_loss",
    "clip_weights_",
    "gradient_penalty",
    "interpolate",
    "r1_penalty",
    "wasserstein_estimate",
]
