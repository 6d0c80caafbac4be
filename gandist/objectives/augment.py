"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The critic sees T(x) instead of x, for real and generated images alike, in the D step and in the
G step. T is differentiable, so the generator's gradient flows back through it; the critic never
sees an unaugmented image, so it cannot tell "augmented" from "real" and the augmentation does not
leak into the generator's samples. This is the paper's recipe for small data sets.

`train.augment` lists the ops, applied in the order given (the reference code's order is
"color,translation,cutout"):
- translation: shift each image by whole pixels, independently per axis, by up to S//8 (S: the
  side) in either direction; the vacated border is 0 (mid-grey for images in [-1, 1]).
- cutout: set a square of half the side to 0; its centre is anywhere on the image, so the square
  may hang over an edge by up to half its side.
- color: brightness (x + U[-0.5, 0.5)), then saturation (channel mean m: m + (x - m) * U[0, 2)),
  then contrast (image mean m: m + (x - m) * U[0.5, 1.5)).
The ranges are the reference code's (github.com/mit-han-lab/data-efficient-gans); this module is
our own implementation.

`train.augment_aux` gives the ACGAN classifier a view of its own: a subset of those ops, with
the same per-sample draws (an image's shift is the one the real/fake score saw, only the ops
left out are skipped). Cutout blanks a quarter of the image, often a whole object, while the
classifier is still asked for its label; trained without it, D's body and classifier read real
scenes better (docs/experiments.md, "Classifier weight 40"). The default "same" keeps one view.

Randomness (docs/distributed-correctness.md §6): every op takes its random parameters as tensors,
one U[0, 1) draw per sample per parameter (`draw_params`). The trainer takes them from the global
batch's counter-based noise, like z and epsilon, so sample i's augmentation depends on (seed,
step, purpose, i) only: 1 and N processes augment every sample alike, and a resumed run needs no
saved RNG state. The functions here are otherwise pure: no global RNG, no host synchronisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

# op -> the names of its per-sample U[0, 1) parameters, in the order they are used
OPS: dict[str, tuple[str, ...]] = {
    "translation": ("y", "x"),
    "cutout": ("y", "x"),
    "color": ("brightness", "saturation", "contrast"),
}
TRANSLATION_RATIO = 1 / 8  # the largest shift, as a share of the side
CUTOUT_RATIO = 1 / 2  # the square's side, as a share of the image side

Params = dict[str, Tensor]  # "<op>/<parameter>" -> (B,) U[0, 1) draws


