"""WebDataset shards -> this rank's batches: equal counts on every rank, seeded, exactly resumable.

How an epoch is laid out (all of it computed from the manifest, identically on every rank):
- the shard list is permuted with (seed, epoch); rank r takes every world_size-th shard and its
  logical worker w every workers-th of those (non-resampled mode), or each logical worker draws
  shards with replacement from (seed, epoch, rank, w) (resampled mode, for very large data);
- each worker streams its shards through a seeded shuffle buffer of raw (undecoded) samples,
  decodes, and cuts batches of the per-rank batch size (a partial batch is dropped);
- the rank's batches are the workers' batches interleaved round-robin (an exhausted worker drops
  out), cut to the epoch length = the smallest rank's batch count, so every rank yields the same
  number of batches (no DDP hang) and, without resampling, no sample is seen twice in an epoch.
Resume: the position (epoch, batch) says how many batches each worker had delivered; a restarted
worker skips that many *raw* samples after its shuffle buffer (no decoding), and a small reorder
buffer in the main process restores the round-robin order, so the continuation is exact.
"""

from __future__ import annotations

import random
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from braceexpand import braceexpand
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset import gopen
from webdataset.tariterators import tarfile_samples

from gandist.data.base import DatasetInfo
from gandist.data.shards.format import (
    MANIFEST,
    Manifest,
    decode_sample,
    parse_manifest,
    read_manifest,
)
from gandist.data.stream import check_global_batch, loader_generator, loader_worker_init
from gandist.seeds import derive_seed

# ---------------------------------------------------------------- locating shards


def _is_remote(url: str) -> bool:
    return url.startswith("pipe:") or "://" in url


def _read_remote_manifest(url: str) -> Manifest:
    with gopen(url, "rb") as fh:
        return parse_manifest(fh.read().decode(), url)


def resolve_shards(spec: str, manifest: str = "") -> tuple[list[str], Manifest]:
    """Shard URLs and their manifest from a directory, a brace pattern, or a comma list.

    `pipe:` URLs (`pipe:aws s3 cp s3://b/data-000000.tar -`) work as any shard; their manifest
    must be named with `data.manifest` (a path or a `pipe:` URL)."""
    spec = spec.strip()
    if not _is_remote(spec) and Path(spec).is_dir() and not manifest:
        m = read_manifest(spec)
        urls = [str(Path(spec) / s.name) for s in m.shards]
    else:
        urls = [u for part in spec.split(",") if part.strip() for u in braceexpand(part.strip())]
        if not urls:
            raise ValueError(f"data.source=shards:{spec!r} names no shards")
        if manifest:
            m = (
                _read_remote_manifest(manifest)
                if _is_remote(manifest)
                else read_manifest(Path(manifest).parent if Path(manifest).is_file() else manifest)
            )
        elif not _is_remote(urls[0]):
            m = read_manifest(Path(urls[0]).parent)
        else:
            raise ValueError(
                f"data.source=shards:{spec}: remote shards need data.manifest=<path or pipe: URL "
                f"of {MANIFEST}> so that sizes and labels are known before training"
            )
        known = {s.name for s in m.shards}
        unknown = [u for u in urls if _basename(u) not in known]
        if unknown:
            raise ValueError(
                f"{len(unknown)} shard(s) are not in the manifest, e.g. {unknown[0]}; "
                "point data.manifest at the dataset.json written with these shards"
            )
    missing = [u for u in urls if not _is_remote(u) and not Path(u).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} shard file(s) listed in the manifest are missing, e.g. {missing[0]}; "
            "re-run `gandist shard` (it resumes and rewrites missing shards)"
        )
    return urls, m


def _basename(url: str) -> str:
    return url.rstrip().split()[-2 if url.endswith(" -") else -1].rsplit("/", 1)[-1]


def check_shard_files(urls: list[str], manifest: Manifest, sha256: bool = False) -> None:
    """Local shards must have the manifest's size (and sha256 when asked): a truncated copy or a
    shard from another dataset is caught before training starts, not mid-epoch."""
    from gandist.data.shards.format import sha256_file

    by_name = {s.name: s for s in manifest.shards}
    for url in urls:
        if _is_remote(url):
            continue
        entry = by_name.get(_basename(url))
        if entry is None:
            continue
        size = Path(url).stat().st_size
        if entry.num_bytes and size != entry.num_bytes:
            raise ValueError(
                f"{url}: {size} bytes, the manifest says {entry.num_bytes}; the "
                "shard is truncated or from another run of `gandist shard`"
            )
        if sha256 and sha256_file(url) != entry.sha256:
            raise ValueError(f"{url}: sha256 differs from the manifest")


# ---------------------------------------------------------------- the epoch plan (pure)


def epoch_shard_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(derive_seed(seed, "shard-order", epoch))
    return torch.randperm(n, generator=g).tolist()


def assign_shards(order: list[int], rank: int, world: int, workers: int) -> list[list[int]]:
    """Shard indices per logical worker of `rank`."""
    mine = order[rank::world]
    return [mine[w::workers] for w in range(workers)]


