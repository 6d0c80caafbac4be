"""Running a sweep (`gandist sweep`): one point in this process, or every point in its own
process with a summary table. What the points are (the sweep file, the grid, names and
commands) is gandist/sweep.py; how child processes run is gandist/child_runs.py.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gandist.child_runs import duration, find_run_dir, run_commands
from gandist.config import load_config
from gandist.run_files import EXIT_PREEMPTED, read_status
from gandist.sweep import Point, Sweep, format_list, plan, point_at, train_command


def run_point(sweep: Sweep, point: Point) -> int:
    """Train one point in this process: 0 completed, 75 preempted (as `gandist train`)."""
    print(
        f"sweep {sweep.name}: point {point.index} (of {sweep.size}): {' '.join(point.assignments)}",
        flush=True,
    )
    from gandist.training.trainer import train

    result = train(load_config(sweep.config, list(point.overrides)))
    return EXIT_PREEMPTED if result.preempted else 0


def _status(run_dir: Path | None) -> dict[str, Any]:
    if run_dir is None:
        return {}
    return read_status(run_dir)


def child_command(sweep: Sweep, point: Point, extra: Sequence[str]) -> list[str]:
    """A fresh process per point: no CUDA, W&B or Accelerate state leaks from one run into the
    next, and a crash (or an out-of-memory kill) ends only that point."""
    return [
        sys.executable, "-m", "gandist", "sweep", str(sweep.path), *extra,
        "--index", str(point.index),
    ]  # fmt: skip


def run_all(
    sweep: Sweep,
    points: Sequence[Point],
    extra: Sequence[str] = (),
    max_parallel: int = 1,
    command: Callable[[Sweep, Point, Sequence[str]], list[str]] = child_command,
) -> int:
    """Every point in its own process; prints a summary table. Exit code: 0 when every point
    completed, 1 when any failed, else 75 (some were preempted or never started)."""
    width = len(str(len(points) - 1))
    print(
        f"sweep {sweep.name}: {len(points)} points, {min(max_parallel, len(points))} at a time",
        flush=True,
    )
    started = time.time()
    outcomes = run_commands(
        [command(sweep, p, extra) for p in points],
        max_parallel,
        labels=[f"{p.index:0{width}d}" for p in points],
    )
    rows, failed, unfinished = [], 0, 0
    for p, out in zip(points, outcomes, strict=True):
        cfg = load_config(sweep.config, list(p.overrides))
        run_dir = find_run_dir(Path(cfg.train.output_dir), p.run_name, started)
        status = _status(run_dir)
        if out.rc is None:
            state = "not run"
        elif out.rc == 0:
            state = "completed"
        elif out.rc == EXIT_PREEMPTED:
            state = "preempted"
        else:
            state = f"failed ({out.rc})"
        failed += state.startswith("failed")
        unfinished += state != "completed"
        where = str(run_dir) if run_dir else str(Path(cfg.train.output_dir) / p.run_name)
        step = str(status.get("step", "-"))
        rows.append((str(p.index), state, step, duration(out.seconds), where))
    header = ("index", "state", "step", "time", "run directory")
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(4)]
    print(f"\nsweep {sweep.name}: {len(points) - unfinished} of {len(points)} completed", end="")
    print(f", {failed} failed" if failed else "")
    for r in [header, *rows]:
        print("  ".join(f"{c:<{w}}" for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    if failed:
        return 1
    return EXIT_PREEMPTED if unfinished else 0


def run_sweep(
    path: str | Path,
    overrides: list[str],
    *,
    list_points: bool = False,
    count: bool = False,
    index: int | None = None,
    dry_run: bool = False,
    max_parallel: int | None = None,
) -> int:
    """`gandist sweep` (parser in gandist/cli.py): list, count, print or train the points."""
    if index is not None and max_parallel is not None:
        raise ValueError("--max-parallel applies when running every point (no --index)")
    if max_parallel is not None and max_parallel < 1:
        raise ValueError(f"--max-parallel must be >= 1, got {max_parallel}")
    sweep, points = plan(path, overrides)
    if count:
        print(len(points))
        return 0
    if list_points:
        print(format_list(sweep, points))
        return 0
    chosen = [point_at(sweep, points, index)] if index is not None else points
    if dry_run:
        for p in chosen:
            print(train_command(sweep, p))
        return 0
    if index is not None:
        return run_point(sweep, chosen[0])
    return run_all(sweep, points, overrides, max_parallel or 1)
