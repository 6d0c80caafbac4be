"""Which batch stream a run trains from: WebDataset shards (the default for images) or the source.

Image sources (`digits`, `shapes`, `folder:`, `torchvision:`) are written to shards once, on first
use, and streamed from then on, so a toy run and a cluster run take the same data path. Point sets
stay in memory. `data.shards=off` reads an image source directly (map-style, exact 1-vs-N-process
data order; see RankBatchStream). `shards:<dir | pattern | URLs>` streams existing shards; ones
without a gandist manifest (another tool's) are indexed once (gandist.data.shards.index).
data.image_size / data.channels apply to shards as to any source: decoding resizes and converts.
"""

from __future__ import annotations

import dataclasses
import fcntl
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from gandist.config import DataConfig
from gandist.data.keys import dataset_key, source_name
from gandist.data.shards.format import MANIFEST, Manifest
from gandist.data.shards.index import (
    cache_path,
    describe,
    existing_manifest,
    expand_spec,
    index_shards,
    is_remote,
    next_to_shards,
    plural,
    shard_name,
    write_index,
)
from gandist.data.shards.stream import ShardStream, check_shard_files, resolve_shards
from gandist.data.sources.registry import load_source
from gandist.data.stream import BatchStream, RankBatchStream

POINT_SOURCES = ("toy2d", "points")
AUTO_SHARDS = 16  # small data sets are split into this many shards


def uses_shards(cfg: DataConfig) -> bool:
    name = source_name(cfg.source)
    return name == "shards" or (cfg.shards == "auto" and name not in POINT_SOURCES)


def auto_shard_dir(cfg: DataConfig) -> Path:
    """Cache directory for auto-written shards; its name encodes everything that changes them."""
    if cfg.shard_dir:
        return Path(cfg.shard_dir)
    return Path(cfg.root) / "shards" / dataset_key(cfg)


def ensure_shards(cfg: DataConfig, is_writer: bool, barrier: Callable[[], None]) -> Path:
    """Write the auto shards if they are missing (one writer per node), then wait for them."""
    out = auto_shard_dir(cfg)
    if is_writer and not (out / MANIFEST).is_file():
        # Two runs started at once on a cold cache (a sweep, two jobs on one node) would write
        # the same shards side by side; the lock lets one write while the other waits and then
        # finds them complete.
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.parent / f".{out.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (out / MANIFEST).is_file():
                _write_auto_shards(cfg, out)
    barrier()
    return out


