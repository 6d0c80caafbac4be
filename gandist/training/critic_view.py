"""What the critic judges in a step once DiffAugment and PacGAN packing are on, and the inputs a
gradient penalty needs to regularise exactly that.

- Augmentation (objectives/augment.py) happens here, per sample, before D; packing happens inside
  D (models/packing.py), after the labels join their samples.
- Penalties (objectives/penalties.py) take the gradient of D's summed output with respect to a
  leaf input and a norm per row of it. `penalty_inputs` hands them:
  * a critic that augments its input with the *real* batch's parameters before D: the penalty is
    the gradient of D(T(x)) with respect to the unaugmented x, through the augmentation D judged
    the reals with. This is how the paper's reference code takes R1 (StyleGAN2 + DiffAugment: the
    R1 gradient of D(DiffAugment(reals)) with respect to reals, in the same forward pass as the
    real logits); for WGAN-GP the interpolate x_hat_i = eps_i real_i + (1 - eps_i) fake_i goes
    through real_i's augmentation. D's input is the augmented interpolate; the gradient is with
    respect to the interpolate before augmentation, so it regularises the composite critic D o T
    that the losses train.
  * with packing, real, fake and eps grouped (packs, k, ...): the penalty interpolates per sample
    and its per-row norm is the norm over a whole pack, the packed critic's input.
With neither technique on, D and the tensors pass through untouched.
"""

from __future__ import annotations

from torch import Tensor

from gandist.models.packing import group, ungroup
from gandist.objectives.augment import Params, augment
from gandist.objectives.penalties import Critic


def penalty_inputs(
    D: Critic,
    real: Tensor,
    fake: Tensor,
    eps: Tensor | None,
    *,
    pack: int = 1,
    policy: tuple[str, ...] = (),
    params: Params | None = None,
) -> tuple[Critic, Tensor, Tensor, Tensor | None]:
    """(critic, real, fake, eps) for a penalty term (see the module docstring). `params`: the
    real batch's augmentation parameters (per sample, like real)."""
    if pack == 1 and not policy:
        return D, real, fake, eps

    def critic(x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if pack > 1:
            x = ungroup(x)
        return D(augment(x, policy, params), y)

    if pack > 1:
        real, fake = group(real, pack), group(fake, pack)
        eps = None if eps is None else group(eps, pack)
    return critic, real, fake, eps
