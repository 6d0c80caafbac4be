"""Critic regularisers: WGAN-GP gradient penalty, R1, and WGAN weight clipping.

Both gradient penalties are per-sample input gradients, which is what keeps them correct under
DDP and AMP (docs/distributed-correctness.md §1-2):
- differentiate `adv.sum()`, never `.mean()`: with the mean every gradient shrinks by 1/local
  batch, so the penalty depends on how the global batch is split over ranks;
- norms are per sample (`grad.flatten(1)`), never over the whole batch;
- under fp16 AMP the critic output is scaled before autograd.grad (so small input gradients do not
  underflow) and the gradients are then multiplied by 1/scale: the penalty must see true
  gradients, or it explodes by scale^2 and the critic collapses.
The weight (lambda, gamma/2) is applied by the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gandist.config import LossConfig
from gandist.registry import Registry

Critic = Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor | None]]


def interpolate(real: Tensor, fake: Tensor, eps: Tensor) -> Tensor:
    """x_hat = eps * real + (1 - eps) * fake, one eps per sample, as a fresh leaf needing grad.

    The caller draws eps (B,) so it can slice it from a global-batch generator; detaching keeps
    the penalty's graph from reaching G or the data. Packed critics (model.pack=k) pass batches
    grouped as (B / k, k, ...) with eps (B / k, k): still one eps per sample, and the penalty's
    per-row norm is then per pack (training/critic_view.py).
    """
    if eps.dim() not in (1, 2) or eps.shape != real.shape[: eps.dim()]:
        raise ValueError(
            f"eps must have one weight per sample, shape {tuple(real.shape[:1])} (or (packs, k) "
            f"for grouped packs), got {tuple(eps.shape)}"
        )
    e = eps.to(real.dtype).view(*eps.shape, *([1] * (real.dim() - eps.dim())))
    x_hat = e * real.detach() + (1.0 - e) * fake.detach()
    return x_hat.detach().requires_grad_(True)


def _input_grad(critic: Critic, x: Tensor, y: Tensor | None, scaler: object | None) -> Tensor:
    """d sum_i D(x_i) / dx as a differentiable graph, with the AMP scale applied and removed."""
    if not x.requires_grad:
        raise ValueError(
            "the penalty input must require grad (use interpolate() or .requires_grad_())"
        )
    adv, _ = critic(x, y)
    out = adv.sum()
    scaled = scaler is not None and scaler.is_enabled()
    if scaled:
        out = scaler.scale(out)
    (grad,) = torch.autograd.grad(out, x, create_graph=True)
    if scaled:
        # Plain multiplication, not scaler.unscale_(): that acts on optimizer grads, not on these.
        grad = grad * (1.0 / scaler.get_scale())
    # Norms in at least float32: fp16/bf16 squares lose precision and can overflow.
    return grad.flatten(1).to(torch.promote_types(grad.dtype, torch.float32))


def gradient_penalty(
    critic: Critic,
    x_hat: Tensor,
    y: Tensor | None,
    *,
    one_sided: bool = False,
    scaler: object | None = None,
) -> tuple[Tensor, Tensor]:
    """WGAN-GP: mean_i (||grad D(x_hat_i)|| - 1)^2 (one-sided: relu(||.|| - 1)^2).

    Returns (penalty, detached mean gradient norm for logging). `scaler`: an enabled
    torch.amp.GradScaler under fp16 AMP, else None.
    """
    norms = _input_grad(critic, x_hat, y, scaler).norm(2, dim=1)
    excess = norms - 1.0
    if one_sided:
        excess = torch.relu(excess)
    return excess.pow(2).mean(), norms.detach().mean()


def r1_penalty(
    critic: Critic, real: Tensor, y: Tensor | None, *, scaler: object | None = None
) -> tuple[Tensor, Tensor]:
    """R1 (Mescheder et al. 2018): mean_i ||grad_x D(real_i)||^2; the caller multiplies by gamma/2.

    Returns (penalty, detached mean gradient norm).
    """
    x = real.detach().requires_grad_(True)
    sq = _input_grad(critic, x, y, scaler).pow(2).sum(dim=1)
    return sq.mean(), sq.detach().sqrt().mean()


@torch.no_grad()
def clip_weights_(module: nn.Module, c: float) -> None:
    """Clamp every parameter of `module` to [-c, c] in place (original WGAN).

    Call it on every rank after each critic step: clamping only on the main process would let
    the ranks' critics drift apart.
    """
    if c <= 0:
        raise ValueError(f"loss.clip_value must be > 0, got {c}")
    for p in module.parameters():
        p.clamp_(-c, c)


# ---------------------------------------------------------------- the registry the D step uses


PenaltyTerm = Callable[
    [Critic, Tensor, Tensor, "Tensor | None", "Tensor | None", "LossConfig", "object | None"],
    tuple[Tensor, dict[str, Tensor]],
]


@dataclass(frozen=True)
class Penalty:
    """A critic regulariser as the D step applies it.

    `term(D, real, fake, eps, y, loss_cfg, scaler)` returns the weighted loss term and its
    detached metrics; `after_step(D_plain, loss_cfg)` runs after every critic optimizer step on
    every rank; `needs_eps`: the step must receive per-sample interpolation weights.
    """

    term: PenaltyTerm | None = None
    after_step: Callable[[nn.Module, LossConfig], None] | None = None
    needs_eps: bool = False


def _gp_term(D, real, fake, eps, y, lc, scaler):  # noqa: ANN001 - see PenaltyTerm
    if eps is None:
        raise ValueError("loss.penalty=gp needs eps, the interpolation weights")
    gp, gnorm = gradient_penalty(
        D, interpolate(real, fake, eps), y, one_sided=lc.gp_one_sided, scaler=scaler
    )
    return lc.gp_weight * gp, {"d/gp": gp.detach(), "d/gp_grad_norm": gnorm}


def _r1_term(D, real, fake, eps, y, lc, scaler):  # noqa: ANN001 - see PenaltyTerm
    r1, gnorm = r1_penalty(D, real, y, scaler=scaler)
    return 0.5 * lc.r1_gamma * r1, {"d/r1": r1.detach(), "d/r1_grad_norm": gnorm}


def _clip_after(D: nn.Module, lc: LossConfig) -> None:
    clip_weights_(D, lc.clip_value)


PENALTIES: Registry[Penalty] = Registry("penalty")
PENALTIES.register("none")(Penalty())
PENALTIES.register("gp")(Penalty(term=_gp_term, needs_eps=True))
PENALTIES.register("r1")(Penalty(term=_r1_term))
PENALTIES.register("clip")(Penalty(after_step=_clip_after))
