"""PacGAN packing (Lin et al. 2018, "PacGAN: The power of two samples in generative adversarial
networks"): the discriminator judges packs of k samples at once, all real or all generated.

`model.pack: k` (default 1, off). A pack is k consecutive samples of the batch concatenated along
the first feature axis: channels for images (D's first conv takes k x C channels), features for
MLPs (k x the flattened sample). D returns one adversarial logit per pack, (B / k,), so a
generator that collapses onto few modes is easy to spot in a pack. The losses are means over
logits and need nothing else.

Where the packing happens: inside the discriminator, after a conditional critic has joined each
sample's label to it (`model.condition: concat`: the label map / label embedding travels with its
sample into the pack) and before its first layer. So D keeps its contract D(x (B, ...), y (B,))
and everything outside it (augmentation, penalties, the steps) works per sample.

Conditioning:
- none, concat: supported, as above.
- acgan: supported; the auxiliary head sees the pack and predicts every member's label (k x K
  logits per pack, returned as (B, K) in sample order), so the classifier loss is unchanged.
- project: refused. A projection critic adds <embed(y), h> for *one* label per input; a pack has
  k labels and no canonical way to project them.

Distributed (docs/distributed-correctness.md §7): packs must not straddle ranks, so each rank's
share of the global batch (train.batch_size / processes) must be a multiple of k. Then pack j of
the global batch holds samples jk..jk+k-1 on any number of processes.

Penalties: a packed critic's input is the pack, so WGAN-GP and R1 take the gradient norm per pack
(interpolate per sample, then pack; R1 on the packed reals). `group` shapes a batch as
(packs, k, ...) so that the penalty's per-row norm is exactly that (training.critic_view).
"""

from __future__ import annotations

import torch
from torch import Tensor

from gandist.config import ModelConfig
from gandist.config_rules import batch_share_fix


def check_pack(cfg: ModelConfig) -> int:
    """model.pack as an int >= 1; a ValueError naming the keys for what packing cannot do."""
    k = cfg.pack
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"model.pack must be an integer >= 1 (1: no packing), got {k!r}")
    if k > 1 and cfg.projects_labels:
        raise ValueError(
            f"model.pack={k} cannot be combined with a projection critic (model.condition="
            "project or model.aux_project): it scores one label per input and a pack holds k of "
            "them. Use model.condition: concat or acgan (without aux_project) with packing, or "
            "model.pack: 1"
        )
    return k


def check_pack_batch(pack: int, batch_size: int, world_size: int) -> None:
    """Every rank's share of the global batch must be whole packs (packs never straddle ranks)."""
    if pack <= 1:
        return
    fix = batch_share_fix(pack, batch_size, world_size, "model.pack")
    if fix:
        raise ValueError(
            f"model.pack={pack} needs every process's share of train.batch_size to be a multiple "
            f"of model.pack: {fix}, or change model.pack"
        )


def pack(x: Tensor, k: int) -> Tensor:
    """(B, F, ...) -> (B / k, k * F, ...): consecutive samples concatenated along axis 1.

    For a contiguous batch this is a view; a channels_last image batch stays channels_last.
    """
    if k == 1:
        return x
    b = x.shape[0]
    if b % k:
        raise ValueError(
            f"model.pack={k}: a batch of {b} samples is not whole packs (check_pack_batch)"
        )
    out = x.reshape(b // k, k * x.shape[1], *x.shape[2:])
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=_CL):
        out = out.contiguous(memory_format=_CL)
    return out


def unpack_rows(v: Tensor, k: int) -> Tensor:
    """(B / k, k * K) per-pack outputs for every member -> (B, K) in sample order."""
    if k == 1:
        return v
    return v.reshape(v.shape[0] * k, v.shape[1] // k)


def group(x: Tensor, k: int) -> Tensor:
    """(B, ...) -> (B / k, k, ...), a view: row j holds pack j's samples, so a per-row norm of a
    gradient with respect to it is the norm over the whole pack."""
    return x.reshape(x.shape[0] // k, k, *x.shape[1:])


def ungroup(x: Tensor) -> Tensor:
    """The inverse of `group`: (P, k, ...) -> (P * k, ...)."""
    return x.flatten(0, 1)


_CL = torch.channels_last
