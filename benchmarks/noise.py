"""Per-rank host cost of a step's random inputs as the world size grows (weak scaling).

Each rank keeps its local batch (here 64) and the global batch grows with the world size. A step
draws z for each critic update and the generator update, and epsilon for each critic update
(WGAN-GP, n_critic 5: 6 z draws and 5 epsilon draws). gandist draws only the rank's own rows of
the counter-based stream (`GlobalNoise`), so its cost stays flat; drawing the global batch on
every rank and slicing it (gandist before #17, and the usual way to keep 1-vs-N equality) grows
linearly. Both are timed in-process for the last rank of each world size: that is exactly the
work a rank of that world does, without needing that many processes.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from benchmarks.common import alternate, machine, median, torch_threads
from gandist.training.noise import GlobalNoise


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--local-batch", type=int, default=64)
    p.add_argument("--z-dim", type=int, default=128)
    p.add_argument("--n-critic", type=int, default=5)
    p.add_argument("--worlds", default="1,2,4,64", help="world sizes, comma-separated")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--reps", type=int, default=5)


def _global_then_slice(world: int, local: int, z_dim: int, n_critic: int):
    def draw_step(step: int = 7) -> None:
        rows = slice((world - 1) * local, world * local)
        for k in range(n_critic + 1):
            g = torch.Generator().manual_seed(step * 1000 + k)
            torch.randn(world * local, z_dim, generator=g)[rows]
        for k in range(n_critic):
            g = torch.Generator().manual_seed(step * 1000 + 500 + k)
            torch.rand(world * local, generator=g)[rows]

    return draw_step


def _own_rows(world: int, local: int, z_dim: int, n_critic: int):
    noise = GlobalNoise(0, world * local, world - 1, world)

    def draw_step(step: int = 7) -> None:
        for k in range(n_critic):
            noise.normal(step, f"d{k}/z", z_dim)
            noise.uniform(step, f"d{k}/eps")
        noise.normal(step, "g/z", z_dim)

    return draw_step


def run(args: argparse.Namespace) -> dict[str, Any]:
    worlds = [int(w) for w in args.worlds.split(",") if w.strip()]
    rows = []
    with torch_threads(1):
        for w in worlds:
            fns = {
                "own_rows": _own_rows(w, args.local_batch, args.z_dim, args.n_critic),
                "global_then_slice": _global_then_slice(
                    w, args.local_batch, args.z_dim, args.n_critic
                ),
            }
            ms = alternate(fns, args.steps, args.reps, torch.device("cpu"))
            rows.append(
                {
                    "world_size": w,
                    "global_batch": w * args.local_batch,
                    "ms_per_step_own_rows": round(median(ms["own_rows"]), 3),
                    "ms_per_step_global_then_slice": round(median(ms["global_then_slice"]), 3),
                }
            )
    return {
        "benchmark": "noise",
        "machine": machine(),
        "local_batch": args.local_batch,
        "z_dim": args.z_dim,
        "n_critic": args.n_critic,
        "rows": rows,
    }
