"""What every benchmark shares: the machine record, thread control and alternating timers.

Timings are only compared within one run: variants are timed in alternating repetitions so that
load from other processes on a shared machine hits all of them alike, and the median of the
repetitions is reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads (0: torch's default). On a shared CPU, 1 avoids OpenMP "
        "spin-waits that make 2-thread timings swing by 10x",
    )


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with n intra-op threads (0: unchanged), then restore the caller's setting."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def machine() -> dict[str, Any]:
    """The facts a number needs next to it to mean anything."""
    cuda = torch.cuda.is_available()
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if cuda else None,
    }


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The command-line options, JSON-ready (paths as strings, no argparse internals)."""
    return {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("func", "out", "name")
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def add_clock_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or this process's CPU time (CPU device with --threads 1 only): on a "
        "shared machine the CPU time leaves out the time other jobs held the core",
    )


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def check_clock(clock: str, device: torch.device) -> None:
    """CPU time only measures a step when all of its work is this process's own threads."""
    if clock == "cpu" and (device.type != "cpu" or torch.get_num_threads() != 1):
        raise ValueError("--clock cpu needs the CPU device and --threads 1 (else use wall)")


def time_ms(fn: Callable[[], Any], steps: int, device: torch.device, clock: str = "wall") -> float:
    """Mean ms per call of `fn` over `steps` calls, device work included."""
    now = CLOCKS[clock]
    sync(device)
    t0 = now()
    for _ in range(steps):
        fn()
    sync(device)
    return (now() - t0) / steps * 1000.0


def alternate(
    fns: dict[str, Callable[[], Any]],
    steps: int,
    reps: int,
    device: torch.device,
    warmup: int = 2,
    clock: str = "wall",
) -> dict[str, list[float]]:
    """ms per call of each function, `reps` times, taking turns, after `warmup` calls each."""
    check_clock(clock, device)
    for fn in fns.values():
        time_ms(fn, warmup, device)
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            out[k].append(time_ms(fn, steps, device, clock))
    return out


def paired_ratio(a: list[float], b: list[float]) -> dict[str, float]:
    """Median and quartiles over repetitions of a/b, each pair timed back to back: drift in the
    machine's load between repetitions cancels, and the quartiles show how well a ratio near 1
    is resolved."""
    r = [x / y for x, y in zip(a, b, strict=True)]
    q1, _, q3 = statistics.quantiles(r, n=4) if len(r) > 1 else (r[0], r[0], r[0])
    return {"median": round(median(r), 4), "q1": round(q1, 4), "q3": round(q3, 4)}


def median(values: list[float]) -> float:
    return statistics.median(values)


def rounded(values: list[float], digits: int = 2) -> list[float]:
    return [round(v, digits) for v in values]
