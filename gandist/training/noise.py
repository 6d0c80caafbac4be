"""Random inputs of a step drawn for the global batch, sliced per rank.

Noise z, interpolation epsilon and the like come from a generator seeded by (seed, step, purpose),
and every rank draws the full global batch and keeps its own slice. So the random numbers a step
uses depend on neither the world size nor the RNG history, which is what makes 1-process and
N-process runs agree and makes resume exact without saving RNG state for them.
"""

from __future__ import annotations

import zlib

import torch

from gandist.data.stream import rank_slice


class GlobalNoise:
    def __init__(self, seed: int, global_batch: int, rank: int, world_size: int) -> None:
        self.seed = seed
        self.global_batch = global_batch
        self.part = rank_slice(global_batch, rank, world_size)

    def _generator(self, step: int, purpose: str) -> torch.Generator:
        tag = zlib.crc32(purpose.encode())
        return torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 4_294_967_291 + tag)

    def normal(self, step: int, purpose: str, *shape: int) -> torch.Tensor:
        """This rank's rows of a (global_batch, *shape) standard normal tensor."""
        g = self._generator(step, purpose)
        return torch.randn(self.global_batch, *shape, generator=g)[self.part]

    def uniform(self, step: int, purpose: str) -> torch.Tensor:
        """This rank's entries of a (global_batch,) U[0, 1) vector."""
        g = self._generator(step, purpose)
        return torch.rand(self.global_batch, generator=g)[self.part]


def fixed_noise(seed: int, n: int, z_dim: int) -> torch.Tensor:
    """The z used for every sample grid of a run, so grids over time are comparable."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed + 12345))
