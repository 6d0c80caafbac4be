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

A step's fixed purposes (z of every critic and generator update, epsilon) are declared up front
and drawn for several steps in one pass; each purpose keeps its own region of each step's
stream, so declaring, or how many steps a pass covers, changes no number. Why: between the
model's kernels every separate draw ran its Python and numpy code cold, at 5-10x its cost in a
tight loop (~0.2 ms, 5-7% of a 2-D toy's step; docs/performance.md, "Small models").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from gandist.data.stream import rank_slice
from gandist.seeds import derive_seed

_PER_BLOCK = 4  # Philox yields four 64-bit words per counter increment
AHEAD = 16  # steps of declared noise drawn per pass
AHEAD_NUMBERS = 1 << 20  # at most this many numbers per pass (8 MB of float64 on the way)


_BITS = np.random.Philox(key=0)  # re-keyed per draw: setting its state is 7x cheaper than a new one
_STATE = _BITS.state


def _raw_rows(key: int, lo: int, hi: int, words: int, region: int = 0) -> np.ndarray:
    """Rows lo..hi-1 (each `words` uint64, a multiple of 4) of the stream keyed by `key`,
    starting `region` blocks into its counter space."""
    _STATE["state"]["key"][:] = (key, 0)
    _STATE["state"]["counter"][:] = 0
    _STATE["buffer_pos"] = _PER_BLOCK  # no buffered words from an earlier draw
    bits = _BITS
    bits.state = _STATE
    bits.advance(region + lo * (words // _PER_BLOCK))
    return bits.random_raw((hi - lo) * words).reshape(hi - lo, words)


def _unit(raw: np.ndarray, open_left: bool) -> np.ndarray:
    """uint64 -> float64 in [0, 1) (or (0, 1) for logarithms) from the top 53 bits."""
    u = (raw >> np.uint64(11)).astype(np.float64)
    return (u + 0.5 if open_left else u) * 2.0**-53


def _words(dim: int) -> int:
    return _PER_BLOCK * math.ceil(dim / _PER_BLOCK)


def _normals_of(u: torch.Tensor) -> torch.Tensor:
    """float64 uniforms in (0, 1) -> standard normals by the inverse CDF (|z| < 8.3)."""
    return torch.erfinv(u * 2.0 - 1.0) * math.sqrt(2.0)


def normal_rows(key: int, lo: int, hi: int, dim: int, region: int = 0) -> torch.Tensor:
    """float64 (hi - lo, dim) standard normals: rows lo..hi-1 of the stream keyed by `key`."""
    raw = _raw_rows(key, lo, hi, _words(dim), region)[:, :dim]
    return _normals_of(torch.from_numpy(_unit(raw, open_left=True)))


def uniform_rows(key: int, lo: int, hi: int, region: int = 0) -> torch.Tensor:
    """float64 (hi - lo,) U[0, 1): entries lo..hi-1 of the stream keyed by `key`."""
    raw = _raw_rows(key, lo, hi, _PER_BLOCK, region)[:, 0]
    return torch.from_numpy(_unit(raw, open_left=False))


@functools.cache
def _region(purpose: str) -> int:
    """Where a purpose's rows start in a step's Philox counter space (2^256 blocks): 2^128 apart
    times a hash, so no two purposes' rows (at most 2^64 blocks each) can overlap."""
    return derive_seed(0, "noise-region", purpose) << 128


class GlobalNoise:
    """This rank's rows of the step's random inputs, keyed by (seed, step) and placed by purpose.

    Every purpose of a step reads its own region of one Philox stream, so its numbers depend on
    (seed, step, purpose, row) alone. `normals` (purpose -> numbers per sample) and `uniforms`
    (purposes of one number per sample) name what every step draws: the first request of a
    step draws them all in one pass, and the others are slices of it; any other purpose is
    drawn on request, with the same numbers it would have in the pass.
    """

    def __init__(
        self,
        seed: int,
        global_batch: int,
        rank: int,
        world_size: int,
        normals: Mapping[str, int] | None = None,
        uniforms: Sequence[str] = (),
    ) -> None:
        self.seed = seed
        self.global_batch = global_batch
        self.part = rank_slice(global_batch, rank, world_size)
        self._normals = dict(normals or {})
        self._uniforms = dict.fromkeys(uniforms, 1)  # one number per sample
        # Steps drawn per pass: up to AHEAD, fewer when a step's numbers are many.
        per_step = (self.part.stop - self.part.start) * (
            sum(self._normals.values()) + len(self._uniforms)
        )
        self._ahead = max(1, min(AHEAD, AHEAD_NUMBERS // max(1, per_step)))
        self._drawn: dict[int, dict[str, torch.Tensor]] = {}

    def key(self, step: int) -> int:
        return derive_seed(self.seed, "step-noise", step)

    def normal(self, step: int, purpose: str, *shape: int) -> torch.Tensor:
        """This rank's rows of a (global_batch, *shape) standard normal tensor (float32)."""
        dim = math.prod(shape)
        if self._normals.get(purpose) == dim:
            return self._fused(step)[purpose].reshape(-1, *shape)
        lo, hi = self.part.start, self.part.stop
        rows = normal_rows(self.key(step), lo, hi, dim, _region(purpose))
        return rows.float().reshape(-1, *shape)

    def uniform(self, step: int, purpose: str) -> torch.Tensor:
        """This rank's entries of a (global_batch,) U[0, 1) vector (float32)."""
        if purpose in self._uniforms:
            return self._fused(step)[purpose].reshape(-1)
        lo, hi = self.part.start, self.part.stop
        return uniform_rows(self.key(step), lo, hi, _region(purpose)).float()

    def _fused(self, step: int) -> dict[str, torch.Tensor]:
        """Every declared purpose of `step`, from a pass that drew this step and the next few."""
        if step not in self._drawn:
            self._drawn = self._draw_ahead(step)
        return self._drawn[step]

    def _draw_ahead(self, step: int) -> dict[int, dict[str, torch.Tensor]]:
        """Steps step..step+ahead-1, each purpose's rows cut from one conversion of them all.

        Pulling each step's raw words is a tight loop; the conversions (bits -> uniforms ->
        normals) run once on the block. Same numbers as drawing each alone.
        """
        lo, hi = self.part.start, self.part.stop
        steps = range(step, step + self._ahead)
        keys = [self.key(s) for s in steps]
        drawn: dict[int, dict[str, torch.Tensor]] = {s: {} for s in steps}
        for widths, to_numbers in ((self._normals, _normals_of), (self._uniforms, None)):
            if not widths:
                continue
            raw = np.concatenate(
                [
                    _raw_rows(key, lo, hi, _words(dim), _region(p))[:, :dim]
                    for key in keys
                    for p, dim in widths.items()
                ],
                axis=1,
            )
            u = torch.from_numpy(_unit(raw, open_left=to_numbers is not None))
            numbers = (u if to_numbers is None else to_numbers(u)).float()
            cuts = iter(numbers.split(list(widths.values()) * len(keys), dim=1))
            for s in steps:
                for p in widths:
                    drawn[s][p] = next(cuts).contiguous()
        return drawn


def sample_noise(seed: int, purpose: str, lo: int, hi: int, z_dim: int) -> torch.Tensor:
    """z of samples lo..hi-1 of a fixed set (sample grids, evaluation): sample i's z depends on
    (seed, purpose, i) only, so any split of the set over ranks or batches draws the same z."""
    return normal_rows(derive_seed(seed, "samples", purpose), lo, hi, z_dim).float()


def fixed_noise(seed: int, n: int, z_dim: int) -> torch.Tensor:
    """The z used for every sample grid of a run, so grids over time are comparable."""
    return sample_noise(seed, "grid", 0, n, z_dim)
