"""Which batch stream a run trains from: WebDataset shards (the default for images) or the source.

Image sources (`digits`, `shapes`, `folder:`, `torchvision:`) are written to shards once, on first
use, and streamed from then on, so a toy run and a cluster run take the same data path. Point sets
stay in memory. `data.shards=off` reads an image source directly (map-style, exact 1-vs-N-process
data order; see RankBatchStream).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gandist.config import DataConfig
from gandist.data.shard_format import MANIFEST, sanitize_key
from gandist.data.shard_stream import ShardStream, check_shard_files, resolve_shards
from gandist.data.sources import load_source
from gandist.data.stream import BatchStream, RankBatchStream

POINT_SOURCES = ("toy2d", "points")
AUTO_SHARDS = 16  # small data sets are split into this many shards


def source_name(spec: str) -> str:
    return spec.split(":", 1)[0]


def uses_shards(cfg: DataConfig) -> bool:
    name = source_name(cfg.source)
    return name == "shards" or (cfg.shards == "auto" and name not in POINT_SOURCES)


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


def auto_shard_dir(cfg: DataConfig) -> Path:
    """Cache directory for auto-written shards; its name encodes everything that changes them."""
    if cfg.shard_dir:
        return Path(cfg.shard_dir)
    return Path(cfg.root) / "shards" / dataset_key(cfg)


def ensure_shards(cfg: DataConfig, is_writer: bool, barrier: Callable[[], None]) -> Path:
    """Write the auto shards if they are missing (one writer per node), then wait for them."""
    out = auto_shard_dir(cfg)
    if is_writer and not (out / MANIFEST).is_file():
        from gandist.data.shards import write_shards

        # Small data sets still get AUTO_SHARDS shards (enough for 4 processes x 4 workers).
        write_shards(
            cfg.source,
            out,
            image_size=cfg.image_size,
            channels=cfg.channels,
            min_shards=AUTO_SHARDS,
            workers=1,
            data_cfg=cfg,
            progress=False,
        )
        print(f"gandist: wrote shards of {cfg.source} to {out}", flush=True)
    barrier()
    return out


def open_stream(
    cfg: DataConfig,
    global_batch: int,
    rank: int,
    world_size: int,
    seed: int,
    is_writer: bool,
    barrier: Callable[[], None],
) -> BatchStream:
    """The stream this rank trains from (see module docstring)."""
    if not uses_shards(cfg):
        return RankBatchStream(
            load_source(cfg), global_batch, rank, world_size, seed=seed, workers=cfg.workers
        )
    if source_name(cfg.source) == "shards":
        spec = cfg.source.split(":", 1)[1]
    else:
        spec = str(ensure_shards(cfg, is_writer, barrier))
    urls, manifest = resolve_shards(spec, cfg.manifest)
    check_shard_files(urls, manifest, sha256=cfg.verify_sha256)
    return ShardStream(
        urls,
        manifest,
        global_batch,
        rank,
        world_size,
        seed=seed,
        workers=cfg.workers,
        shuffle_buffer=cfg.shuffle_buffer,
        resampled=cfg.resampled,
        epoch_batches=cfg.epoch_batches,
        source=cfg.source,
    )
