"""The SLURM launch path (slurm/*.sh), end to end through a real SLURM: sbatch, srun, requeue.

Bring a single-node cluster up with `bash .ci/slurm_up.sh`, then
`pytest -m cluster tests/cluster/test_slurm.py`. Without `sbatch` on PATH, or with no
slurmctld answering, the cluster tests are skipped. The daemons run as root, so job logs and
runs go straight into pytest's tmp_path.

Every training job is a tiny 2-process CPU run (GANDIST_NPROC_PER_NODE=2, --gpus-per-node=0),
so each test takes well under two minutes on a 2-CPU machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from gandist.config import DataConfig
from gandist.data.shards.format import MANIFEST, read_manifest, sha256_file
from gandist.data.shards.report import ShardReport
from gandist.data.shards.write import write_shards

REPO = Path(__file__).resolve().parents[2]
SLURM = REPO / "slurm"

# Small DCGAN: fast on CPU. data.shards="off" (quoted: YAML reads a bare off as false) skips
# writing shards on first use; the shard path has its own test below.
TINY = [
    "train.batch_size=32",
    "model.g_width=8",
    "model.d_width=8",
    "train.sample_every=0",
    "train.log_every=1",
    "train.checkpoint_every=0",
    "tracking.wandb=disabled",
    'data.shards="off"',
]
# Job states after which a job will not run again (no accounting here, so scontrol, not sacct).
FINAL_STATES = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
}


# ---------------------------------------------------------------- fixtures and helpers


def _slurm_ready() -> str | None:
    """None if jobs can be submitted, else why not."""
    if shutil.which("sbatch") is None:
        return "sbatch is not on PATH (bring a cluster up with `bash .ci/slurm_up.sh`)"
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%a %t"], capture_output=True, text=True, timeout=15
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    if proc.returncode != 0:
        return f"the SLURM cluster is not up (sinfo: {proc.stderr.strip()[:200]})"
    if not re.search(r"^up (idle|mix|alloc)", proc.stdout, re.M):
        return f"no usable SLURM partition/node: {proc.stdout.strip()[:200]!r}"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """Skips unless a SLURM cluster takes jobs."""
    why = _slurm_ready()
    if why:
        pytest.skip(why)


def _job_env(**extra: str) -> dict[str, str]:
    """The environment sbatch hands to the job: ours, minus stray GANDIST_* and W&B settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GANDIST_", "SLURM_", "WANDB_")) and k != "WORLD_SIZE"
    }
    env.update(
        GANDIST_VENV=sys.prefix,  # the venv running the tests has gandist installed
        GANDIST_NPROC_PER_NODE="2",
        WANDB_SILENT="true",
    )
    env.update(extra)
    return env


def _records(job_id: str) -> list[dict[str, str]]:
    """`scontrol show job -o`: one record per job (per array task), key=value fields."""
    proc = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30
    )
    out = []
    for line in proc.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobState" in fields:
            out.append(fields)
    return out


