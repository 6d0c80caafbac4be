"""Two jobs given one run name: the second stops before it writes anything, naming the first
(both trained into one directory and both reported success); the lock dies with its process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gandist.training.run_lock import LOCK_FILE, RunInUse, hold_run_dir
from tests.integration.tiny_runs import tiny_trainer

HOLD = """
import socket, sys, time
from pathlib import Path
from gandist.training.run_lock import hold_run_dir
if len(sys.argv) > 2:  # another node's process
    socket.gethostname = lambda: sys.argv[2]
assert hold_run_dir(Path(sys.argv[1])) == ""
print("held", flush=True)
time.sleep(600)
"""


def _holder(run_dir: Path, host: str = "") -> subprocess.Popen[str]:
    """Another process (another job) holding the run directory, as its training would."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir), *([host] if host else [])],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "SLURM_JOB_ID": "4242"},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_run_directory_in_use_is_refused_until_its_holder_dies(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "shared"
    holder = _holder(run_dir)
    try:
        with pytest.raises(RunInUse) as err:
            hold_run_dir(run_dir)
        text = str(err.value)
        assert f"{run_dir} is in use" in text
        assert f"pid {holder.pid}" in text and "SLURM job 4242" in text
        assert "train.run_name" in text and "train.resume=auto" in text
    finally:
        holder.send_signal(signal.SIGKILL)  # a kill -9 leaves no stale lock
        holder.wait(timeout=30)
    assert hold_run_dir(run_dir) == ""
    assert str(os.getpid()) in (run_dir / LOCK_FILE).read_text()
    assert hold_run_dir(run_dir) == ""  # this process again (a second Trainer): fine


def test_a_second_trainer_stops_before_writing_into_a_run_in_use(tmp_path: Path) -> None:
    """train.resume=auto into a directory another live job trains: refused, nothing written
    (no config.yaml rewritten, no status.json of a failure in the other job's directory)."""
    run_dir = tmp_path / "dcgan"
    holder = _holder(run_dir)
    try:
        with pytest.raises(RunInUse, match=f"pid {holder.pid}"):
            tiny_trainer("dcgan", tmp_path, "train.resume=auto")
        assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_holder_on_another_host_is_waited_for_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crashed node's lock can outlive it on a file server (NFSv4 lease): a holder on another
    host is waited for (REMOTE_WAIT_S) before the directory is called in use; one that lets go
    in that time (the lease ended) hands the run over."""
    import threading

    from gandist.training import run_lock

    monkeypatch.setattr(run_lock, "REMOTE_WAIT_S", 3.0)
    run_dir = tmp_path / "runs" / "node-crash"
    holder = _holder(run_dir, host="node-b")
    try:
        with pytest.raises(RunInUse, match="host node-b"):
            hold_run_dir(run_dir)
        assert "waiting up to 3 s" in capsys.readouterr().err
        threading.Timer(1.0, holder.kill).start()  # the lease ends while we wait
        assert hold_run_dir(run_dir) == ""
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_launch_script_sees_a_live_holder_before_starting_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """slurm/train.sh asks before launching: the workers stopping on the lock made torchrun
    restart them, and the job failed after its restarts (or, by luck, resumed the other job's
    finished run). Alive for sure: a holder on this host, or in another running SLURM job; a
    holder in this job (a requeued job's earlier attempt on a crashed node) is waited for."""
    from gandist.training import run_lock
    from gandist.training.run_lock import live_holder

    run_dir = tmp_path / "runs" / "dup"
    assert live_holder(run_dir) == ""  # no lock file yet
    holder = _holder(run_dir)
    try:
        assert f"pid {holder.pid}" in live_holder(run_dir)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert live_holder(run_dir) == ""  # released
    remote = _holder(run_dir, host="node-b")  # SLURM job 4242 (the holder's environment)
    try:
        monkeypatch.setattr(run_lock, "_slurm_job_running", lambda job: job == "4242")
        monkeypatch.setenv("SLURM_JOB_ID", "77")
        assert "SLURM job 4242" in live_holder(run_dir)
        monkeypatch.setenv("SLURM_JOB_ID", "4242")  # our own job's earlier attempt
        assert live_holder(run_dir) == ""
        monkeypatch.setattr(run_lock, "_slurm_job_running", lambda job: False)
        monkeypatch.setenv("SLURM_JOB_ID", "77")
        assert live_holder(run_dir) == ""  # a finished job on a crashed node: the run waits
    finally:
        remote.kill()
        remote.wait(timeout=30)


def test_a_finished_or_refused_run_lets_go(tmp_path: Path) -> None:
    """The lock lived as long as the process: a notebook that trained (or failed to resume) a
    run kept every later job out of it until the kernel ended."""
    from tests.integration.tiny_runs import train_tiny

    result = train_tiny("dcgan", tmp_path)
    holder = _holder(result.run_dir)  # another process takes it: it was let go
    holder.kill()
    holder.wait(timeout=30)
    with pytest.raises(ValueError, match="does not fit"):  # a refused resume lets go too
        tiny_trainer("dcgan", tmp_path, "train.resume=auto", "model.g_width=8")
    holder = _holder(result.run_dir)
    holder.kill()
    holder.wait(timeout=30)
