"""One discriminator update and one generator update, written out as explicit phases.

The DDP/AMP discipline lives here (docs/distributed-correctness.md §1-4): D and G are separate DDP
modules; the penalty is taken through the wrapped critic with `autograd.grad` on the (AMP-scaled)
output and then folded into the one ordinary backward that fires DDP's allreduce; weight clipping
runs after every D step on every rank; during the G step D is frozen and not synchronised, so a G
step can neither change D nor leave stale gradients on it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.optimizer import AcceleratedOptimizer
from accelerate.utils import DistributedType, is_compiled_module
from torch import nn

from gandist.config import LossConfig
from gandist.objectives.augment import Params, augment
from gandist.objectives.losses import (
    aux_loss,
    aux_losses,
    capped_mean,
    split_twin,
    wasserstein_estimate,
)
from gandist.objectives.mode_seeking import mode_seeking_loss, paired_conditions
from gandist.objectives.penalties import PENALTIES, Penalty
from gandist.training.critic_view import penalty_inputs


@dataclass
class GANParts:
    """The prepared (possibly DDP-wrapped) networks and optimizers of a run."""

    accelerator: Accelerator
    G: nn.Module
    D: nn.Module
    opt_g: Any
    opt_d: Any
    loss: Any  # an adversarial loss from objectives.losses.LOSSES
    loss_cfg: LossConfig
    label_type: str
    # Techniques (issue #14): D's pack size (model.pack; the packing is inside D, the penalty
    # needs it for its per-pack norm) and the DiffAugment ops (train.augment, parsed).
    pack: int = 1
    augment: tuple[str, ...] = ()
    # train.augment_aux: the ACGAN classifier's own view (a subset of `augment`, same draws);
    # None: it reads the real/fake score's view, in the same forward.
    augment_aux: tuple[str, ...] | None = None
    # TAC-GAN (model.aux_twin): D's aux logits end with a twin classifier's.
    twin: bool = False
    # Derived once here, not per step (see __post_init__).
    penalty: Penalty = field(init=False, repr=False)
    G_plain: nn.Module = field(init=False, repr=False)
    D_plain: nn.Module = field(init=False, repr=False)
    opt_g_direct: Any = field(init=False, repr=False)
    opt_d_direct: Any = field(init=False, repr=False)
    plain_backward: bool = field(init=False, repr=False)
    ddp: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # accelerate's unwrap_model probes for optional packages on every call (importlib
        # find_spec, a stat per sys.path entry); the unwrapped modules never change, so unwrap
        # once. `dataclasses.replace(parts, D=...)` runs this again.
        # Plain also of torch.compile (accelerate's dynamo backend): exports, the EMA copy and
        # checkpoint checks need the module's own parameter names, not "_orig_mod.*".
        self.G_plain = _plain(self.accelerator, self.G)
        self.D_plain = _plain(self.accelerator, self.D)
        self.penalty = PENALTIES.get(self.loss_cfg.penalty)
        self.opt_g_direct = _direct(self.opt_g)
        self.opt_d_direct = _direct(self.opt_d)
        acc = self.accelerator
        # accelerator.backward divides the loss by gradient_accumulation_steps (an extra op and
        # autograd node per backward) before loss.backward(); with no scaler, no accumulation
        # and a plain distributed type that is exactly loss.backward().
        self.plain_backward = (
            acc.scaler is None
            and acc.gradient_accumulation_steps == 1
            and acc.distributed_type in _PLAIN
        )
        self.ddp = acc.use_distributed  # else accelerator.no_sync is a null context


def _plain(acc: Accelerator, model: nn.Module) -> nn.Module:
    """The module under DDP and torch.compile's wrapper (accelerate >= 1.0 keeps the latter)."""
    model = acc.unwrap_model(model)
    return model._orig_mod if is_compiled_module(model) else model


def backward(parts: GANParts, loss: torch.Tensor) -> None:
    if parts.plain_backward:
        loss.backward()
    else:
        parts.accelerator.backward(loss)


_PLAIN = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)