class SlurmJobs:
    """Submits jobs, waits for them, and cancels whatever is left when the test ends."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.submitted: list[str] = []

    def submit(self, script: str, args: list[str], env: dict[str, str], *sbatch: str) -> str:
        # Submitted from the project directory, as a user outside the checkout does: the
        # scripts find slurm/lib.sh from the submitted path, arguments with slashes or not.
        cmd = ["sbatch", "--parsable", f"--chdir={self.workdir}", *sbatch, str(SLURM / script)]
        proc = subprocess.run(
            [*cmd, *args], env=env, cwd=self.workdir, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}"
        job_id = proc.stdout.strip().split(";")[0]
        self.submitted.append(job_id)
        return job_id

    def wait(self, job_id: str, timeout: float, log: Path | None = None) -> list[dict[str, str]]:
        """Records once every job (array task) is final in two polls in a row (a requeued job
        passes through COMPLETING and PENDING, never a final state, but be sure)."""
        deadline = time.monotonic() + timeout
        final_once = False
        records: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            records = _records(job_id)
            final = bool(records) and all(r["JobState"] in FINAL_STATES for r in records)
            if final and final_once:
                return records
            final_once = final
            time.sleep(1)
        subprocess.run(["scancel", job_id], timeout=30)
        raise AssertionError(
            f"job {job_id} not finished after {timeout:.0f} s: {records}\n{_tail(log)}"
        )

    def cancel_all(self) -> None:
        if self.submitted:
            subprocess.run(["scancel", *self.submitted], capture_output=True, timeout=30)


@pytest.fixture
def slurm_jobs(slurm_cluster: None, tmp_path: Path) -> Iterator[SlurmJobs]:
    jobs = SlurmJobs(tmp_path)
    yield jobs
    jobs.cancel_all()


def _tail(path: Path | None, n: int = 60) -> str:
    if path is None or not path.is_file():
        return f"(no log at {path})"
    return "--- job log (tail)\n" + "\n".join(path.read_text().splitlines()[-n:])


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{_tail(log)}")


def _status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def _metric_steps(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if line.strip()]


def _assert_completed(record: dict[str, str], log: Path) -> None:
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", (
        f"job ended {record['JobState']} {record['ExitCode']}\n{_tail(log)}"
    )


# ---------------------------------------------------------------- training


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_slurm_dcgan_two_process_run(slurm_jobs: SlurmJobs, tmp_path: Path) -> None:
    """sbatch slurm/train_dcgan.sh from a project directory outside the checkout, overrides
    from the environment, `--ntasks-per-node=2` on a CPU-only job (2 processes; it was ignored:
    1 process), and a SIGUSR1 while the script starts (it killed the batch shell: FAILED, never
    requeued): the job is requeued, then trains N steps, checkpoints, status.json completed."""
    steps = 12
    log = tmp_path / "dcgan.log"
    env = _job_env(GANDIST_OVERRIDES=" ".join([f"train.steps={steps}", *TINY]))
    del env["GANDIST_NPROC_PER_NODE"]
    job = slurm_jobs.submit(
        "train_dcgan.sh", [], env, f"--output={log}", "--gpus-per-node=0",
        "--ntasks-per-node=2", "--cpus-per-task=1", "--time=10",
    )  # fmt: skip
    # The batch shell is up once SLURM has opened its log; the script then needs seconds
    # (scontrol, the config resolver) before it traps signals itself.
    _wait_for(log.is_file, 90, "the batch script to start", log)
    time.sleep(0.3)
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True, timeout=30)
    (record,) = slurm_jobs.wait(job, timeout=150, log=log)
    _assert_completed(record, log)
    assert record["Restarts"] == "1", f"{record}\n{_tail(log)}"
    first = log.read_text().split("(restart 1)")[0]
    assert "SIGUSR1" in first and "stopping at step" not in first, _tail(log)
    assert f"requeued job {job}" in first, _tail(log)

    text = log.read_text()
    run_dir = tmp_path / "runs" / f"dcgan_digits-{job}"
    assert f"run directory {run_dir}" in text, _tail(log)
    assert "| 2 process(es) on cpu" in text, _tail(log)
    assert f"done: {steps} steps" in text, _tail(log)
    assert f"completed at step {steps}" in text
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    assert latest == f"step_{steps}"
    assert (run_dir / "checkpoints" / latest / "generator.safetensors").is_file()
    status = _status(run_dir)
    assert status["state"] == "completed" and status["step"] == steps
    assert _metric_steps(run_dir) == list(range(1, steps + 1))


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_slurm_usr1_checkpoints_requeues_and_resumes(slurm_jobs: SlurmJobs, tmp_path: Path) -> None:
    """`scancel --signal=USR1 --batch` (what --signal=B:USR1@s does before the time limit): the
    batch shell forwards SIGTERM to the step, every rank stops at step k and checkpoints, the
    script requeues the job, and the requeued job resumes at k and finishes."""
    steps = 120
    log = tmp_path / "preempt.log"
    job = slurm_jobs.submit(
        "train_dcgan.sh", [f"train.steps={steps}", *TINY], _job_env(),
        f"--output={log}", "--gpus-per-node=0", "--cpus-per-task=2", "--time=10",
    )  # fmt: skip
    # Signal once training is under way (not during start-up).
    _wait_for(lambda: log.is_file() and "step 3/" in log.read_text(), 90, "training to start", log)
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True, timeout=30)
    (record,) = slurm_jobs.wait(job, timeout=150, log=log)
    _assert_completed(record, log)
    assert record["Restarts"] == "1", record

    text = log.read_text()
    run_dir = tmp_path / "runs" / f"dcgan_digits-{job}"
    # The workers got SIGTERM (SIGUSR1 would have killed torchrun before any checkpoint).
    stop = re.search(r"stopping at step (\d+) on SIGTERM", text)
    assert stop, _tail(log)
    k = int(stop.group(1))
    assert 0 < k < steps
    assert f"status.json: preempted at step {k} (after SIGUSR1)" in text, _tail(log)
    assert f"requeued job {job}" in text, _tail(log)
    assert "(restart 1)" in text
    assert re.search(rf"resumed from \S*/checkpoints/step_{k} at step {k}\b", text), _tail(log)
    assert (run_dir / "checkpoints" / f"step_{k}").is_dir()
    status = _status(run_dir)
    assert status["state"] == "completed" and status["step"] == steps, status
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == f"step_{steps}"
    # One run, no step logged twice: exactly 1..steps in order.
    assert _metric_steps(run_dir) == list(range(1, steps + 1))


def _training_processes(run_name: str) -> list[int]:
    """The pids of the `gandist train` workers of a run (torchrun's children), from /proc."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        mine = "gandist" in words and f"train.run_name={run_name}" in words
        if mine and not any("torchrun" in w for w in words):
            found.append(int(entry))
    return found


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_slurm_crashed_rank_restarts_all_ranks_in_the_job(
    slurm_jobs: SlurmJobs, tmp_path: Path
) -> None:
    """kill -9 of one training process: torchrun (c10d rendezvous, --max_restarts) stops the
    other rank and starts both again, they resume from the latest checkpoint within seconds,
    and the job completes without SLURM ever requeueing it."""
    steps, every = 60, 5
    log = tmp_path / "crash.log"
    overrides = [f"train.steps={steps}", *TINY, f"train.checkpoint_every={every}"]
    job = slurm_jobs.submit(
        "train_dcgan.sh", overrides, _job_env(),
        f"--output={log}", "--gpus-per-node=0", "--cpus-per-task=2", "--time=10",
    )  # fmt: skip
    run_name = f"dcgan_digits-{job}"
    run_dir = tmp_path / "runs" / run_name
    _wait_for(lambda: log.is_file() and f"step {every + 2}/" in log.read_text(), 90, "step 7", log)
    workers = _training_processes(run_name)
    assert len(workers) == 2, workers
    os.kill(workers[1], signal.SIGKILL)
    t0 = time.monotonic()
    _wait_for(lambda: "resumed from" in log.read_text(), 60, "the restarted ranks", log)
    resumed = re.search(r"resumed from \S*/checkpoints/step_(\d+) at step (\d+)", log.read_text())
    assert resumed, _tail(log)
    k = int(resumed.group(2))
    _wait_for(lambda: f"step {k + 1}/" in log.read_text().split("resumed from")[-1], 60,
              "a step after the resume", log)  # fmt: skip
    recovered = time.monotonic() - t0
    print(f"crash -> both ranks training again from step {k}: {recovered:.1f} s")
    assert recovered < 60
    assert k >= every and k % every == 0, k
    again = _training_processes(run_name)
    assert len(again) == 2 and not set(again) & set(workers), (workers, again)

    (record,) = slurm_jobs.wait(job, timeout=150, log=log)
    _assert_completed(record, log)
    assert record["Restarts"] == "0", record  # torchrun restarted the ranks, not SLURM
    text = log.read_text()
    assert f"(pid: {workers[1]})" in text and "exitcode: -9" in text, _tail(log)
    assert "up to 3 restart(s) after a failed rank" in text
    assert f"completed at step {steps}" in text, _tail(log)
    status = _status(run_dir)
    assert status["state"] == "completed" and status["step"] == steps, status
    # The restarted attempt rewrote metrics from its checkpoint: each step once, in order.
    assert _metric_steps(run_dir) == list(range(1, steps + 1))


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_slurm_apptainer_mode_with_accelerate(slurm_jobs: SlurmJobs, tmp_path: Path) -> None:
    """GANDIST_RUNTIME=apptainer + GANDIST_LAUNCHER=accelerate through a stand-in `apptainer`
    (it logs its arguments and runs the command on the host): the container command line and
    accelerate's per-node machine rank are built right, and the run trains."""
    steps = 8
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim, shim_log, image = bin_dir / "apptainer", tmp_path / "apptainer.calls", tmp_path / "x.sif"
    image.write_text("not an image\n")
    shim.write_text(
        "#!/usr/bin/env bash\n"
        "# Stand-in for apptainer: log the call, then run what follows the image on the host.\n"
        'echo "$*" >> "$FAKE_APPTAINER_LOG"\n'
        '[ "$1" = exec ] || exit 64\n'
        'while [ $# -gt 0 ] && [ "$1" != "$GANDIST_IMAGE" ]; do shift; done\n'
        "shift\n"
        'PATH="$GANDIST_VENV/bin:$PATH" exec "$@"\n'
    )
    shim.chmod(0o755)
    log = tmp_path / "apptainer.log"
    env = _job_env(
        GANDIST_RUNTIME="apptainer",
        GANDIST_IMAGE=str(image),
        GANDIST_APPTAINER=str(shim),
        GANDIST_APPTAINER_ARGS=f"--bind {tmp_path}:{tmp_path}",
        GANDIST_LAUNCHER="accelerate",
        GANDIST_RUN_NAME="in-container",
        FAKE_APPTAINER_LOG=str(shim_log),
    )
    job = slurm_jobs.submit(
        "train.sh", [str(REPO / "configs" / "dcgan_digits.yaml"), f"train.steps={steps}", *TINY],
        env, f"--output={log}", "--gpus-per-node=0", "--cpus-per-task=2", "--time=10",
    )  # fmt: skip
    (record,) = slurm_jobs.wait(job, timeout=150, log=log)
    _assert_completed(record, log)

    calls = shim_log.read_text().splitlines()
    prefix = f"exec --nv --bind {tmp_path}:{tmp_path} {image} "
    assert any(c.startswith(prefix + "python -c") for c in calls), calls
    launch = [c for c in calls if c.startswith(prefix + "accelerate launch")]
    assert len(launch) == 1, calls
    assert "--machine_rank=0 " in launch[0] and "--num_processes=2 " in launch[0], launch
    assert "--multi_gpu" in launch[0] and "-m gandist train" in launch[0], launch
    text = log.read_text()
    assert "| 2 process(es) on cpu" in text and f"done: {steps} steps" in text, _tail(log)
    status = _status(tmp_path / "runs" / "in-container")
    assert status["state"] == "completed" and status["step"] == steps


# ---------------------------------------------------------------- sharding


def _shard_files(out: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(out.glob("data-*.tar"))}


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_slurm_shard_array_equals_single_process(slurm_jobs: SlurmJobs, tmp_path: Path) -> None:
    """slurm/shard.sh as a 2-task array writes the same shards and manifest as one
    `gandist shard` of the same source."""
    parallel, single = tmp_path / "parallel", tmp_path / "single"
    options = ["--shard-size", "200"]
    log = tmp_path / "shard-%a.log"
    job = slurm_jobs.submit(
        "shard.sh", ["digits", str(parallel), *options], _job_env(),
        "--array=0-1", "--cpus-per-task=1", f"--output={log}", "--time=10",
    )  # fmt: skip
    # Meanwhile, the reference: one plain process.
    proc = subprocess.run(
        [sys.executable, "-m", "gandist", "shard", "digits", str(single), *options],
        capture_output=True, text=True, timeout=150, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    logs = [tmp_path / f"shard-{i}.log" for i in (0, 1)]
    records = slurm_jobs.wait(job, timeout=150, log=logs[0])
    assert len(records) == 2
    for record, task_log in zip(sorted(records, key=lambda r: r["ArrayTaskId"]), logs, strict=True):
        _assert_completed(record, task_log)
    texts = [p.read_text() for p in logs]
    assert "part 0 of 2 done" in texts[0] and "part 1 of 2 done" in texts[1], texts
    # The task that found every shard complete wrote the manifest (both may, if they finish
    # together: the second rewrites the same file under the lock).
    assert any("the last to finish" in t for t in texts), texts

    assert (parallel / MANIFEST).read_text() == (single / MANIFEST).read_text()
    files = _shard_files(parallel)
    assert files == _shard_files(single) and len(files) == 9  # 1797 digits / 200 per shard
    manifest = read_manifest(parallel)
    assert {s.name: s.sha256 for s in manifest.shards} == files
    assert manifest.num_samples == 1797


# ---------------------------------------------------------------- sweeps


@pytest.mark.cluster
@pytest.mark.timeout(180)
def test_slurm_sweep_array_one_point_per_task(slurm_jobs: SlurmJobs, tmp_path: Path) -> None:
    """slurm/sweep.sh as a 2-task array: task i trains grid point i of the sweep file (one
    process each, train.resume=auto, the job's extra override), and both complete. Submitted
    without --array, it stops at once and names the --array to use."""
    sweep = tmp_path / "toy.yaml"
    sweep.write_text(
        f"config: {REPO / 'configs' / 'toy2d_wgan.yaml'}\n"
        "overrides: [train.steps=3, train.n_critic=1, train.batch_size=64, "
        "train.sample_every=0, train.log_every=1, tracking.wandb=disabled]\n"
        "grid:\n  loss.clip_value: [0.005, 0.02]\n"
    )
    log = tmp_path / "sweep-%a.log"
    job = slurm_jobs.submit(
        "sweep.sh", [str(sweep), "train.seed=7"], _job_env(),
        "--array=0-1", "--gpus-per-node=0", "--cpus-per-task=1", f"--output={log}", "--time=10",
    )  # fmt: skip
    plain_log = tmp_path / "no-array.log"
    plain = slurm_jobs.submit(
        "sweep.sh", [str(sweep)], _job_env(),
        "--gpus-per-node=0", "--cpus-per-task=1", f"--output={plain_log}", "--time=10",
    )  # fmt: skip

    logs = [tmp_path / f"sweep-{i}.log" for i in (0, 1)]
    records = slurm_jobs.wait(job, timeout=150, log=logs[0])
    assert len(records) == 2
    by_task = sorted(records, key=lambda r: int(r["ArrayTaskId"]))
    for record, task_log in zip(by_task, logs, strict=True):
        _assert_completed(record, task_log)
    for i, clip in enumerate((0.005, 0.02)):
        text = logs[i].read_text()
        assert f"task {i} (restart 0)" in text and f"point {i} completed" in text, _tail(logs[i])
        assert f"sweep toy: point {i} (of 2): loss.clip_value={clip}" in text, _tail(logs[i])
        run = tmp_path / "runs" / f"toy-{i:03d}-clip_value={clip}"
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        assert cfg["loss"]["clip_value"] == clip and cfg["train"]["seed"] == 7
        assert cfg["train"]["resume"] == "auto" and cfg["tracking"]["group"] == "toy"
        status = _status(run)
        assert status["state"] == "completed" and status["step"] == 3
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "toy-000-clip_value=0.005",
        "toy-001-clip_value=0.02",
    ]

    (record,) = slurm_jobs.wait(plain, timeout=60, log=plain_log)
    assert record["JobState"] == "FAILED" and record["ExitCode"] == "2:0", record
    assert "sbatch --array=0-1 slurm/sweep.sh" in plain_log.read_text()


# No cluster needed: the part contract slurm/shard.sh relies on.
def _shard_part(out: Path, part: tuple[int, int] | None = None) -> ShardReport:
    return write_shards(
        "shapes", out, image_size=16, shard_size=7, data_cfg=DataConfig(n_samples=40),
        progress=False, part=part,
    )  # fmt: skip


def test_shard_parts_equal_one_run(tmp_path: Path) -> None:
    """write_shards(part=(k, n)) for every k, in any order, leaves the files of one run; only
    the part that completes the set writes the manifest; a re-run of a part reuses its shards."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    _shard_part(whole)
    first = _shard_part(parts, (2, 3))
    assert not first.complete and not (parts / MANIFEST).exists()
    assert set(_shard_files(parts)) == {"data-000002.tar", "data-000005.tar"}
    assert not _shard_part(parts, (0, 3)).complete
    last = _shard_part(parts, (1, 3))
    assert last.complete and last.num_samples == 40 and last.num_shards == 6
    assert (parts / MANIFEST).read_text() == (whole / MANIFEST).read_text()
    assert _shard_files(parts) == _shard_files(whole)
    again = _shard_part(parts, (0, 3))
    assert again.complete and again.shards_reused == 2  # shards 0 and 3, nothing rewritten
    assert (parts / MANIFEST).read_text() == (whole / MANIFEST).read_text()
    with pytest.raises(ValueError, match="part"):
        _shard_part(parts, (3, 3))
