"""Child runs: `gandist train` (or any command) in subprocesses, as sweeps and experiments
start them. One runner for both: at most N at a time, a failure never stops the others, a stop
signal is passed on to the children (which checkpoint and exit 75), and the run directory a child
wrote is found by its status.json."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from gandist.run_files import STATUS


@dataclass
class Outcome:
    """How one child process ended (rc None: never started, the sweep was stopped first)."""

    rc: int | None = None
    seconds: float = 0.0


def run_commands(
    commands: Sequence[Sequence[str]],
    max_parallel: int = 1,
    labels: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
) -> list[Outcome]:
    """Run commands, at most `max_parallel` at a time; a failure never stops the others.

    One at a time, a child writes straight to this terminal; several at a time, each line is
    prefixed with the child's label. With CUDA_VISIBLE_DEVICES set, the listed devices are dealt
    to the running slots, so `--max-parallel 4` on 4 GPUs gives each child its own. SIGINT or
    SIGTERM stops launching and sends SIGTERM to the running children (gandist checkpoints and
    exits 75); children have their own session, so a terminal's Ctrl-C reaches only this one.
    `env`: variables set for every child (on top of this process's environment).
    """
    labels = list(labels or [str(i) for i in range(len(commands))])
    devices = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    outcomes = [Outcome() for _ in commands]
    pending = list(range(len(commands)))
    running: dict[int, tuple[subprocess.Popen[str], int, float, threading.Thread | None]] = {}
    free = list(range(max_parallel))
    lock = threading.Lock()
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        for proc, *_ in list(running.values()):
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)

    def relay(proc: subprocess.Popen[str], label: str) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with lock:
                sys.stdout.write(f"[{label}] {line}")
                sys.stdout.flush()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while pending or running:
            while pending and free and not stopping.is_set():
                i, slot = pending.pop(0), free.pop(0)
                child_env = {**os.environ, **(env or {})}
                if max_parallel > 1 and devices:
                    child_env["CUDA_VISIBLE_DEVICES"] = devices[slot % len(devices)]
                pipe = max_parallel > 1
                if pipe:
                    child_env["PYTHONUNBUFFERED"] = "1"
                sys.stdout.flush()
                proc = subprocess.Popen(
                    list(commands[i]),
                    env=child_env,
                    stdout=subprocess.PIPE if pipe else None,
                    stderr=subprocess.STDOUT if pipe else None,
                    text=True,
                    start_new_session=True,
                )
                thread = None
                if pipe:
                    thread = threading.Thread(target=relay, args=(proc, labels[i]), daemon=True)
                    thread.start()
                running[i] = (proc, slot, time.monotonic(), thread)
            if stopping.is_set():
                pending.clear()
            for i, (proc, slot, started, thread) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                if thread is not None:
                    thread.join()
                outcomes[i] = Outcome(rc, time.monotonic() - started)
                free.append(slot)
                del running[i]
            time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return outcomes


def find_run_dir(output_dir: Path, name: str, since: float) -> Path | None:
    """The run directory a child wrote: `<name>` or a fresh run's `<name>-N`, whichever has a
    status.json written since the child started (an older one belongs to an earlier sweep)."""
    candidates = [output_dir / name]
    if output_dir.is_dir():
        pattern = re.compile(re.escape(name) + r"-\d+")
        candidates += [p for p in output_dir.iterdir() if pattern.fullmatch(p.name)]
    written = []
    for run in candidates:
        with contextlib.suppress(OSError):
            mtime = (run / STATUS).stat().st_mtime
            if mtime >= since - 1:
                written.append((mtime, run))
    return max(written)[1] if written else None


def duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"
