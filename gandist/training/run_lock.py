"""One training process writes a run directory at a time.

Why: `train.resume=auto` continues whatever run directory the name points at, so two jobs given
the same run name (a resubmission while the requeued original still waits in the queue, a
copied launch line) both trained into it: interleaved metrics rows, checkpoints of two runs
under one `latest`, and both reported success. The main process of a run holds an advisory
lock (`fcntl.flock`) on `<run>/.gandist.lock` until the run ends (`release_run_dir`); the
kernel drops it when the process dies, however it dies, so none goes stale after a kill -9.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

LOCK_FILE = ".gandist.lock"
# A holder on another host may be a crashed node whose lock lives on in the file server until
# its lease ends (NFSv4: about 90 s): wait that long before calling the directory in use. A
# holder on this host is alive (the kernel drops a dead process's lock at once).
REMOTE_WAIT_S = 120.0
# Filesystems without locks answer these (Lustre mounted without `flock`, some FUSE mounts):
# the run goes on unguarded rather than not at all.
_NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
_held: dict[str, IO[str]] = {}  # run dir -> open lock file, for this process's lifetime


class RunInUse(ValueError):
    """Another live process trains into this run directory."""


def hold_run_dir(run_dir: Path) -> str:
    """Lock `run_dir` until release_run_dir or this process ends; "" when locked (or already
    held by this process: a second Trainer of one Python session), a note when the filesystem
    has no locks. Raises RunInUse, naming the holder, when another process holds it."""
    key = str(run_dir.resolve())
    if key in _held:
        return ""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fh = open(path, "a+")  # noqa: SIM115 - kept open: the lock lives as long as the file is open
    deadline: float | None = None
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno in _NO_LOCKS:
                fh.close()
                return (
                    f"{run_dir}: this filesystem has no file locks, so a second job training "
                    "into the same run directory would not be noticed"
                )
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                fh.close()
                raise
            fh.seek(0)
            record = _record(fh.read())
            remote = record.get("host") not in (None, socket.gethostname())
            if remote and deadline is None:
                deadline = time.monotonic() + REMOTE_WAIT_S
                print(
                    f"gandist: {run_dir} is held by{_describe(record)}; waiting up to "
                    f"{REMOTE_WAIT_S:.0f} s (a crashed node's lock ends with its lease)",
                    file=sys.stderr,
                    flush=True,
                )
            if deadline is None or time.monotonic() > deadline:
                fh.close()
                raise RunInUse(_in_use(run_dir, record)) from None
            time.sleep(2.0)
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps(_me()) + "\n")
    fh.flush()
    _held[key] = fh
    return ""


def release_run_dir(run_dir: Path) -> None:
    """Let go of `run_dir` if this process holds it (a finished or refused run)."""
    fh = _held.pop(str(run_dir.resolve()), None)
    if fh is not None:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def live_holder(run_dir: Path) -> str:
    """For a launch script, before it starts any worker: why `run_dir` is in use, or "".

    In use: another process holds the lock and is alive for sure: on this host, or in a SLURM
    job that is running and is not this one (a requeued job's own earlier attempt may hold it
    from a crashed node until the file server's lease ends: the run waits for that). Without
    this check the run's workers stop on the lock and torchrun restarts them, failing the job
    after its restarts."""
    path = run_dir / LOCK_FILE
    if not path.is_file():
        return ""
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fh, fcntl.LOCK_UN)
            return ""
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return ""
            fh.seek(0)
            record = _record(fh.read())
    job = str(record.get("slurm_job", ""))
    alive = record.get("host") == socket.gethostname() or (
        job and job != os.environ.get("SLURM_JOB_ID") and _slurm_job_running(job)
    )
    return _in_use(run_dir, record) if alive else ""


def _slurm_job_running(job: str) -> bool:
    try:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "JobState=RUNNING" in out


def _in_use(run_dir: Path, record: dict) -> str:
    return (
        f"{run_dir} is in use: another gandist train{_describe(record)} is writing it. Wait for "
        "it to end (train.resume=auto then continues from its last checkpoint), or start "
        "another run with another train.run_name"
    )


def _me() -> dict[str, str | int]:
    me: dict[str, str | int] = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if os.environ.get("SLURM_JOB_ID"):
        me["slurm_job"] = os.environ["SLURM_JOB_ID"]
    return me


def _record(text: str) -> dict:
    """The holder's record ({} if unreadable: written by a process that died mid-write)."""
    try:
        d = json.loads(text)
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _describe(d: dict) -> str:
    """' (pid 12, host n1, SLURM job 7, since ...)' from the holder's record; '' if unknown."""
    try:
        parts = [f"pid {d['pid']}", f"host {d['host']}"]
    except KeyError:
        return ""
    if d.get("slurm_job"):
        parts.append(f"SLURM job {d['slurm_job']}")
    if d.get("since"):
        parts.append(f"since {d['since']}")
    return f" ({', '.join(parts)})"
