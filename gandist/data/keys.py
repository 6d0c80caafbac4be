"""Names derived from a data config, for callers that must not import the pipeline (evaluation)."""

from __future__ import annotations

from gandist.config import DataConfig
from gandist.data.shards.format import sanitize_key

# The image side a source has when data.image_size is 0, where it is fixed: the key then names
# the size, so a config without data.image_size and one with the same size share the caches
# (shards, evaluator, reference features). torchvision and shards: the data's own, unknown here.
DEFAULT_IMAGE_SIZES = {"digits": 32, "shapes": 64, "glyphs": 32, "folder": 64}


# Sources drawn at load (data.n_samples and data.seed say which images): part of their key.
GENERATED_SOURCES = ("shapes", "glyphs")


def source_name(spec: str) -> str:
    return spec.split(":", 1)[0]


def dataset_key(cfg: DataConfig) -> str:
    """A file-name-safe name for the exact data a config describes (source, size, channels and,
    for generated sources, count and seed): the key of caches derived from the data."""
    parts = [
        sanitize_key(cfg.source.replace("/", "_").replace(":", "-")),
        f"{cfg.image_size or DEFAULT_IMAGE_SIZES.get(source_name(cfg.source)) or 'native'}px",
        f"{cfg.channels or 'native'}c",
    ]
    if source_name(cfg.source) in GENERATED_SOURCES:
        parts += [f"n{cfg.n_samples or 'default'}", f"seed{cfg.seed}"]
    return "-".join(parts)
