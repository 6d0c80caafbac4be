"""Running shard tasks: in this process or in a spawn pool of workers, with progress output."""

from __future__ import annotations

import multiprocessing
import sys
import time
from typing import Any

import torch
from PIL import Image

from gandist.data.shards.encode import Job, Reader
from gandist.data.shards.tasks import ShardStats, Task, write_shard
from gandist.data.sources.registry import load_source

LOG_EVERY_S = 10.0  # plain progress lines (no TTY) at most this often


_WORKER: dict[str, Any] = {}


def _init_worker(job: Job) -> None:
    """Per worker process: one thread (the workers are the parallelism) and its own reader."""
    torch.set_num_threads(1)
    Image.MAX_IMAGE_PIXELS = job.max_image_pixels
    src = None if job.folder else load_source(job.cfg)
    _WORKER["job"], _WORKER["reader"] = job, Reader(job, src)


def _worker_write(task: Task) -> ShardStats:
    return write_shard(task, _WORKER["job"], _WORKER["reader"])


class Progress:
    """A tqdm bar on a TTY; otherwise a plain line every LOG_EVERY_S seconds (logs, CI)."""

    def __init__(self, samples: int, shards: int, enabled: bool) -> None:
        self.samples, self.shards = samples, shards
        self.done_samples = self.done_shards = 0
        self.enabled = enabled
        self.bar = None
        self.last = time.monotonic()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=samples, unit="img", desc="gandist shard", dynamic_ncols=True)

    def sample(self, n: int = 1) -> None:
        self.done_samples += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.monotonic() - self.last >= LOG_EVERY_S:
            self._log()

    def shard(self, samples: int = 0) -> None:
        self.done_shards += 1
        self.sample(samples)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.done_shards}/{self.shards} shards")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            self._log()

    def _log(self) -> None:
        self.last = time.monotonic()
        print(
            f"gandist shard: {self.done_shards}/{self.shards} shards, "
            f"{self.done_samples}/{self.samples} inputs read",
            file=sys.stderr,
            flush=True,
        )


def run_tasks(
    tasks: list[Task], job: Job, reader: Reader, workers: int, progress: Progress
) -> list[ShardStats]:
    """Write `tasks` in this process (workers <= 1) or in a spawn pool, whole shards each."""
    if workers <= 1 or len(tasks) <= 1:
        out = []
        for task in tasks:
            out.append(write_shard(task, job, reader, on_sample=progress.sample))
            progress.shard()
        return out
    ctx = multiprocessing.get_context("spawn")
    out = []
    sizes = {t.name: len(t.items) for t in tasks}
    with ctx.Pool(min(workers, len(tasks)), initializer=_init_worker, initargs=(job,)) as pool:
        for stats in pool.imap_unordered(_worker_write, tasks):
            out.append(stats)
            progress.shard(sizes[stats.name])
    return sorted(out, key=lambda s: s.name)
