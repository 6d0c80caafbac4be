"""Procedural multi-label scenes in the spirit of iCLEVR, rendered on the fly with numpy.

Why procedural: a conditional GAN on multi-hot labels needs a data set whose labels are exactly
right and that needs no download, so CI and laptops can exercise the `multi` label path end to end.

Each image shows 1-3 objects on a plain light background; each object is a (colour, shape) pair,
no pair twice in one image, positions rejection-sampled so objects barely overlap. The 24 labels
use iCLEVR's names and this order (colour major)::

    for colour in COLOURS: for shape in SHAPES:  ->  "gray cube", "gray sphere", "gray cylinder",
                                                     "red cube", ..., "yellow cylinder"

so label index = COLOURS.index(colour) * 3 + SHAPES.index(shape).

Sample i depends only on (seed, i), through its own numpy Generator: asking for 2N samples gives
the same first N, and any shard can be regenerated in isolation.
"""

from __future__ import annotations

import math

import numpy as np

from gandist.config import DataConfig
from gandist.data.base import SourceData, generated_rgb_source
from gandist.data.keys import DEFAULT_IMAGE_SIZES

COLOURS: tuple[str, ...] = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
SHAPES: tuple[str, ...] = ("cube", "sphere", "cylinder")
LABEL_NAMES: tuple[str, ...] = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)
NUM_LABELS = len(LABEL_NAMES)

# CLEVR's own RGB values for its colour names.
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
BACKGROUND_RGB = (228, 228, 224)
DEFAULT_SIZE = DEFAULT_IMAGE_SIZES["shapes"]
DEFAULT_N = 5000
MIN_SIZE = 16

_R_RANGE = (0.12, 0.17)  # object "radius" as a fraction of the image side
_MIN_GAP = 0.95  # centres at least this times (r_i + r_j) apart: at most a slight touch
_LIGHT_NORM = math.sqrt(0.45**2 + 0.55**2 + 0.70**2)
_LIGHT = (-0.45 / _LIGHT_NORM, -0.55 / _LIGHT_NORM, 0.70 / _LIGHT_NORM)  # unit, from upper left


def label_index(colour: str, shape: str) -> int:
    """Index of "colour shape" in LABEL_NAMES."""
    return COLOURS.index(colour) * len(SHAPES) + SHAPES.index(shape)


def sample_labels(rng: np.random.Generator) -> list[int]:
    """1-3 distinct label indices."""
    n = int(rng.integers(1, 4))
    return sorted(int(v) for v in rng.choice(NUM_LABELS, size=n, replace=False))


def place_objects(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) rows of (cx, cy, r) in unit image coordinates, rejection-sampled to not overlap."""
    lo, hi = _R_RANGE
    for attempt in range(1000):
        shrink = 1.0 if attempt < 200 else 0.7  # practically never needed for n <= 3
        r = rng.uniform(lo, hi, n) * shrink
        c = rng.uniform(r[:, None] + 0.02, 1.0 - r[:, None] - 0.02, (n, 2))
        rows = [(float(x), float(y), float(rad)) for (x, y), rad in zip(c, r, strict=True)]
        if all(
            math.hypot(xi - xj, yi - yj) >= _MIN_GAP * (ri + rj)
            for i, (xi, yi, ri) in enumerate(rows)
            for (xj, yj, rj) in rows[i + 1 :]
        ):
            return np.array(rows)
    raise RuntimeError(f"could not place {n} objects without overlap")  # pragma: no cover


def _shape_mask_and_shade(
    shape: str, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Coverage mask, colour multiplier and white highlight on object-normalised coordinates.

    u (1, W) and v (H, 1) are offsets from the object centre in units of its radius (v grows
    downwards); broadcasting keeps the per-axis work 1-D.
    Silhouettes differ on purpose: square (cube), disc (sphere), tall rounded-end rectangle
    (cylinder), so a generator must get the shape right, not just the colour.
    """
    if shape == "cube":
        a = 0.85
        mask = (np.abs(u) <= a) & (np.abs(v) <= a)
        top = v < -a + 0.35  # lit top face
        shade = np.where(top, 1.2, 1.0 - 0.18 * (u + a) / (2 * a))
        return mask, shade, None
    if shape == "sphere":
        rr = u * u + v * v
        mask = rr <= 1.0
        nz = np.sqrt(np.clip(1.0 - rr, 0.0, 1.0))
        lam = np.clip(u * _LIGHT[0] + v * _LIGHT[1] + nz * _LIGHT[2], 0.0, 1.0)
        lam8 = np.square(np.square(np.square(lam)))
        return mask, 0.35 + 0.8 * lam, 0.55 * lam8 * lam8 * lam8  # highlight: lam ** 24
    # cylinder: upright, body plus elliptic top and bottom caps
    hw, hh, ey = 0.75, 1.0, 0.25
    body = (np.abs(u) <= hw) & (np.abs(v) <= hh - ey)
    cap_u = (u / hw) ** 2
    top = cap_u + ((v + (hh - ey)) / ey) ** 2 <= 1.0
    bottom = cap_u + ((v - (hh - ey)) / ey) ** 2 <= 1.0
    mask = body | top | bottom
    side = 0.55 + 0.55 * np.sqrt(np.clip(1.0 - cap_u, 0.0, 1.0)) * (1.0 - 0.5 * (u + hw) / hw)
    shade = np.where(top, 1.2, side)
    return mask, shade, None