def _direct(opt: Any) -> Any:
    """The optimizer to call zero_grad/step on: the torch optimizer inside accelerate's wrapper
    when no GradScaler is involved, else the wrapper itself.

    AcceleratedOptimizer.step checks twice per call whether the optional package lomo_optim is
    installed (importlib find_spec) and zero_grad inspects a signature each call: about 0.25 ms
    per optimizer step on a 2-core VM, most of the gap between a small DCGAN step and a bare
    PyTorch loop (docs/performance.md). Without a scaler and without gradient accumulation
    (gandist never accumulates: one backward per optimizer step) the wrapper's step and zero_grad
    are exactly the wrapped optimizer's. fp16 keeps the wrapper: it runs scaler.step/update and
    records skipped steps.
    """
    if (
        isinstance(opt, AcceleratedOptimizer)
        and opt.scaler is None
        and opt.accelerator_state.distributed_type in _PLAIN  # XLA/DeepSpeed steps differ
    ):
        return opt.optimizer
    return opt


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """Logits for the loss in float32 or wider: upcasts fp16/bf16, never downcasts float64."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def grad_norm(module: nn.Module, scaler: Any) -> torch.Tensor:
    """L2 norm of the module's (allreduced) gradients, without the fp16 loss scale."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.nn.utils.get_total_norm(grads).detach()
    if scaler is not None and scaler.is_enabled():
        norm = norm / scaler.get_scale()
    return norm


def _cond(parts: GANParts, y: torch.Tensor) -> torch.Tensor | None:
    return None if parts.label_type == "none" else y


def _aux_view(
    parts: GANParts, x: torch.Tensor, cond: torch.Tensor | None, params: Params | None
) -> torch.Tensor:
    """D's classifier logits on train.augment_aux's view of x: a second forward through the
    same (wrapped) D, whose real/fake score is not used; the draws are the batch's own."""
    assert parts.augment_aux is not None
    _, aux = parts.D(augment(x, parts.augment_aux, params), cond)
    return aux


def discriminator_step(
    parts: GANParts,
    real: torch.Tensor,
    y: torch.Tensor,
    z: torch.Tensor,
    eps: torch.Tensor | None,
    *,
    track: bool = True,
    aug: tuple[Params, Params] | None = None,
) -> dict[str, torch.Tensor]:
    """One critic update on this rank's slice; returns detached metrics (no host sync).

    `eps` (per-sample interpolation weights) is needed only by penalties that say so
    (`needs_eps`). `track`: also return the scores, the Wasserstein estimate and the gradient
    norm, for a step that will be logged (the norm costs a reduction); d/loss always comes back.
    `aug`: the real and the fake batch's DiffAugment parameters when train.augment is on; the
    penalty goes through the real batch's augmentation (training/critic_view.py).
    """
    acc, D, lc = parts.accelerator, parts.D, parts.loss_cfg
    cond = _cond(parts, y)
    aug_real, aug_fake = aug if aug is not None else (None, None)
    with torch.no_grad():
        fake = parts.G(z, cond)
    real_out, real_aux = D(augment(real, parts.augment, aug_real), cond)
    fake_out, fake_aux = D(augment(fake, parts.augment, aug_fake), cond)
    if parts.augment_aux is not None and real_aux is not None:  # the classifier's own view
        real_aux = _aux_view(parts, real, cond, aug_real)
        if lc.aux_fake or parts.twin:
            fake_aux = _aux_view(parts, fake, cond, aug_fake)
    real_out, fake_out = _at_least_fp32(real_out), _at_least_fp32(fake_out)
    loss = parts.loss.d(real_out, fake_out)
    metrics: dict[str, torch.Tensor] = {}
    if track:
        metrics["d/loss_adv"] = loss.detach()
        metrics["d/real_score"] = real_out.detach().mean()
        metrics["d/fake_score"] = fake_out.detach().mean()
        metrics["d/wasserstein"] = wasserstein_estimate(real_out.detach(), fake_out.detach())
    if real_aux is not None and fake_aux is not None:
        real_cls, _ = split_twin(_at_least_fp32(real_aux), parts.twin)
        fake_cls, fake_twin = split_twin(_at_least_fp32(fake_aux), parts.twin)
        aux = aux_loss(real_cls, y, parts.label_type)
        if lc.aux_fake:
            aux = aux + aux_loss(fake_cls, y, parts.label_type)
        loss = loss + lc.aux_weight * aux
        metrics["d/loss_aux"] = aux.detach()
        if fake_twin is not None:  # the twin learns the labels G was asked for, from its images
            twin = aux_loss(fake_twin, y, parts.label_type)
            loss = loss + lc.aux_weight * lc.twin_weight * twin
            metrics["d/loss_twin"] = twin.detach()
    penalty = parts.penalty
    if penalty.term is not None:
        critic, p_real, p_fake, p_eps = penalty_inputs(
            D, real, fake, eps, pack=parts.pack, policy=parts.augment, params=aug_real
        )
        term, extra = penalty.term(critic, p_real, p_fake, p_eps, cond, lc, acc.scaler)
        loss = loss + term
        metrics.update(extra)
    parts.opt_d_direct.zero_grad(set_to_none=True)
    backward(parts, loss)
    if track:
        metrics["d/grad_norm"] = grad_norm(parts.D_plain, acc.scaler)
    parts.opt_d_direct.step()
    if penalty.after_step is not None:
        penalty.after_step(parts.D_plain, lc)
    metrics["d/loss"] = loss.detach()
    return metrics


