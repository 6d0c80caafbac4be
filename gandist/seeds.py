"""Every seed gandist uses is derived here, from the user's seed and a purpose.

A run draws random numbers for many purposes: each step's noise, each epoch's data order, each
shard worker's shuffle buffer, the fixed sample-grid noise, evaluation samples. Each purpose gets
its own stream, and the streams must not collide (two purposes sharing numbers correlates them)
nor depend on anything but (user seed, purpose): that is what makes 1-process and N-process runs,
and resumed and uninterrupted runs, draw the same numbers.

Arithmetic formulas such as `seed * 1_000_003 + step` overflow the 64-bit seed that torch
accepts for large user seeds and collide for some pairs of inputs; a cryptographic hash of the
whole tuple does neither. The result fits every consumer: torch.Generator.manual_seed, numpy's
bit generators and random.Random.
"""

from __future__ import annotations

import hashlib

SEED_MAX = 2**64 - 1  # the largest user seed (the range of torch's and numpy's seeds)


def check_seed(seed: object, key: str = "train.seed") -> int:
    """The seed as an int in [0, 2^64), or a ValueError that names the key and the range."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"{key}={seed!r}: a seed must be an integer in [0, 2^64 - 1]")
    return seed


def derive_seed(seed: int, *purpose: int | str) -> int:
    """A 63-bit seed for `purpose` (a tuple of ints and strings, e.g. ("noise", step, "g/z")).

    Distinct (seed, purpose) tuples give independent seeds; the encoding is unambiguous (each
    part is typed and length-prefixed), so ("a", 12) and ("a1", 2) differ.
    """
    check_seed(seed)
    h = hashlib.blake2b(digest_size=8, person=b"gandist-seed")
    for part in (seed, *purpose):
        if isinstance(part, bool) or not isinstance(part, int | str):
            raise TypeError(f"seed purpose parts are ints or strings, got {part!r}")
        raw = part.encode() if isinstance(part, str) else str(part).encode()
        h.update(b"s" if isinstance(part, str) else b"i")
        h.update(len(raw).to_bytes(4, "little"))
        h.update(raw)
    return int.from_bytes(h.digest(), "little") >> 1  # < 2^63: a non-negative int64