def parse_policy(text: str, key: str = "train.augment") -> tuple[str, ...]:
    """ "translation,cutout,color" -> ("translation", "cutout", "color"); "" -> () (off).

    Unknown or repeated ops are a ValueError that names `key` and the known ops.
    """
    ops = tuple(part.strip() for part in text.split(",") if part.strip())
    for op in ops:
        if op not in OPS:
            import difflib

            close = difflib.get_close_matches(op, list(OPS), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{key}: unknown augmentation {op!r}{hint} (known: {', '.join(OPS)}; a comma "
                "list such as translation,cutout,color, or empty for none)"
            )
    if len(set(ops)) != len(ops):
        raise ValueError(f"{key}: {text!r} names an augmentation twice")
    return ops


def aux_policy(text: str, policy: tuple[str, ...]) -> tuple[str, ...] | None:
    """train.augment_aux -> the ops of the classifier's view, in train.augment's order, or None
    when it is the real/fake score's own view ("same", or the same ops: no second forward).

    Ops outside `policy` are a ValueError naming both keys: the view reuses train.augment's
    per-sample draws, so it can only leave ops out.
    """
    if text.strip() == "same":
        return None
    ops = parse_policy(text, key="train.augment_aux")
    extra = [op for op in ops if op not in policy]
    if extra:
        raise ValueError(
            f"train.augment_aux: {', '.join(extra)} not in train.augment "
            f"({','.join(policy) or 'empty'}); the classifier's view reuses train.augment's "
            "draws and can only leave ops out: add it to train.augment, or set "
            'train.augment_aux to a subset of it ("" for clean images, "same" for one view)'
        )
    view = tuple(op for op in policy if op in ops)
    return None if view == policy else view


def check_data(policy: tuple[str, ...], kind: str) -> None:
    """DiffAugment transforms images; refuse it for point sets with the key to change."""
    if policy and kind != "image":
        raise ValueError(
            f"train.augment={','.join(policy)!r} transforms images, but the data is {kind!r}; "
            'set train.augment: ""'
        )


def param_names(policy: tuple[str, ...]) -> list[str]:
    """The "<op>/<parameter>" keys `augment` reads for `policy`."""
    return [f"{op}/{p}" for op in policy for p in OPS[op]]


def draw_params(policy: tuple[str, ...], uniform: Callable[[str], Tensor]) -> Params:
    """Every parameter `policy` needs, from `uniform(name)`: (B,) U[0, 1) draws for this rank's
    samples, one stream per name (the trainer's: GlobalNoise.uniform(step, f"{purpose}/{name}"))."""
    return {name: uniform(name) for name in param_names(policy)}


def _index(u: Tensor, n: int) -> Tensor:
    """U[0, 1) -> an integer in 0..n-1 (int64); a draw rounded up to 1.0 still lands on n-1."""
    return (u.double() * n).floor().long().clamp_(0, n - 1)


def _per_sample(v: Tensor, x: Tensor) -> Tensor:
    return v.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


# ---------------------------------------------------------------- the ops, given their parameters


def translate(x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """Shift image b by (dy[b], dx[b]) whole pixels (int64; + moves content down / right);
    pixels shifted in from outside are 0. Differentiable in x; no host synchronisation."""
    b, c, h, w = x.shape
    rows = torch.arange(h, device=x.device) - dy.to(x.device).view(-1, 1)  # (B, H) source rows
    cols = torch.arange(w, device=x.device) - dx.to(x.device).view(-1, 1)
    keep_r = (rows >= 0) & (rows < h)
    keep_c = (cols >= 0) & (cols < w)
    out = x.gather(2, rows.clamp(0, h - 1).view(b, 1, h, 1).expand(b, c, h, w))
    out = out.gather(3, cols.clamp(0, w - 1).view(b, 1, 1, w).expand(b, c, h, w))
    keep = keep_r.view(b, 1, h, 1) & keep_c.view(b, 1, 1, w)
    return out * keep.to(x.dtype)


def cut(x: Tensor, top: Tensor, left: Tensor, size_h: int, size_w: int) -> Tensor:
    """Zero the size_h x size_w square whose top-left corner is (top[b], left[b]) (int64, may be
    negative or reach past the edge: only the part on the image is cut)."""
    b, _, h, w = x.shape
    top, left = top.to(x.device).view(-1, 1), left.to(x.device).view(-1, 1)
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_r = (rows >= top) & (rows < top + size_h)
    in_c = (cols >= left) & (cols < left + size_w)
    hole = in_r.view(b, 1, h, 1) & in_c.view(b, 1, 1, w)
    return x * (~hole).to(x.dtype)


def brightness(x: Tensor, shift: Tensor) -> Tensor:
    """x + shift[b]."""
    return x + _per_sample(shift, x)


def saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Scale each pixel's deviation from its mean over channels by factor[b]."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * _per_sample(factor, x) + mean


def contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Scale each image's deviation from its mean (over channels and pixels) by factor[b]."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _per_sample(factor, x) + mean


# ---------------------------------------------------------------- from U[0, 1) draws


def random_translation(x: Tensor, uy: Tensor, ux: Tensor) -> Tensor:
    """Shifts uniform on -S//8..S//8 per axis (S: that axis's side)."""
    _, _, h, w = x.shape
    sy, sx = int(h * TRANSLATION_RATIO), int(w * TRANSLATION_RATIO)
    return translate(x, _index(uy, 2 * sy + 1) - sy, _index(ux, 2 * sx + 1) - sx)


def random_cutout(x: Tensor, uy: Tensor, ux: Tensor) -> Tensor:
    """A square of half the side, centred on a uniform pixel (for an odd square side: any pixel;
    for an even side also one past the last, so the square overhangs every edge alike)."""
    _, _, h, w = x.shape
    ch, cw = int(h * CUTOUT_RATIO), int(w * CUTOUT_RATIO)
    centre_y = _index(uy, h + 1 - ch % 2)
    centre_x = _index(ux, w + 1 - cw % 2)
    return cut(x, centre_y - ch // 2, centre_x - cw // 2, ch, cw)


def random_color(x: Tensor, ub: Tensor, us: Tensor, uc: Tensor) -> Tensor:
    x = brightness(x, ub - 0.5)
    x = saturation(x, us * 2.0)
    return contrast(x, uc + 0.5)


_APPLY: dict[str, Callable[..., Tensor]] = {
    "translation": random_translation,
    "cutout": random_cutout,
    "color": random_color,
}


def augment(x: Tensor, policy: tuple[str, ...], params: Params | None) -> Tensor:
    """T(x): the ops of `policy` in order, each with its per-sample parameters from `params`.
    An empty policy returns x itself. x: images (B, C, H, W)."""
    if not policy:
        return x
    if x.dim() != 4:
        raise ValueError(
            f"train.augment works on images (B, C, H, W), got a tensor of shape {tuple(x.shape)}"
        )
    if params is None:
        raise ValueError("train.augment is on but no augmentation parameters were drawn")
    for op in policy:
        x = _APPLY[op](x, *(params[f"{op}/{p}"] for p in OPS[op]))
    return x
