"""The truncation trick: sample from noise pulled towards its mean, trading recall for precision.

Scaling z by psi < 1 (StyleGAN's `truncation_psi`, taken in z space, whose mean is 0) keeps a
generator to its typical outputs. Where its rare, large-norm z give its worst samples (the
digits recipes' in-between digits) precision rises while recall and variety fall, and FID
rises once psi cuts into the variety; where its failures lie elsewhere in z (the bridges
between 2-D modes) it does not help. Measured in docs/experiments.md. It changes nothing in
training; it is a choice made when sampling or scoring (`gandist sample --truncation`,
`eval.truncation`), so every score taken with it says so.
"""

from __future__ import annotations

import torch
from torch import nn


def check_truncation(psi: float, where: str = "truncation") -> float:
    """psi itself if it is in (0, 1], else a ValueError naming `where` and the range."""
    if not 0.0 < psi <= 1.0:
        raise ValueError(
            f"{where}: must be in (0, 1] (1: no truncation; 0.7 is a common choice), got {psi}"
        )
    return psi


class Truncated(nn.Module):
    """G with its noise scaled by psi; same call signature, `z_dim` and parameters as G."""

    def __init__(self, G: nn.Module, psi: float) -> None:
        super().__init__()
        self.net = G
        self.psi = check_truncation(psi)
        self.z_dim = G.z_dim

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(z * self.psi, y)

    def extra_repr(self) -> str:
        return f"psi={self.psi}"


def truncated(G: nn.Module, psi: float) -> nn.Module:
    """G itself at psi = 1 (no wrapper, nothing changes), else `Truncated(G, psi)`."""
    return G if check_truncation(psi) == 1.0 else Truncated(G, psi)
