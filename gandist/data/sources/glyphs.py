"""`glyphs`: a small, class-imbalanced set of letters at random places on noise, drawn at load.

Why: the built-in labelled sets are kind to a conditional GAN (digits fill the frame, centred, on
black; shapes sit on a plain background), and a recipe tuned on them can fail on the data users
bring: a small object anywhere in the frame, in any colour, on a busy background, with some
classes rare. This source is that kind of data, generated, so the suite and docs/experiments.md
can measure a conditional recipe on it without a download (issue #14: recipes for users' data).

Each image is one letter of `LETTERS` (Pillow's bundled scalable font, thickened by a stroke),
40-62% of the image side tall, turned up to 30 degrees either way, in a random light colour, at a
random place wholly inside the frame (a wide letter turned far is shrunk to fit), over per-pixel
uniform noise in [0, NOISE_MAX]. Classes are drawn with the fixed weights `CLASS_WEIGHTS` (the
rarest a quarter as common as the most frequent). The letter is rasterised at 4x and averaged
down, so edges are antialiased.

Sample i depends only on (seed, i), like `shapes`: asking for 2N samples gives the same first N.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gandist.config import DataConfig
from gandist.data.base import SourceData, generated_rgb_source
from gandist.data.keys import DEFAULT_IMAGE_SIZES

LETTERS: tuple[str, ...] = ("A", "B", "D", "G", "W")
CLASS_WEIGHTS: tuple[int, ...] = (300, 220, 150, 110, 70)
DEFAULT_SIZE = DEFAULT_IMAGE_SIZES["glyphs"]
DEFAULT_N = 1000
MIN_SIZE = 16
NOISE_MAX = 170  # background noise is darker than any letter colour (LETTER_MIN) on average
LETTER_MIN = 150

_SS = 4  # supersampling factor
_HEIGHT = (0.40, 0.62)  # letter cap height as a fraction of the image side
_TURN = 30.0  # degrees, either way
_FONT_PX = 256  # glyphs are drawn once at this size, then scaled per sample


@functools.cache
def glyph_masks() -> tuple[np.ndarray, ...]:
    """Each letter's coverage (float32 in [0, 1]) at _FONT_PX, cropped to its ink.

    Pillow's default font is the scalable Aileron it bundles (Pillow >= 10.1 with FreeType, which
    every Pillow wheel has); the stroke makes the regular weight bold enough to stay legible at
    32 px."""
    font = ImageFont.load_default(_FONT_PX)
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise RuntimeError(
            "glyphs: Pillow has no FreeType support here, so it has no scalable font to draw "
            "letters with; install Pillow from its wheels (pip install --force-reinstall pillow)"
        )
    stroke = _FONT_PX // 16
    masks = []
    for letter in LETTERS:
        left, top, right, bottom = font.getbbox(letter, stroke_width=stroke)
        img = Image.new("L", (right - left, bottom - top), 0)
        ImageDraw.Draw(img).text(
            (-left, -top), letter, font=font, fill=255, stroke_width=stroke, stroke_fill=255
        )
        masks.append(np.asarray(img, np.float32) / 255.0)
    return tuple(masks)


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The Generator for sample `index`: depends on (seed, index) only."""
    if seed < 0:
        raise ValueError(f"data.seed must be >= 0 for the glyphs source, got {seed}")
    return np.random.default_rng([seed, index])


def render_glyph(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One image of letter `label`; (size, size, 3) uint8."""
    if size < MIN_SIZE:
        raise ValueError(f"glyphs: image size {size} too small (minimum {MIN_SIZE})")
    mask = glyph_masks()[label]
    big = size * _SS
    height = rng.uniform(*_HEIGHT) * big
    width = mask.shape[1] * height / mask.shape[0]
    letter = Image.fromarray(mask).resize(
        (max(int(round(width)), 1), max(int(round(height)), 1)), Image.Resampling.BILINEAR
    )
    letter = letter.rotate(
        float(rng.uniform(-_TURN, _TURN)), resample=Image.Resampling.BILINEAR, expand=True
    )
    if max(letter.size) > big:  # a wide letter turned far: shrink it into the frame, never crop
        scale = big / max(letter.size)
        letter = letter.resize(
            (max(int(letter.width * scale), 1), max(int(letter.height * scale), 1)),
            Image.Resampling.BILINEAR,
        )
    w, h = letter.size
    x0 = int(rng.integers(0, big - w + 1))
    y0 = int(rng.integers(0, big - h + 1))
    cover = np.zeros((big, big), np.float32)
    cover[y0 : y0 + h, x0 : x0 + w] = np.asarray(letter, np.float32)
    cover = cover.reshape(size, _SS, size, _SS).mean(axis=(1, 3)).clip(0.0, 1.0)[..., None]
    colour = rng.uniform(LETTER_MIN, 255, 3).astype(np.float32)
    noise = rng.uniform(0, NOISE_MAX, (size, size, 3)).astype(np.float32)
    img = noise * (1.0 - cover) + colour * cover
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def generate(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n images (n, size, size, 3) uint8 and their class indices (n,) int64."""
    p = np.asarray(CLASS_WEIGHTS, np.float64)
    p /= p.sum()
    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty(n, np.int64)
    for i in range(n):
        rng = sample_rng(seed, i)
        labels[i] = int(rng.choice(len(LETTERS), p=p))
        images[i] = render_glyph(int(labels[i]), size, rng)
    return images, labels


def build_glyphs(arg: str, cfg: DataConfig) -> SourceData:
    """`glyphs`: `cfg.n_samples or 1000` images at `cfg.image_size or 32`, in memory."""
    return generated_rgb_source(
        cfg, "glyphs", arg, generate, DEFAULT_SIZE, DEFAULT_N, "class", LETTERS
    )
