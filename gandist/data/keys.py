"""Names derived from a data config, for callers that must not import the pipeline (evaluation)."""

from __future__ import annotations

from gandist.config import DataConfig
from gandist.data.shards.format import sanitize_key


def source_name(spec: str) -> str:
    return spec.split(":", 1)[0]


def dataset_key(cfg: DataConfig) -> str:
    """A file-name-safe name for the exact data a config describes (source, size, channels and,
    for generated sources, count and seed): the key of caches derived from the data."""
    parts = [
        sanitize_key(cfg.source.replace("/", "_").replace(":", "-")),
        f"{cfg.image_size or 'native'}px",
        f"{cfg.channels or 'native'}c",
    ]
    if source_name(cfg.source) == "shapes":
        parts += [f"n{cfg.n_samples or 'default'}", f"seed{cfg.seed}"]
    return "-".join(parts)