def _supersampling(size: int) -> int:
    return 4 if size <= 128 else 2


def render_objects(labels: list[int], placements: np.ndarray, size: int) -> np.ndarray:
    """Draw objects at given (cx, cy, r) unit-coordinate placements; (size, size, 3) uint8.

    Each object is rasterised only inside its bounding box, at 2-4x supersampling, and
    alpha-composited back to front (larger cy = nearer = drawn later). Coverage is the mean of
    the sub-samples, which is what gives clean antialiased edges at 32 px.
    """
    if size < MIN_SIZE:
        raise ValueError(f"shapes: image size {size} too small (minimum {MIN_SIZE})")
    ss = _supersampling(size)
    img = np.empty((3, size, size), np.float32)
    img[:] = (np.asarray(BACKGROUND_RGB, np.float32) / 255.0)[:, None, None]
    order = np.argsort(placements[:, 1], kind="stable")
    for k in order:
        label = labels[k]
        colour = [c / 255.0 for c in COLOUR_RGB[COLOURS[label // len(SHAPES)]]]
        shape = SHAPES[label % len(SHAPES)]
        cx, cy, r = (float(v) * size for v in placements[k])
        x0, x1 = max(int(np.floor(cx - r - 1)), 0), min(int(np.ceil(cx + r + 1)), size)
        y0, y1 = max(int(np.floor(cy - r - 1)), 0), min(int(np.ceil(cy + r + 1)), size)
        if x1 <= x0 or y1 <= y0:
            continue
        h, w = y1 - y0, x1 - x0
        xs = ((x0 + (np.arange(w * ss, dtype=np.float32) + 0.5) / ss - cx) / r)[None, :]
        ys = ((y0 + (np.arange(h * ss, dtype=np.float32) + 0.5) / ss - cy) / r)[:, None]
        mask, shade, spec = _shape_mask_and_shade(shape, xs, ys)
        # Channel-first planes keep every numpy op on contiguous 2-D arrays (fast); plane 3 is
        # coverage, planes 0-2 premultiplied colour.
        planes = np.empty((4, h * ss, w * ss), np.float32)
        cover = planes[3]
        cover[:] = mask
        for c in range(3):
            p = planes[c]
            np.multiply(shade, colour[c], out=p)
            np.minimum(p, 1.0, out=p)
            if spec is not None:
                p += spec * (1.0 - p)
            p *= cover
        # mean over each pixel's ss x ss sub-samples: rows first, then columns
        px = planes.reshape(4, h, ss, w * ss).sum(axis=2)
        px = px.reshape(4, h, w, ss).sum(axis=3) * (1.0 / (ss * ss))
        region = img[:, y0:y1, x0:x1]
        region *= 1.0 - px[3]
        region += px[:3]
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def render_scene(labels: list[int], size: int, rng: np.random.Generator) -> np.ndarray:
    """Render the given label indices at random non-overlapping places; (size, size, 3) uint8."""
    if len(set(labels)) != len(labels):
        raise ValueError(f"shapes: duplicate labels in one scene: {labels}")
    return render_objects(list(labels), place_objects(len(labels), rng), size)


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The Generator for sample `index`: depends on (seed, index) only."""
    if seed < 0:
        raise ValueError(f"data.seed must be >= 0 for the shapes source, got {seed}")
    return np.random.default_rng([seed, index])


def generate(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n scenes: images (n, size, size, 3) uint8 and multi-hot labels (n, 24) float32."""
    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.zeros((n, NUM_LABELS), np.float32)
    for i in range(n):
        rng = sample_rng(seed, i)
        lab = sample_labels(rng)
        images[i] = render_scene(lab, size, rng)
        labels[i, lab] = 1.0
    return images, labels


def build_shapes(arg: str, cfg: DataConfig) -> SourceData:
    """`shapes`: `cfg.n_samples or 5000` images at `cfg.image_size or 64`, in memory."""
    return generated_rgb_source(
        cfg, "shapes", arg, generate, DEFAULT_SIZE, DEFAULT_N, "multi", LABEL_NAMES
    )