def round_robin(batches_per_worker: list[int], limit: int) -> list[int]:
    """Which worker delivers each of the first `limit` batches (exhausted workers drop out)."""
    left = list(batches_per_worker)
    out: list[int] = []
    while len(out) < limit and any(left):
        for w in range(len(left)):
            if left[w] and len(out) < limit:
                out.append(w)
                left[w] -= 1
    return out


@dataclass(frozen=True)
class EpochPlan:
    shards: list[list[int]]  # per logical worker (empty lists in resampled mode)
    n_batches: int  # batches every rank yields this epoch
    schedule: list[int]  # worker id of each batch


def plan_epoch(
    counts: list[int],
    seed: int,
    epoch: int,
    rank: int,
    world: int,
    workers: int,
    local_batch: int,
    resampled: bool,
    epoch_batches: int,
) -> EpochPlan:
    if resampled:
        return EpochPlan(
            [[] for _ in range(workers)], epoch_batches, [i % workers for i in range(epoch_batches)]
        )
    order = epoch_shard_order(len(counts), seed, epoch)
    per_rank = []
    for r in range(world):
        ws = assign_shards(order, r, world, workers)
        per_rank.append([sum(counts[i] for i in w) // local_batch for w in ws])
    n = min(sum(b) for b in per_rank)
    return EpochPlan(assign_shards(order, rank, world, workers), n, round_robin(per_rank[rank], n))


# ---------------------------------------------------------------- worker side


def _worker_rng(seed: int, epoch: int, rank: int, worker: int, what: str) -> random.Random:
    return random.Random(derive_seed(seed, what, epoch, rank, worker))


class _RankShards(IterableDataset):
    """Yields (worker id, x batch, y batch) for one rank and epoch; see the module docstring."""

    def __init__(
        self,
        urls: list[str],
        manifest: Manifest,
        plan: EpochPlan,
        seed: int,
        epoch: int,
        rank: int,
        local_batch: int,
        shuffle_buffer: int,
        skip_batches: list[int],
        resampled: bool,
    ) -> None:
        self.urls, self.m, self.plan = urls, manifest, plan
        self.seed, self.epoch, self.rank = seed, epoch, rank
        self.local_batch, self.buffer = local_batch, shuffle_buffer
        self.skip, self.resampled = skip_batches, resampled

    def _shard_urls(self, w: int) -> Iterator[str]:
        if not self.resampled:
            yield from (self.urls[i] for i in self.plan.shards[w])
            return
        rng = _worker_rng(self.seed, self.epoch, self.rank, w, "resample")
        while True:
            yield self.urls[rng.randrange(len(self.urls))]

    def _raw(self, w: int) -> Iterator[dict[str, Any]]:
        samples = tarfile_samples({"url": u} for u in self._shard_urls(w))
        if self.buffer <= 1:
            yield from samples
            return
        rng = _worker_rng(self.seed, self.epoch, self.rank, w, "shuffle")
        buf: list[dict[str, Any]] = []
        for s in samples:
            if len(buf) < self.buffer:
                buf.append(s)
                continue
            i = rng.randrange(len(buf))
            buf[i], s = s, buf[i]
            yield s
        rng.shuffle(buf)
        yield from buf

    def _decode(self, s: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return decode_sample(s, self.m)  # at the manifest's size and channels

    def _worker_batches(self, w: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        skip = self.skip[w] * self.local_batch
        xs: list[torch.Tensor] = []
        ys: list[torch.Tensor] = []
        for i, s in enumerate(self._raw(w)):
            if i < skip:
                continue  # resume: consumed before the restart; never decoded
            x, y = self._decode(s)
            xs.append(x)
            ys.append(y)
            if len(xs) == self.local_batch:
                yield w, torch.stack(xs), torch.stack(ys)
                xs, ys = [], []

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        if info is None:  # no worker processes: all logical workers, in round-robin order
            its = [self._worker_batches(w) for w in range(len(self.plan.shards))]
            for w in self.plan.schedule[sum(self.skip) :]:
                yield next(its[w])
            return
        torch.set_num_threads(1)
        yield from self._worker_batches(info.id)


# ---------------------------------------------------------------- the stream


class TooFewSamples(ValueError):
    """The shards cannot fill one batch per process (and loader worker) in an epoch."""


class ShardStream:
    """BatchStream over shards (same interface as RankBatchStream)."""

    def __init__(
        self,
        urls: list[str],
        manifest: Manifest,
        global_batch: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        workers: int = 0,
        shuffle_buffer: int = 1000,
        resampled: bool = False,
        epoch_batches: int = 0,
        source: str = "",
        announce: bool = True,
    ) -> None:
        check_global_batch(global_batch, world_size)
        self.urls, self.manifest = urls, manifest
        self.info: DatasetInfo = manifest.info(source)
        self.global_batch, self.local_batch = global_batch, global_batch // world_size
        self.rank, self.world, self.seed = rank, world_size, seed
        self.resampled, self.shuffle_buffer = resampled, shuffle_buffer
        self.processes = workers
        self.workers = self._logical_workers(workers)
        by_name = {s.name: s.num_samples for s in manifest.shards}
        self.counts = [by_name[_basename(u)] for u in urls]
        self.num_samples = sum(self.counts)
        self.epoch_batches = epoch_batches or self.num_samples // global_batch
        self.epoch, self.position = 0, 0
        self._plan: EpochPlan | None = None
        self._iter: Iterator[Any] | None = None
        self._queues: list[deque] = []
        # fail at start-up, not mid-run, when it cannot fill one; workers_fitted: fewer than
        # asked, so that each fills a batch (a reader that wants every sample knows it is small)
        self.workers_fitted = self._fit_workers_to_data(announce)

    def _logical_workers(self, workers: int) -> int:
        n, want = len(self.urls), max(1, workers)
        if self.resampled:
            return want
        if n < self.world:
            raise ValueError(
                f"{n} shard(s) cannot feed {self.world} processes: every rank needs at least one "
                f"shard. Re-shard with `gandist shard ... --shard-size "
                f"{max(1, self.manifest.num_samples // (self.world * want))}` (for "
                f"{self.world * want} shards) or set data.resampled=true"
            )
        fit = n // self.world
        if fit < want:
            if self.rank == 0:
                print(
                    f"gandist: {n} shards for {self.world} process(es) x {want} loader workers; "
                    f"using {fit} worker(s) per process (shard into at least "
                    f"{self.world * want} shards to use all)",
                    file=sys.stderr,
                    flush=True,
                )
            return fit
        return want

    def _fit_workers_to_data(self, announce: bool) -> bool:
        """Fewer loader workers when their shares of a small data set cannot each fill a batch
        (a worker batches its own shards: 100 images in 15 shards over 2 workers left each
        under a batch of 64, and the run was refused, blaming train.batch_size)."""
        asked = self.workers
        while True:
            try:
                self._plan_for(0)
                break
            except TooFewSamples:
                if self.workers == 1:
                    raise
                self.workers -= 1
        if self.workers < asked and self.rank == 0 and announce:
            print(
                f"gandist: {self.num_samples} samples in {len(self.urls)} shards fill no batch "
                f"of {self.local_batch} per process when split over {asked} loader workers; "
                f"using {self.workers} (data.workers)",
                file=sys.stderr,
                flush=True,
            )
        return self.workers < asked

    def _plan_for(self, epoch: int) -> EpochPlan:
        plan = plan_epoch(
            self.counts,
            self.seed,
            epoch,
            self.rank,
            self.world,
            self.workers,
            self.local_batch,
            self.resampled,
            self.epoch_batches,
        )
        if plan.n_batches == 0:
            raise TooFewSamples(
                f"the shards hold {self.num_samples} samples: too few for one batch of "
                f"{self.local_batch} per process on every rank; lower train.batch_size or add data"
            )
        return plan

    @property
    def batches_per_epoch(self) -> int:
        return (self._plan or self._plan_for(self.epoch)).n_batches

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "world_size": self.world,
            "workers": self.workers,
            "resampled": self.resampled,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        same = (state.get("world_size", self.world), state.get("workers", self.workers)) == (
            self.world,
            self.workers,
        )
        if not same and self.rank == 0:
            print(
                "gandist: resuming shards with a different world size or worker count: the "
                "epoch continues at the same position but with a different sample order",
                file=sys.stderr,
                flush=True,
            )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._plan, self._iter = None, None

    def __iter__(self) -> ShardStream:
        return self

    def _start_epoch(self) -> None:
        self._plan = self._plan_for(self.epoch)
        done = self._plan.schedule[: self.position]
        skip = [done.count(w) for w in range(self.workers)]
        ds = _RankShards(
            self.urls,
            self.manifest,
            self._plan,
            self.seed,
            self.epoch,
            self.rank,
            self.local_batch,
            self.shuffle_buffer,
            skip,
            self.resampled,
        )
        procs = self.workers if self.processes > 0 else 0
        loader = DataLoader(
            ds,
            batch_size=None,
            num_workers=procs,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
            worker_init_fn=loader_worker_init() if procs else None,
            generator=loader_generator(self.seed, self.epoch, self.rank),
        )
        self._iter = iter(loader)
        self._queues = [deque() for _ in range(self.workers)]

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        # Also true right after load_state_dict of a checkpoint taken at the end of an epoch.
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position, self._plan, self._iter = self.epoch + 1, 0, None, None
        if self._iter is None:
            self._start_epoch()
        assert self._plan is not None and self._iter is not None
        want = self._plan.schedule[self.position]
        while not self._queues[want]:
            try:
                w, x, y = next(self._iter)
            except StopIteration:
                raise RuntimeError(
                    f"shard stream ended early in epoch {self.epoch} at batch {self.position} of "
                    f"{self._plan.n_batches}: a shard holds fewer samples than the manifest says"
                ) from None
            self._queues[w].append((x, y))
        self.position += 1
        return self._queues[want].popleft()

    def first_samples(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n samples in storage order (for fixed sample-grid labels)."""
        xs, ys = [], []
        for s in tarfile_samples({"url": u} for u in self.urls):
            x, y = decode_sample(s, self.manifest)
            xs.append(x)
            ys.append(y)
            if len(xs) == n:
                break
        return torch.stack(xs), torch.stack(ys)
