"""Sample-quality metrics computed from features, so any extractor plugs in.

FID and KID come from torchmetrics, precision/recall/density/coverage from `prdc` (the
reference implementation of Naeem et al., 2020), label agreement from torchmetrics' classification
functions. Everything takes finished feature matrices, so the caller decides where they came
from (ranks gathered, a cache of real features) and the functions stay pure.
"""

from __future__ import annotations

import contextlib
import io
import math
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
    if label_type == "class":  # an exact ratio of counts, as below: 19 of 20 is 0.95, not float32's
        hits = (logits.argmax(dim=1) == y.long()).sum()
        return {"accuracy": float(hits) / max(len(y), 1)}
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


def _label_groups(y: torch.Tensor, label_type: str, num_labels: int) -> torch.Tensor:
    """(N, K) bool membership: sample i asks for label k (its class, or one of its labels)."""
    if label_type == "class":
        return torch.nn.functional.one_hot(y.long().view(-1), num_labels).bool()
    if label_type == "multi":
        return y.float() > 0.5
    raise ValueError(f"unknown label type {label_type!r} (class or multi)")


def per_label_accuracy(logits: torch.Tensor, y: torch.Tensor, label_type: str) -> torch.Tensor:
    """(K,) share of the samples generated for label k in which the evaluator finds label k;
    NaN for a label no sample asked for.

    class: the arg-max is k. multi: k is among the evaluator's top m for a sample with m labels
    (iCLEVR's accuracy, split by label), so the labels' hits add up to `label_agreement`'s.
    A generator that draws a 4 when asked for a 0 scores 0 at label 0 however well the other
    labels do, which the overall accuracy averages away.
    """
    num_labels = logits.shape[1]
    groups = _label_groups(y, label_type, num_labels)
    if label_type == "class":
        hit = torch.nn.functional.one_hot(logits.argmax(dim=1), num_labels).bool()
    else:
        m = groups.sum(dim=1)
        order = logits.argsort(dim=1, descending=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(num_labels).expand_as(order))
        hit = ranks < m[:, None]
    asked = groups.sum(dim=0).double()
    found = (hit & groups).sum(dim=0).double()
    return torch.where(asked > 0, found / asked.clamp(min=1), torch.full_like(asked, math.nan))


