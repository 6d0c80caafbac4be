"""Random inputs of a step, defined per sample of the global batch and drawn per rank.

Noise z, interpolation epsilon and the like are rows of a virtual (global_batch, ...) tensor
keyed by (seed, step, purpose): row i depends on nothing else, so 1-process and N-process runs
draw the same numbers and a resumed run needs no saved RNG state for them.

The rows come from numpy's Philox, a counter-based generator: row i starts at a counter offset
computed from i, so a rank jumps straight to its own rows (`advance`) and draws only those. Its
cost per rank is that of its local batch, whatever the world size (drawing the global batch on
every rank would cost 64 x more at 64 ranks). Normals use the Box-Muller transform, which takes a
fixed number of uniforms per value: normals are the inverse normal CDF of one uniform each
(numpy's ziggurat takes a variable number of draws, so row offsets could not be computed, and
Box-Muller's sin/cos cost 3x more).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gandist.data.stream import rank_slice
from gandist.seeds import derive_seed

_PER_BLOCK = 4  # Philox yields four 64-bit words per counter increment


_BITS = np.random.Philox(key=0)  # re-keyed per draw: setting its state is 7x cheaper than a new one
_STATE = _BITS.state


def _raw_rows(key: int, lo: int, hi: int, words: int) -> np.ndarray:
    """Rows lo..hi-1 (each `words` uint64, a multiple of 4) of the stream keyed by `key`."""
    _STATE["state"]["key"][:] = (key, 0)
    _STATE["state"]["counter"][:] = 0
    _STATE["buffer_pos"] = _PER_BLOCK  # no buffered words from an earlier draw
    bits = _BITS
    bits.state = _STATE
    bits.advance(lo * (words // _PER_BLOCK))
    return bits.random_raw((hi - lo) * words).reshape(hi - lo, words)


def _unit(raw: np.ndarray, open_left: bool) -> np.ndarray:
    """uint64 -> float64 in [0, 1) (or (0, 1) for logarithms) from the top 53 bits."""
    u = (raw >> np.uint64(11)).astype(np.float64)
    return (u + 0.5 if open_left else u) * 2.0**-53


def normal_rows(key: int, lo: int, hi: int, dim: int) -> torch.Tensor:
    """float64 (hi - lo, dim) standard normals: rows lo..hi-1 of the stream keyed by `key`."""
    words = _PER_BLOCK * math.ceil(dim / _PER_BLOCK)
    u = torch.from_numpy(_unit(_raw_rows(key, lo, hi, words)[:, :dim], open_left=True))
    return torch.erfinv(u * 2.0 - 1.0) * math.sqrt(2.0)  # u in (0, 1): |z| < 8.3


def uniform_rows(key: int, lo: int, hi: int) -> torch.Tensor:
    """float64 (hi - lo,) U[0, 1): entries lo..hi-1 of the stream keyed by `key`."""
    return torch.from_numpy(_unit(_raw_rows(key, lo, hi, _PER_BLOCK)[:, 0], open_left=False))


class GlobalNoise:
    def __init__(self, seed: int, global_batch: int, rank: int, world_size: int) -> None:
        self.seed = seed
        self.global_batch = global_batch
        self.part = rank_slice(global_batch, rank, world_size)

    def key(self, step: int, purpose: str) -> int:
        return derive_seed(self.seed, "step-noise", step, purpose)

    def normal(self, step: int, purpose: str, *shape: int) -> torch.Tensor:
        """This rank's rows of a (global_batch, *shape) standard normal tensor (float32)."""
        dim = math.prod(shape)
        rows = normal_rows(self.key(step, purpose), self.part.start, self.part.stop, dim)
        return rows.float().reshape(-1, *shape)

    def uniform(self, step: int, purpose: str) -> torch.Tensor:
        """This rank's entries of a (global_batch,) U[0, 1) vector (float32)."""
        return uniform_rows(self.key(step, purpose), self.part.start, self.part.stop).float()


def sample_noise(seed: int, purpose: str, lo: int, hi: int, z_dim: int) -> torch.Tensor:
    """z of samples lo..hi-1 of a fixed set (sample grids, evaluation): sample i's z depends on
    (seed, purpose, i) only, so any split of the set over ranks or batches draws the same z."""
    return normal_rows(derive_seed(seed, "samples", purpose), lo, hi, z_dim).float()


def fixed_noise(seed: int, n: int, z_dim: int) -> torch.Tensor:
    """The z used for every sample grid of a run, so grids over time are comparable."""
    return sample_noise(seed, "grid", 0, n, z_dim)