def generator_step(
    parts: GANParts,
    y: torch.Tensor,
    z: torch.Tensor,
    *,
    track: bool = True,
    aug: Params | None = None,
) -> dict[str, torch.Tensor]:
    """One generator update through a frozen, unsynchronised critic (`track` as for D; `aug`:
    the fake batch's DiffAugment parameters when train.augment is on)."""
    acc, D = parts.accelerator, parts.D
    seeking = parts.loss_cfg.mode_seeking
    if seeking > 0:
        y = paired_conditions(y)
    cond = _cond(parts, y)
    d_plain = parts.D_plain
    d_plain.requires_grad_(False)
    try:
        with acc.no_sync(D) if parts.ddp else contextlib.nullcontext():
            fake = parts.G(z, cond)
            fake_out, fake_aux = D(augment(fake, parts.augment, aug), cond)
            if parts.augment_aux is not None and fake_aux is not None:
                fake_aux = _aux_view(parts, fake, cond, aug)
            loss = parts.loss.g(_at_least_fp32(fake_out))
            metrics = {"g/loss_adv": loss.detach()} if track else {}
            if fake_aux is not None:
                weight = parts.loss_cfg.aux_weight
                fake_cls, fake_twin = split_twin(_at_least_fp32(fake_aux), parts.twin)
                per = aux_losses(fake_cls, y, parts.label_type)
                aux = per.mean()
                conf = parts.loss_cfg.aux_g_confidence
                term = capped_mean(per, conf) if conf else aux
                loss = loss + weight * term
                metrics["g/loss_aux"] = aux.detach()  # uncapped: comparable across settings
                if fake_twin is not None:  # TAC-GAN: G maximises the twin's loss
                    twin = aux_loss(fake_twin, y, parts.label_type)
                    loss = loss - weight * parts.loss_cfg.twin_weight * twin
                    metrics["g/loss_twin"] = twin.detach()
            if seeking > 0:
                ms = mode_seeking_loss(_at_least_fp32(fake), _at_least_fp32(z))
                loss = loss + seeking * ms
                metrics["g/mode_seeking"] = ms.detach()
            parts.opt_g_direct.zero_grad(set_to_none=True)
            backward(parts, loss)
            if track:
                metrics["g/grad_norm"] = grad_norm(parts.G_plain, acc.scaler)
            parts.opt_g_direct.step()
    finally:
        d_plain.requires_grad_(True)
    metrics["g/loss"] = loss.detach()
    return metrics
