"""Weight initialisation.

"normal" is the DCGAN paper's recipe (all conv/linear weights N(0, 0.02), norm scales N(1, 0.02));
the labs gandist reproduces use it. "default" keeps PyTorch's own init.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from gandist.models.conditioning import LabelAffine, LabelEncoder, LabelMap
from gandist.models.norms import apply_spectral_norm

_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm)
_SN_REFRESH_ITERS = 15  # what torch's spectral_norm itself runs when it is registered


def _raw_weight(module: nn.Module) -> torch.Tensor:
    """The trainable weight tensor: the original one under a (spectral-norm) parametrization."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


@torch.no_grad()
def _refresh_spectral_norm(module: nn.Module) -> None:
    """Re-run the power iteration so u, v match the new weight before the first forward."""
    if not parametrize.is_parametrized(module, "weight"):
        return
    original = module.parametrizations.weight.original
    for p in module.parametrizations.weight:
        # Private torch API; without it u, v still converge, one iteration per training forward.
        if hasattr(p, "_power_method") and hasattr(p, "_reshape_weight_to_matrix"):
            p._power_method(p._reshape_weight_to_matrix(original), _SN_REFRESH_ITERS)


@torch.no_grad()
def init_weights(net: nn.Module, scheme: str = "normal", std: float = 0.02) -> nn.Module:
    """Initialise `net` in place and return it.

    Label encoders keep the init their constructors gave them in both schemes (PyTorch's; G's
    class embedding: unit-norm rows, see `conditioning.generator_encoder`): the DCGAN recipe is
    about feature layers, and an N(0, 0.02) embedding would make the label nearly invisible to
    G at the start. Conditional norms' label maps (LabelAffine) keep their zeros.
    """
    if scheme == "default":
        return net
    if scheme != "normal":
        raise ValueError(f"model.init: unknown scheme {scheme!r} (known: normal, default)")
    encoders = [m for m in net.modules() if isinstance(m, (LabelEncoder, LabelAffine))]
    skipped = {id(m) for enc in encoders for m in enc.modules()}
    for module in net.modules():
        if id(module) in skipped:
            continue
        if isinstance(module, _WEIGHTED):
            nn.init.normal_(_raw_weight(module), 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
            _refresh_spectral_norm(module)
        elif isinstance(module, _NORMS) and getattr(module, "weight", None) is not None:
            nn.init.normal_(module.weight, 1.0, std)
            nn.init.zeros_(module.bias)
    return net


def finish(
    net: nn.Module, norm: str, scheme: str, free: tuple[type[nn.Module], ...] = ()
) -> nn.Module:
    """Last step of every constructor: init, then spectral norm if that is the net's norm
    (except label encoders and the module types in `free`).

    Init runs first so spectral norm's power iteration starts from the final weights.
    """
    init_weights(net, scheme)
    if norm == "spectral":
        apply_spectral_norm(net, skip=(LabelEncoder, LabelMap, LabelAffine, *free))
    return net
