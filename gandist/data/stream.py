"""Per-rank batches from a map-style source, defined by the *global* batch.

Each epoch is a permutation of the dataset seeded by (seed, epoch). Global batch b is the slice
[b*B, (b+1)*B) of that permutation and rank r takes its contiguous share of it, so the data a
global step sees does not depend on the world size: 1 process and N processes train on the same
samples. The remainder that does not fill a global batch is dropped, which makes every rank yield
the same number of batches per epoch (no DDP hang). The position is (epoch, batch), so a resumed
run continues exactly where it stopped without replaying data.
"""

from __future__ import annotations

import atexit
import multiprocessing
import signal
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Sampler

from gandist.data.base import DatasetInfo, SourceData
from gandist.seeds import derive_seed


class BatchStream(Protocol):
    """What the trainer consumes: endless (x, y) batches of this rank, with a resumable position."""

    info: DatasetInfo
    num_samples: int
    batches_per_epoch: int
    epoch: int
    position: int

    def first_samples(self, n: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """DataLoader worker_init_fn: leave SIGTERM/SIGUSR1 to the training process.

    torchrun forwards SIGTERM to the whole process group, loader workers included; a worker
    killed by it makes the trainer crash instead of stopping cleanly at the agreed step.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def _kill_loader_workers() -> None:
    # multiprocessing's own exit hook SIGTERMs daemon children and then joins them, which would
    # wait forever on workers that ignore SIGTERM; they hold no state, so SIGKILL them first.
    # PyTorch's SIGCHLD handler would report those intended deaths as a crash ("DataLoader
    # worker is killed by signal") when the signal lands before the process is gone.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for proc in multiprocessing.active_children():
        proc.kill()


def loader_worker_init() -> Callable[[int], None]:
    """The worker_init_fn for training loaders; arranges the exit-time cleanup once."""
    global _REAPER_INSTALLED
    if not _REAPER_INSTALLED:
        atexit.register(_kill_loader_workers)  # runs before multiprocessing's (LIFO order)
        _REAPER_INSTALLED = True
    return ignore_stop_signals


_REAPER_INSTALLED = False


def loader_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """The generator a DataLoader draws its workers' base seed from. Without one it draws from
    torch's global RNG, which dropout also uses: a resumed run builds its loader at another
    moment than the uninterrupted one did, and every later dropout mask would shift."""
    return torch.Generator().manual_seed(derive_seed(seed, "loader", epoch, rank))


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(derive_seed(seed, "epoch-order", epoch))
    return torch.randperm(n, generator=g)


def check_global_batch(global_batch: int, world_size: int) -> None:
    """train.batch_size is the global batch: it must split evenly over the processes."""
    if global_batch % world_size:
        raise ValueError(
            f"train.batch_size={global_batch} is the global batch and must divide evenly over "
            f"{world_size} processes; use a multiple of {world_size}"
        )


def rank_slice(global_batch: int, rank: int, world_size: int) -> slice:
    per_rank = global_batch // world_size
    return slice(rank * per_rank, (rank + 1) * per_rank)


class _RankBatchSampler(Sampler[list[int]]):
    """Index lists for this rank's share of each global batch of one epoch, from `start` on."""

    def __init__(self, perm: torch.Tensor, global_batch: int, part: slice, start: int, n: int):
        self.perm, self.global_batch, self.part, self.start, self.n = (
            perm,
            global_batch,
            part,
            start,
            n,
        )

    def __iter__(self) -> Iterator[list[int]]:
        for b in range(self.start, self.n):
            chunk = self.perm[b * self.global_batch : (b + 1) * self.global_batch]
            yield chunk[self.part].tolist()

    def __len__(self) -> int:
        return self.n - self.start


class RankBatchStream:
    """Endless stream of this rank's slices of seeded global batches (see module docstring)."""

    def __init__(
        self,
        source: SourceData,
        global_batch: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        workers: int = 0,
    ) -> None:
        check_global_batch(global_batch, world_size)
        n = len(source)
        if n < global_batch:
            raise ValueError(
                f"data.source={source.info.source!r} has {n} samples, fewer than one global batch "
                f"(train.batch_size={global_batch}); lower the batch size or add data"
            )
        self.info = source.info
        self.source = source
        self.global_batch = global_batch
        self.part = rank_slice(global_batch, rank, world_size)
        self.seed = seed
        self.workers = workers
        self.pin = torch.cuda.is_available()
        self.num_samples = n
        self.batches_per_epoch = n // global_batch
        self.epoch = 0
        self.position = 0
        self._iter: Iterator[Any] | None = None
        self._perm: torch.Tensor | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._iter, self._perm = None, None

    def __iter__(self) -> RankBatchStream:
        return self

    def _start_epoch(self) -> None:
        self._perm = epoch_permutation(len(self.source), self.seed, self.epoch)
        if self.source.tensors is None:
            sampler = _RankBatchSampler(
                self._perm, self.global_batch, self.part, self.position, self.batches_per_epoch
            )
            self._iter = iter(
                DataLoader(
                    self.source.dataset,
                    batch_sampler=sampler,
                    num_workers=self.workers,
                    persistent_workers=False,
                    pin_memory=torch.cuda.is_available(),
                    worker_init_fn=loader_worker_init() if self.workers else None,
                    generator=loader_generator(self.seed, self.epoch, self.part.start),
                )
            )

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position, self._iter, self._perm = self.epoch + 1, 0, None, None
        if self._perm is None:
            self._start_epoch()
        if self.source.tensors is not None:
            assert self._perm is not None
            b = self.position
            idx = self._perm[b * self.global_batch : (b + 1) * self.global_batch][self.part]
            x, y = self.source.tensors
            batch = (x[idx], y[idx])
            if self.pin:  # page-locked, so the trainer's non_blocking copy really is async
                batch = (batch[0].pin_memory(), batch[1].pin_memory())
        else:
            assert self._iter is not None
            batch = next(self._iter)
        self.position += 1
        return batch

    def first_samples(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n samples in storage order (fixed sample-grid labels, real-data plots)."""
        n = min(n, self.num_samples)
        if self.source.tensors is not None:
            x, y = self.source.tensors
            return x[:n], y[:n]
        items = [self.source.dataset[i] for i in range(n)]
        return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
