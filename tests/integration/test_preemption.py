"""Resilience: signals stop every rank at one step with a checkpoint; kill -9 never corrupts the
latest checkpoint; divergence stops the run; a crafted pickle in a checkpoint cannot run code."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gandist import __version__
from gandist.training.checkpoint import latest_checkpoint
from gandist.training.preemption import EXIT_PREEMPTED
from tests.integration.conftest import gandist_command, metrics, run_gandist, train_args

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def start(args: list[str], cwd: Path, nproc: int = 0, max_restarts: int = 0) -> subprocess.Popen:
    cmd = gandist_command(args, nproc, "--max_restarts", str(max_restarts))
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finite_exports(ck: Path) -> bool:
    tensors = [
        t
        for stem in ("generator", "discriminator")
        for t in load_file(ck / f"{stem}.safetensors").values()
    ]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def wait_for_step(run: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    path, t0 = run / "metrics.jsonl", time.time()
    while time.time() - t0 < timeout:
        if path.is_file() and any(
            json.loads(ln)["step"] >= step for ln in path.read_text().splitlines() if ln.strip()
        ):
            return
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.2)
    raise TimeoutError(f"run did not reach step {step}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_checkpoints_all_ranks_then_resume_finishes(
    sig: signal.Signals, workdir: Path
) -> None:
    args = train_args(
        "toy2d_wgan_gp.yaml",
        "train.steps=400",
        "train.batch_size=64",
        "train.run_name=pre",
        "train.resume=auto",
        "train.checkpoint_every=0",
    )
    run = workdir / "runs" / "pre"
    proc = start(args, workdir, nproc=2)
    wait_for_step(run, 5, proc)
    # signal one worker only: the other rank must learn of it through the agreement allreduce
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    pids = [int(p) for p in workers.stdout.split()]
    assert len(pids) == 2, pids
    os.kill(pids[1], sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0  # torchrun reports the workers' exit code 75 as a failure
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "preempted" and 5 <= status["step"] < 400, out[-3000:]
    assert status["signal"] == sig.name  # written by rank 0, which was not signalled
    ck = latest_checkpoint(run)
    assert ck is not None and ck.name == f"step_{status['step']}"
    state = json.loads((ck / "trainer_state.json").read_text())
    assert state["world_size"] == 2
    assert (ck / "random_states_0.pkl").is_file() and (ck / "random_states_1.pkl").is_file()

    # resumed with D's Adam betas changed: the config's win over the checkpoint's, and it says so
    more = ["train.steps=" + str(status["step"] + 5), "optim.d.betas=[0.0,0.99]"]
    done = run_gandist([*args, *more], workdir, nproc=2)
    assert f"resumed from runs/pre/checkpoints/step_{status['step']}" in done.stdout
    assert (
        "optim.d.betas is [0.0, 0.99] from here on (the checkpoint's optimizer had [0.5, 0.9])"
        in done.stdout
    ), done.stdout[-3000:]
    end = latest_checkpoint(run)
    assert end is not None
    saved = {
        tuple(torch.load(f, weights_only=True)["param_groups"][0]["betas"])
        for f in end.glob("optimizer*.bin")
    }
    assert saved == {(0.5, 0.9), (0.0, 0.99)}, saved
    final = json.loads((run / "status.json").read_text())
    assert final["state"] == "completed" and final["step"] == status["step"] + 5
    steps = [m["step"] for m in metrics(run) if "d/loss" in m]
    assert steps == sorted(set(steps)) and steps[-1] == status["step"] + 5


def test_sigterm_to_torchrun_with_loader_workers_checkpoints(workdir: Path) -> None:
    """The common path: the scheduler SIGTERMs torchrun, which forwards it to its whole process
    group, DataLoader workers (image data from shards, 2 workers per rank) included."""
    args = train_args(
        "dcgan_digits.yaml",
        "train.steps=100000",
        "train.batch_size=16",
        "model.g_width=8",
        "model.d_width=8",
        "data.workers=2",
        "train.run_name=tr",
        "train.checkpoint_every=0",
    )
    run = workdir / "runs" / "tr"
    proc = start(args, workdir, nproc=2)
    wait_for_step(run, 3, proc)
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "preempted", out[-3000:]
    assert "DataLoader worker" not in out
    ck = latest_checkpoint(run)
    assert ck is not None and ck.name == f"step_{status['step']}"


def test_preempted_workers_of_a_restarting_agent_exit_0_and_are_not_restarted(
    workdir: Path,
) -> None:
    """Under torchrun --max-restarts N (how slurm/train.sh and k8s/ launch), a worker that exits
    non-zero makes torchrun restart every worker. After a preemption checkpoint the workers
    therefore exit 0, not 75: torchrun ends, status.json says "preempted", nothing restarts."""
    args = train_args(
        "toy2d_gan.yaml",
        "train.steps=100000",
        "train.batch_size=64",
        "train.run_name=el",
        "train.checkpoint_every=0",
    )
    run = workdir / "runs" / "el"
    proc = start(args, workdir, nproc=2, max_restarts=2)
    wait_for_step(run, 3, proc)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    pids = [int(p) for p in workers.stdout.split()]
    assert len(pids) == 2, pids
    os.kill(pids[1], signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "preempted", out[-3000:]
    ck = latest_checkpoint(run)
    assert ck is not None and ck.name == f"step_{status['step']}"
    assert out.count(f"gandist {__version__}:") == 1 and "resumed from" not in out, out[-3000:]


def test_single_process_exit_code_is_documented(workdir: Path) -> None:
    args = train_args(
        "toy2d_gan.yaml", "train.steps=100000", "train.batch_size=64", "train.run_name=one"
    )
    proc = start(args, workdir)
    wait_for_step(workdir / "runs" / "one", 3, proc)
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_PREEMPTED
    status = json.loads((workdir / "runs" / "one" / "status.json").read_text())
    # the closing block says it stopped, not "done"
    assert f"stopped at step {status['step']} of 100000 (continue with train.resume=auto)" in out
    assert "done:" not in out


def test_a_stop_during_start_up_is_acted_on_after_the_first_step(workdir: Path) -> None:
    """SIGTERM while the auto shards of a fresh data root are being written (minutes on a big
    folder; W&B start-up can take 30 s too) killed the process with no checkpoint and no
    status.json. The handlers are now installed before the start-up: the run trains one step,
    checkpoints, writes "preempted" and exits 75, and resumes from there."""
    fresh = workdir / "fresh"
    args = train_args(
        "dcgan_digits.yaml",
        "train.steps=100000",
        "train.batch_size=32",
        "train.run_name=early",
        f"data.root={fresh}",
    )
    proc = start(args, workdir)
    t0 = time.time()
    while not (fresh / "shards").exists():  # writing has begun: deep inside the start-up
        assert proc.poll() is None and time.time() - t0 < 120, proc.stdout.read()  # type: ignore[union-attr]
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, out[-3000:]
    assert "SIGTERM arrived during start-up: stopping after the first step" in out
    status = json.loads((workdir / "runs" / "early" / "status.json").read_text())
    assert (status["state"], status["step"], status["signal"]) == ("preempted", 1, "SIGTERM")
    assert (workdir / "runs" / "early" / "checkpoints" / "step_1").is_dir()


def _kill_9(
    proc: subprocess.Popen, run: Path, after_step: int, mid_checkpoint: bool, rng: random.Random
) -> bool:
    """SIGKILL the run's process group once it has logged `after_step`: at a random moment, or as
    soon as a checkpoint is being written (a `.tmp_step_N` directory exists). Returns whether a
    half-written checkpoint was left behind (the kill landed mid-checkpoint)."""
    wait_for_step(run, after_step, proc)
    if mid_checkpoint:
        ckpts, t0 = run / "checkpoints", time.monotonic()
        while not any(ckpts.glob(".tmp_step_*")) and time.monotonic() - t0 < 30:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.001)
    else:
        time.sleep(rng.uniform(0.0, 0.3))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return any((run / "checkpoints").glob(".tmp_step_*"))


def test_kill_9_at_random_moments_then_resume_equals_uninterrupted(workdir: Path) -> None:
    """Checkpoint every step and SIGKILL in a loop, at random moments and mid-checkpoint: the
    latest checkpoint always loads, and the run resumed to the end equals, bit for bit (CPU,
    float32), the same run never interrupted (all randomness is derived from (seed, step), and
    the checkpoint holds every rank's RNG and the data position)."""
    steps = 40
    common = [
        "train.steps=" + str(steps),
        "train.batch_size=16",
        "model.g_width=8",
        "model.d_width=8",
        "train.checkpoint_every=1",
        "train.keep_checkpoints=2",
        "train.resume=auto",
        "data.workers=0",
    ]
    args = train_args("dcgan_digits.yaml", *common, "train.run_name=k9")
    run = workdir / "runs" / "k9"
    rng = random.Random(0)
    last, mid_checkpoint_kills = 0, 0
    reference: subprocess.Popen | None = None
    for mid_checkpoint in (False, True, True):
        proc = start(args, workdir)
        if reference is None:
            # The uninterrupted reference trains meanwhile, once the shard cache is written (two
            # processes writing it at once would race).
            wait_for_step(run, 1, proc)
            ref_args = train_args("dcgan_digits.yaml", *common, "train.run_name=ref")
            reference = start(ref_args, workdir)
        mid_checkpoint_kills += _kill_9(proc, run, last + 2, mid_checkpoint, rng)
        ck = latest_checkpoint(run)
        assert ck is not None
        state = json.loads((ck / "trainer_state.json").read_text())
        assert last <= state["step"] < steps
        last = state["step"]
        assert finite_exports(ck)
        assert (ck / "model.safetensors").is_file() and (ck / "optimizer.bin").is_file()
    assert mid_checkpoint_kills >= 1, "no kill landed while a checkpoint was being written"
    # The survivor resumes from whatever `latest` names and finishes.
    done = run_gandist(args, workdir)
    assert f"resumed from runs/k9/checkpoints/step_{last} at step {last}" in done.stdout
    assert reference is not None
    out, _ = reference.communicate(timeout=120)
    assert reference.returncode == 0, out[-3000:]
    ref = workdir / "runs" / "ref"
    for r in (run, ref):
        status = json.loads((r / "status.json").read_text())
        assert status["state"] == "completed" and status["step"] == steps, status
    for stem in ("generator", "discriminator"):
        got = load_file(run / "checkpoints" / f"step_{steps}" / f"{stem}.safetensors")
        want = load_file(ref / "checkpoints" / f"step_{steps}" / f"{stem}.safetensors")
        assert got.keys() == want.keys()
        unequal = [k for k in want if not torch.equal(got[k], want[k])]
        assert not unequal, f"{stem}: resumed run differs from the uninterrupted one in {unequal}"


def test_divergence_stops_with_a_clear_message_and_keeps_the_good_checkpoint(workdir: Path) -> None:
    args = train_args(
        "lsgan_digits.yaml",
        "train.steps=60",
        "train.batch_size=16",
        "model.g_width=8",
        "model.d_width=8",
        "train.checkpoint_every=1",
        "train.keep_checkpoints=100",
        "optim.d.lr=1e6",
        "optim.g.lr=1e6",
        "model.g_norm=none",
        "model.d_norm=none",
        "train.run_name=nan",
    )
    proc = run_gandist(args, workdir, check=False)
    assert proc.returncode != 0
    assert "non-finite" in proc.stderr and "last good checkpoint" in proc.stderr
    run = workdir / "runs" / "nan"
    assert json.loads((run / "status.json").read_text())["state"] == "failed"
    ck = latest_checkpoint(run)
    if ck is not None:  # every checkpoint that was written holds finite weights
        for stem in ("generator", "discriminator"):
            assert all(
                torch.isfinite(t).all() for t in load_file(ck / f"{stem}.safetensors").values()
            )


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('PWNED_PATH', '/tmp/gandist-pwned')}",))


def test_crafted_pickle_in_a_checkpoint_does_not_run(workdir: Path) -> None:
    args = train_args(
        "toy2d_gan.yaml",
        "train.steps=2",
        "train.batch_size=64",
        "train.run_name=p",
        "train.resume=auto",
    )
    run_gandist(args, workdir)
    ck = latest_checkpoint(workdir / "runs" / "p")
    pwned = workdir / "pwned"
    os.environ["PWNED_PATH"] = str(pwned)
    try:
        for name in ("optimizer.bin", "random_states_0.pkl"):
            (ck / name).write_bytes(pickle.dumps(_Exploit()))
    finally:
        os.environ.pop("PWNED_PATH")
    proc = run_gandist([*args, "train.steps=3"], workdir, check=False)
    assert not pwned.exists(), "a pickle in the checkpoint executed code"
    assert proc.returncode != 0  # the optimizer state cannot be loaded safely: refuse, loudly
    # sampling reads safetensors only, so it still works on that checkpoint
    run_gandist(["sample", str(ck), "--n", "10", "--out", "p.npy"], workdir)
    assert not pwned.exists()
