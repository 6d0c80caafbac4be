"""Normalisation layers shared by the DCGAN and MLP networks.

One helper per feature layout keeps the meaning of `model.g_norm` / `model.d_norm` identical in
every architecture. "spectral" is not a layer: it reparametrises the conv/linear weights of the
whole net (see `apply_spectral_norm`), so the per-layer helpers return Identity for it.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

# Norms with an affine shift make a bias in the preceding conv redundant.
SHIFTING_NORMS = ("batch", "instance", "layer")


def norm2d(kind: str, channels: int, eps: float = 1e-5) -> nn.Module:
    """Norm for (B, C, H, W) feature maps."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, eps=eps)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, eps=eps, affine=True)
    if kind == "layer":
        # GroupNorm with one group normalises over (C, H, W) per sample: LayerNorm for conv maps
        # that does not need the spatial size up front.
        return nn.GroupNorm(1, channels, eps=eps)
    if kind in ("spectral", "none"):
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r} (known: batch, instance, layer, spectral, none)")


def norm1d(kind: str, features: int, eps: float = 1e-5, key: str = "model.norm") -> nn.Module:
    """Norm for (B, F) feature vectors; `key` names the config entry in errors."""
    if kind == "batch":
        return nn.BatchNorm1d(features, eps=eps)
    if kind == "layer":
        return nn.LayerNorm(features, eps=eps)
    if kind == "instance":
        # Instance norm needs spatial positions to average over; a vector has none.
        raise ValueError(
            f"{key}: 'instance' norm needs feature maps and the MLP/toy nets have none; "
            "use layer, batch, spectral or none"
        )
    if kind in ("spectral", "none"):
        return nn.Identity()
    raise ValueError(
        f"{key}: unknown norm {kind!r} (known: batch, instance, layer, spectral, none)"
    )


def conv_bias(kind: str) -> bool:
    """Whether a conv followed by norm `kind` should carry a bias (not when the norm shifts)."""
    return kind not in SHIFTING_NORMS


_SN_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def apply_spectral_norm(net: nn.Module, skip: Iterable[type[nn.Module]] = ()) -> nn.Module:
    """Spectral-normalise every conv/linear weight of `net`, except inside modules of `skip` types.

    Label encoders are skipped by the callers: they map labels, not the sample, so they do not
    enter the Lipschitz constant with respect to x that spectral norm is meant to bound.
    """
    skip = tuple(skip)
    skipped: set[int] = set()
    for module in net.modules():
        if skip and isinstance(module, skip):
            skipped.update(id(m) for m in module.modules())
    for module in list(net.modules()):
        if id(module) in skipped or not isinstance(module, _SN_TYPES):
            continue
        # ConvTranspose2d keeps its output channels on dim 1; spectral_norm picks that itself.
        spectral_norm(module)
    return net
