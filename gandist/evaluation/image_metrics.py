"""Sample-quality metrics computed from features, so any extractor plugs in.

FID and KID come from torchmetrics, precision/recall/density/coverage from `prdc` (the
reference implementation of Naeem et al., 2020), label agreement from torchmetrics' classification
functions. Everything takes finished feature matrices, so the caller decides where they came
from (ranks gathered, a cache of real features) and the functions stay pure.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
from torch import nn


class FeaturesIn(nn.Module):
    """Identity "extractor" for torchmetrics: the metrics are fed features, not images."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def fid_kid(real: torch.Tensor, fake: torch.Tensor, kid_subsets: int = 50) -> dict[str, float]:
    """FID, and KID mean/std over random subsets, between two (N, D) feature sets."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if min(len(real), len(fake)) < 2:
        raise ValueError("FID/KID need at least 2 real and 2 generated samples")
    real, fake = real.double(), fake.double()
    dim = real.shape[1]
    # sync_on_compute off: features are already gathered from every rank.
    fid = FrechetInceptionDistance(feature=FeaturesIn(dim), sync_on_compute=False)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    # 1000 per subset as usual, but at most half the smaller set so the subsets differ (with
    # subsets as large as the sets, every subset is the whole set and kid_std is always 0).
    subset = max(2, min(1000, min(len(real), len(fake)) // 2))
    with warnings.catch_warnings():  # "saves all features": these are in memory already
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        kid = KernelInceptionDistance(
            feature=FeaturesIn(dim), subsets=kid_subsets, subset_size=subset, sync_on_compute=False
        )
    kid.update(real, real=True)
    kid.update(fake, real=False)
    with torch.random.fork_rng():  # KID draws its subsets from the global generator
        torch.manual_seed(0)
        kid_mean, kid_std = kid.compute()
    return {
        "fid": float(fid.compute()),
        "kid_mean": float(kid_mean),
        "kid_std": float(kid_std),
    }


def prdc(real: torch.Tensor, fake: torch.Tensor, nearest_k: int = 5) -> dict[str, float]:
    """Improved precision/recall (Kynkaanniemi et al.) and density/coverage (Naeem et al.)."""
    from prdc import compute_prdc

    if min(len(real), len(fake)) <= nearest_k:
        raise ValueError(
            f"precision/recall need more than eval.nearest_k={nearest_k} samples per set"
        )
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the sample counts
        out = compute_prdc(real.double().numpy(), fake.double().numpy(), nearest_k=nearest_k)
    return {k: float(v) for k, v in out.items()}


def label_agreement(logits: torch.Tensor, y: torch.Tensor, label_type: str) -> dict[str, float]:
    """How often the evaluator recognises the condition a sample was generated for.

    class: accuracy of the arg-max. multi: iCLEVR's accuracy (for a sample with k labels, the
    share of them among the evaluator's top k; summed over samples) and the micro F1 of the
    thresholded sigmoid (p > 0.5).
    """
    if label_type == "class":
        from torchmetrics.functional.classification import multiclass_accuracy

        acc = multiclass_accuracy(logits, y.long(), num_classes=logits.shape[1], average="micro")
        return {"accuracy": float(acc)}
    if label_type != "multi":
        raise ValueError(f"label_agreement: unknown label type {label_type!r}")
    from torchmetrics.functional.classification import multilabel_f1_score

    y = y.float()
    k = y.sum(dim=1).long()
    order = logits.argsort(dim=1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(logits.shape[1]).expand_as(order))
    hits = ((ranks < k[:, None]) & (y > 0.5)).sum()
    f1 = multilabel_f1_score(
        logits.sigmoid(), y.long(), num_labels=logits.shape[1], average="micro"
    )
    return {"accuracy": float(hits) / max(float(k.sum()), 1.0), "f1": float(f1)}