def _write_auto_shards(cfg: DataConfig, out: Path) -> None:
    from gandist.data.shards.write import write_shards

    # Small data sets still get AUTO_SHARDS shards (enough for 4 processes x 4 workers).
    report = write_shards(
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
    if skipped := report.counted("skipped", report.skipped):  # what training will not see
        print("gandist: " + "\n  ".join(skipped), flush=True)


def _writable(directory: Path) -> bool:
    """Can a file be created here? Tried for real: os.access says yes on read-only mounts."""
    probe = directory / f".gandist-write-test-{secrets.token_hex(4)}"
    try:
        probe.touch()
        probe.unlink()
        return True
    except OSError:
        return False


def _usable(path: Path, urls: list[str]) -> bool:
    """Is the manifest at `path` the one to train with? One `gandist shard` wrote is the data
    set's own and always used (resolve_shards then checks it against the files). An index must
    cover every URL and, for local shards, be newer than each and match its size (tar padding
    hides small changes in size), else it is stale and indexed again."""
    m = existing_manifest(path)
    if m is None or not m.indexed:
        return m is not None
    by_name = {s.name: s for s in m.shards}
    written = path.stat().st_mtime_ns
    for u in urls:
        entry = by_name.get(shard_name(u))
        if entry is None:
            return False
        if not is_remote(u) and Path(u).is_file():
            st = Path(u).stat()
            if st.st_size != entry.num_bytes or st.st_mtime_ns > written:
                return False
    return True


def _find_manifest(spec: str, urls: list[str], root: str) -> tuple[list[str], Manifest] | None:
    beside = next_to_shards(urls)
    if beside is not None and _usable(beside, urls):
        return resolve_shards(spec)
    cached = cache_path(urls, root)
    if _usable(cached, urls):
        is_dir = not is_remote(spec) and Path(spec.strip()).is_dir()
        return resolve_shards(",".join(urls) if is_dir else spec, str(cached))
    return None


def _index_target(urls: list[str], root: str) -> Path:
    """Beside the shards if they are local in one writable directory whose dataset.json is
    absent or an index of no more shards than these (so replacing it loses nothing); else the
    cache under data.root, keyed by the URLs."""
    beside = next_to_shards(urls)
    if beside is not None and _writable(beside.parent):
        if not beside.exists():
            return beside
        old = existing_manifest(beside)
        names = {shard_name(u) for u in urls}
        if old is not None and old.indexed and {s.name for s in old.shards} <= names:
            return beside
    return cache_path(urls, root)


def locate_shards(
    spec: str, cfg: DataConfig, is_writer: bool, barrier: Callable[[], None]
) -> tuple[list[str], Manifest]:
    """URLs and manifest of `data.source=shards:<spec>`, indexing the shards once when no
    manifest describes them (another tool wrote them): as with ensure_shards, the writer (one
    process per node) indexes, then every process passes `barrier` exactly once and looks, so
    no rank reads a half-written state and no rank waits on a barrier the others skip."""
    if cfg.manifest:
        return resolve_shards(spec, cfg.manifest)
    urls = expand_spec(spec)
    if is_writer and _find_manifest(spec, urls, cfg.root) is None:
        path = _index_target(urls, cfg.root)
        _say(
            f"shards:{spec} have no gandist manifest; indexing {plural(len(urls), 'shard')} "
            f"once (as `gandist shard index` does) into {path}"
        )
        manifest, notes = index_shards(spec, workers=max(1, cfg.workers), progress=None)
        write_index(manifest, path)
        for note in notes:
            _say(note)
        _say(f"indexed {describe(manifest)}")
    barrier()
    found = _find_manifest(spec, urls, cfg.root)
    if found is None:
        raise FileNotFoundError(
            f"shards:{spec}: no manifest after the indexing process's turn (looked beside the "
            f"shards and in {cache_path(urls, cfg.root)}); data.root must be the same path for "
            "every process of a node, or run `gandist shard index` first"
        )
    return found


def _say(text: str) -> None:
    print(f"gandist: {text}", file=sys.stderr, flush=True)


def decode_target(manifest: Manifest, cfg: DataConfig, announce: bool = False) -> Manifest:
    """The manifest as the stream should decode it: data.image_size and data.channels (0 keeps
    the manifest's) replace its size and channels, so decoding resizes/converts to them and the
    DatasetInfo the models are built from is what the batches hold. Said once when it differs
    from the stored images, so a size chosen in a config is never silently ignored nor silently
    costly."""
    if cfg.channels not in (0, 1, 3):
        raise ValueError(f"data.channels must be 0 (native), 1 or 3, got {cfg.channels}")
    size = cfg.image_size or manifest.image_size
    channels = cfg.channels or manifest.channels
    if announce:
        stored = manifest.image_sizes or {f"{manifest.image_size}x{manifest.image_size}": 1}
        if set(stored) != {f"{size}x{size}"}:
            sizes = ", ".join(list(stored)[:3]) + (", ..." if len(stored) > 3 else "")
            _say(
                f"shard images ({sizes}) are resized to {size}x{size} as they are decoded"
                f"{' (data.image_size)' if cfg.image_size else ''}"
            )
        if channels != manifest.channels:
            _say(
                f"data.channels={channels}: the shards' {manifest.channels}-channel images are "
                "converted as they are decoded"
            )
    return dataclasses.replace(manifest, image_size=size, channels=channels)


def open_stream(
    cfg: DataConfig,
    global_batch: int,
    rank: int,
    world_size: int,
    seed: int,
    is_writer: bool,
    barrier: Callable[[], None],
    announce: bool = True,
) -> BatchStream:
    """The stream this rank trains from (see module docstring). `announce`: rank 0 says how
    the data is adapted (resizing, fewer loader workers); a reader of samples keeps quiet."""
    if not uses_shards(cfg):
        return RankBatchStream(
            load_source(cfg), global_batch, rank, world_size, seed=seed, workers=cfg.workers
        )
    if source_name(cfg.source) == "shards":
        urls, manifest = locate_shards(cfg.source.split(":", 1)[1], cfg, is_writer, barrier)
    else:
        urls, manifest = resolve_shards(str(ensure_shards(cfg, is_writer, barrier)), cfg.manifest)
    check_shard_files(urls, manifest, sha256=cfg.verify_sha256)
    manifest = decode_target(manifest, cfg, announce=rank == 0 and announce)
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
        announce=announce,
    )
