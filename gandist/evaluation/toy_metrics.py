"""Mode-collapse metrics for 2-D Gaussian mixtures (as in VEEGAN and PacGAN).

A generated point is *high quality* when it lies within 3 standard deviations of its nearest
mode. A mode is *captured* when it receives at least `min_share` of the high-quality points a
perfectly balanced generator would give it. The reverse KL compares the histogram of
high-quality points over modes with the true (uniform) mode weights: 0 when every mode gets its
share, log(K) when everything lands in one mode.
"""

from __future__ import annotations

import math

import torch

from gandist.training.noise import sample_noise


def mode_metrics(
    points: torch.Tensor,
    modes: torch.Tensor,
    std: float,
    min_share: float = 0.1,
) -> dict[str, float]:
    """Metrics of generated `points` (N, 2) against mixture `modes` (K, 2) of spread `std`."""
    points, modes = points.double(), modes.double()
    dist = torch.cdist(points, modes)
    nearest_d, nearest = dist.min(dim=1)
    good = nearest_d <= 3.0 * std
    k = modes.shape[0]
    counts = torch.bincount(nearest[good], minlength=k).double()
    n_good = counts.sum().item()
    fair = n_good / k
    captured = int((counts >= max(1.0, min_share * fair)).sum().item()) if n_good else 0
    if n_good:
        q = counts / n_good
        nz = q > 0
        reverse_kl = float((q[nz] * (q[nz] * k).log()).sum().item())
    else:
        reverse_kl = math.log(k)
    return {
        "modes_captured": float(captured),
        "modes_total": float(k),
        "high_quality_share": float(good.double().mean().item()),
        "reverse_kl": reverse_kl,
    }


def has_mode_metrics(extras: dict) -> bool:
    """Whether the 2-D data is a known mixture (toy2d:ring8, grid25), which mode metrics need."""
    return "modes" in extras


@torch.no_grad()
def evaluate_modes(
    G: torch.nn.Module, extras: dict, n: int, seed: int, device: torch.device
) -> dict[str, float] | None:
    """Mode metrics of n samples from G when the data is a known mixture, else None."""
    if not has_mode_metrics(extras):
        return None
    z = sample_noise(seed, "eval", 0, n, G.z_dim)
    dtype = next(G.parameters()).dtype
    was_training = G.training
    G.eval()
    pts = G(z.to(device, dtype), None).cpu()
    G.train(was_training)
    modes = torch.tensor(extras["modes"], dtype=torch.float64)
    return mode_metrics(pts, modes, float(extras["std"]))