def predicted_for_label(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(K,) for class labels: the class the evaluator sees most often in samples generated for
    label k (-1 when none was asked for), so "label 0 draws a 4" reads off directly."""
    num_labels = logits.shape[1]
    y = y.long().view(-1)
    counts = torch.zeros(num_labels, num_labels, dtype=torch.long)
    counts.index_put_((y, logits.argmax(dim=1)), torch.ones_like(y), accumulate=True)
    return torch.where(counts.sum(dim=1) > 0, counts.argmax(dim=1), torch.full_like(y[:1], -1))


def mean_pairwise_distance(features: torch.Tensor) -> float:
    """Mean Euclidean distance over distinct pairs of rows (NaN with fewer than two rows)."""
    n = len(features)
    if n < 2:
        return math.nan
    f = features.double()
    # cdist's matrix-product form: fast, and identical rows come out ~1e-8 apart, not 0
    return float(torch.cdist(f, f).sum() / (n * (n - 1)))


# Side of the pixel thumbnails that `cond_pixel_diversity` compares: small enough that pixel
# noise averages out, large enough that an object moved by a few pixels shows.
THUMBNAIL = 16


def thumbnails(images: torch.Tensor, size: int = THUMBNAIL) -> torch.Tensor:
    """(N, C*size*size) area-averaged thumbnails of images (N, C, H, W) in [-1, 1], float32.

    A classifier's features are built to ignore where an object sits, so a generator that draws
    the same layout for every z can look diverse in them; its thumbnails do not."""
    x = torch.nn.functional.adaptive_avg_pool2d(images.float(), min(size, images.shape[-1]))
    return x.flatten(1)


def label_diversity(
    real: torch.Tensor,
    real_y: torch.Tensor,
    fake: torch.Tensor,
    fake_y: torch.Tensor,
    label_type: str,
    num_labels: int,
    max_per_condition: int = 1000,
) -> torch.Tensor:
    """(K,) diversity within each label: how far apart the generated samples of one condition
    are (mean pairwise feature distance) over how far apart the real samples of that condition
    are (NaN where no condition of label k has two samples on both sides).

    0: the generator draws one image per condition whatever z is; about 1: its samples spread
    like the real ones (above 1: more spread, e.g. noise). A condition is a class, or for
    multi-label data a whole label set: a generator that draws one fixed scene for "red cube,
    blue sphere" must score 0 there, which grouping by each label alone would hide (the other
    objects of the scenes containing "red cube" vary). Label k pools the conditions that contain
    it, each weighted by its number of generated pairs. At most `max_per_condition` samples per
    condition enter (the first ones, so the value is deterministic): the mean over a million
    pairs is already precise and the cost stays quadratic in that cap.
    """
    real_groups = _label_groups(real_y, label_type, num_labels)
    fake_groups = _label_groups(fake_y, label_type, num_labels)
    sets, ids = torch.unique(torch.cat([real_groups, fake_groups]), dim=0, return_inverse=True)
    real_ids, fake_ids = ids[: len(real_groups)], ids[len(real_groups) :]
    fake_sum = torch.zeros(num_labels, dtype=torch.float64)
    real_sum = torch.zeros(num_labels, dtype=torch.float64)
    for c in range(len(sets)):
        r = real[real_ids == c][:max_per_condition]
        f = fake[fake_ids == c][:max_per_condition]
        spread = mean_pairwise_distance(r)
        if math.isnan(spread) or len(f) < 2:
            continue
        pairs = len(f) * (len(f) - 1)
        fake_sum[sets[c]] += pairs * mean_pairwise_distance(f)
        real_sum[sets[c]] += pairs * spread
    out = torch.full((num_labels,), math.nan, dtype=torch.float64)
    measured = real_sum > 0
    out[measured] = fake_sum[measured] / real_sum[measured]
    return out


def conditional_scores(
    real: torch.Tensor,
    real_y: torch.Tensor,
    fake: torch.Tensor,
    fake_y: torch.Tensor,
    label_type: str,
    num_labels: int,
    fake_logits: torch.Tensor | None = None,
    real_pixels: torch.Tensor | None = None,
    fake_pixels: torch.Tensor | None = None,
) -> dict[str, float]:
    """Everything about how a conditional generator follows its labels, as flat numbers.

    With evaluator logits (an extractor that judges these labels): cond_accuracy (and cond_f1
    for multi-label), cond_accuracy_min (the worst label) and cond_label_accuracy/<k>; for class
    labels also cond_label_predicted/<k>, the class most often seen when k was asked for. With
    any extractor: cond_diversity (mean over labels of `label_diversity`), cond_diversity_min and
    cond_label_diversity/<k>. With `thumbnails` of both sides: cond_pixel_diversity and
    cond_pixel_diversity_min, the same ratio in pixels, which sees a layout that ignores z.
    Labels no sample asked for are left out.
    """
    out: dict[str, float] = {}
    if fake_logits is not None:
        out.update(
            {f"cond_{k}": v for k, v in label_agreement(fake_logits, fake_y, label_type).items()}
        )
        acc = per_label_accuracy(fake_logits, fake_y, label_type)
        present = ~acc.isnan()
        if present.any():
            out["cond_accuracy_min"] = float(acc[present].min())
        out.update(
            {f"cond_label_accuracy/{k}": float(acc[k]) for k in range(num_labels) if present[k]}
        )
        if label_type == "class":
            pred = predicted_for_label(fake_logits, fake_y)
            out.update(
                {
                    f"cond_label_predicted/{k}": float(pred[k])
                    for k in range(num_labels)
                    if pred[k] >= 0
                }
            )
    div = label_diversity(real, real_y, fake, fake_y, label_type, num_labels)
    out.update(_mean_and_min("cond_diversity", div))
    out.update({f"cond_label_diversity/{k}": float(v) for k, v in enumerate(div) if not v.isnan()})
    if real_pixels is not None and fake_pixels is not None:
        div = label_diversity(real_pixels, real_y, fake_pixels, fake_y, label_type, num_labels)
        out.update(_mean_and_min("cond_pixel_diversity", div))
    return out


def _mean_and_min(name: str, per_label: torch.Tensor) -> dict[str, float]:
    """{name: mean, name_min: min} over the labels that were measured (not NaN); {} if none."""
    measured = per_label[~per_label.isnan()]
    if not len(measured):
        return {}
    return {name: float(measured.mean()), f"{name}_min": float(measured.min())}
