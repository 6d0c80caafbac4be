"""The prepared GPU check: everything gandist has not yet run on a GPU, in one command, in minutes.

`scripts/gpu_check.sh [--dry-run] [--out DIR]` (or `make gpu-check`) installs and then runs
`python -m benchmarks.gpu_check run`, which does, within a time budget (default 465 s from the
script's start, install included):

1. environment: GPUs, driver, torch / CUDA / cuDNN / NCCL versions, datasheet peaks;
2. pytest_gpu: `pytest -m gpu tests` (fp16 with GradScaler, bf16, NCCL and SyncBatchNorm on 2+
   GPUs, no host sync per step); pass/fail/skip counts and the failures;
3. benchmark: the bare step (`benchmarks.bare`) of DCGAN-64 and WGAN-GP-64 at width 64, batch 64
   and 256, per precision (fp32 / bf16 / fp16) x layout (NCHW / channels_last) x eager /
   torch.compile: ms/step, img/s, TFLOP/s and the fraction of the device's peak for that
   precision (`benchmarks.flops`). With WGAN-GP, "compiled" compiles G and the critic's plain
   forwards and keeps the penalty's forward eager (compiled graphs have no double backward).
   Eager variants run first, then compiled ones by priority, until the part's time is up; the
   rest are listed as skipped. Variants run in a worker process: one that dies is recorded as
   failed and the worker restarts with the remaining ones;
4. training: DCGAN-64 (the digits recipe at 64x64, width 64) trained with the real CLI for two
   minutes, then stopped with SIGTERM (the preemption path: checkpoint, status.json, exit 75);
   steps, img/s, losses.

Each part has a timeout; a part that fails or times out is recorded with its error and the
check goes on. After every part the results are rewritten to DIR/gpu_check.json and
DIR/gpu_check.md, so an interrupted check still leaves what it measured. Exit status: 0 when
every part passed. `--dry-run` runs the same code on CPU with tiny sizes (width 4, batch 8, a few
steps, torch.compile's aot_eager backend, 8 s of training) in well under a minute; the test suite
runs it (tests/unit/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODELS = ("dcgan64", "wgan_gp64")


@dataclass
class Sizes:
    """What a check measures: the real one on a GPU, a tiny one for --dry-run on CPU."""

    width: int = 64
    batches: tuple[int, ...] = (64, 256)
    precisions: tuple[str, ...] = ("fp32", "bf16", "fp16")
    layouts: tuple[str, ...] = ("nchw", "channels_last")
    modes: tuple[str, ...] = ("eager", "compiled")
    backend: str = "inductor"
    compiled_layouts: tuple[str, ...] = ("channels_last", "nchw")
    steps: dict[str, int] = field(default_factory=lambda: {"dcgan64": 20, "wgan_gp64": 10})
    reps: int = 3
    warmup: int = 3
    pytest_paths: tuple[str, ...] = ("tests",)
    pytest_timeout: int = 150
    bench_min: int = 120
    train_seconds: int = 120
    train_margin: int = 35
    train_overrides: tuple[str, ...] = (
        "data.image_size=64",
        "model.g_width=64",
        "model.d_width=64",
        "train.log_every=50",
    )


DRY = Sizes(
    width=4,
    batches=(8,),
    precisions=("fp32", "bf16"),
    backend="aot_eager",
    # aot_eager on CPU runs torch's eager GroupNorm kernel (gandist's "layer" norm), which returns
    # channels_last where the traced graph expects NCHW, and the critic's flatten fails; inductor
    # generates its own kernel instead. So the dry run compiles NCHW only.
    compiled_layouts=("nchw",),
    steps={"dcgan64": 1, "wgan_gp64": 1},
    reps=1,
    warmup=1,
    pytest_paths=("tests/gpu", "tests/integration/test_host_sync.py"),
    pytest_timeout=60,
    bench_min=20,
    train_seconds=8,
    train_margin=20,
    train_overrides=(
        "data.image_size=32",
        "model.g_width=4",
        "model.d_width=4",
        "train.batch_size=8",
        "train.log_every=2",
        "data.workers=0",
    ),
)


# ---------------------------------------------------------------------------- the report


class Report:
    """The JSON and markdown of a check, rewritten after every part."""

    def __init__(self, out: Path, dry_run: bool, started: float, budget_s: float) -> None:
        self.out = out
        self.started = started
        self.deadline = started + budget_s
        self.data: dict[str, Any] = {
            "gpu_check": 1,
            "dry_run": dry_run,
            "started": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(),
            "budget_s": budget_s,
            "parts": {},
        }

    def left(self) -> float:
        return self.deadline - time.time()

    def part(self, name: str, fn: Callable[[], dict[str, Any]], timeout: float) -> None:
        """Run one part; record its result, or its error, and how long it took."""
        t0 = time.time()
        if timeout <= 0:
            entry: dict[str, Any] = {"status": "skipped", "error": "no time left in the budget"}
        else:
            try:
                entry = {"status": "ok", **fn()}
            except subprocess.TimeoutExpired as exc:
                entry = {"status": "timeout", "error": f"over {exc.timeout:.0f} s"}
            except Exception as exc:  # noqa: BLE001 - a failing part must not stop the check
                entry = {
                    "status": "failed",
                    "error": f"{type(exc).__name__}: {exc}"[-2000:],
                    "traceback": traceback.format_exc()[-4000:],
                }
        entry["seconds"] = round(time.time() - t0, 1)
        self.data["parts"][name] = entry
        self.write()

    def write(self) -> None:
        self.data["elapsed_s"] = round(time.time() - self.started, 1)
        parts = self.data["parts"].values()
        self.data["ok"] = bool(parts) and all(p["status"] == "ok" for p in parts)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_check.json").write_text(json.dumps(self.data, indent=2) + "\n")
        (self.out / "gpu_check.md").write_text(markdown(self.data))


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown(data: dict[str, Any]) -> str:
    parts = data["parts"]
    env = parts.get("environment", {})
    gpus = ", ".join(env.get("gpus", [])) or "no GPU"
    title = "GPU check" + (
        " (dry run on CPU: tiny sizes, not a measurement)" if data["dry_run"] else ""
    )
    lines = [
        f"# {title}",
        "",
        f"{data['started']}, {data.get('elapsed_s')} s of a {data['budget_s']:.0f} s budget; "
        f"{gpus}; torch {env.get('torch', '?')}, CUDA {env.get('cuda', '-')}.",
        "",
        "| part | status | seconds | summary |",
        "|---|---|---|---|",
    ]
    for name, p in parts.items():
        summary = p.get("summary") or p.get("error", "")
        summary = str(summary).replace("\n", " ").replace("|", "/")[:200]
        lines.append(f"| {name} | {p['status']} | {p.get('seconds', '')} | {summary} |")
    rows = parts.get("benchmark", {}).get("rows", [])
    if rows:
        lines += [
            "",
            "Bare step (benchmarks.bare); img/s = real images through D per second "
            "(batch x n_critic per step); peak: dense datasheet TFLOP/s for that precision.",
            "",
            "| model | batch | precision | layout | compile | ms/step | img/s | TFLOP/s "
            "| % of peak | status |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            frac = r.get("fraction_of_peak")
            pct = f"{100 * frac:.1f} ({r.get('peak_basis')})" if frac is not None else "-"
            status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('error', '')}"
            status = status.replace("\n", " ").replace("|", "/")[:120]
            lines.append(
                f"| {r['model']} | {r['batch']} | {r['precision']} | {r['layout']} | {r['mode']} "
                f"| {_fmt(r.get('ms_per_step'), 2)} | {_fmt(r.get('img_per_s'))} "
                f"| {_fmt(r.get('achieved_tflops'), 2)} | {pct} | {status} |"
            )
    train = parts.get("training", {})
    if train.get("status") == "ok":
        lines += [
            "",
            f"Training: {train.get('command_summary', '')}: {train.get('steps')} steps in "
            f"{train.get('train_seconds')} s, {_fmt(train.get('img_per_s'))} img/s (median of "
            f"logged windows), final d/loss {_fmt(train.get('d_loss'), 3)}, g/loss "
            f"{_fmt(train.get('g_loss'), 3)}, status {train.get('run_status')}.",
        ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- the parts


def environment() -> dict[str, Any]:
    import torch

    from benchmarks.common import machine
    from benchmarks.flops import PEAK_TFLOPS

    out: dict[str, Any] = {
        "machine": machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gpus": [],
    }
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        out["gpus"] = [torch.cuda.get_device_name(i) for i in range(n)]
        out["capability"] = list(torch.cuda.get_device_capability(0))
        out["bf16_supported"] = torch.cuda.is_bf16_supported()
        out["cudnn"] = torch.backends.cudnn.version()
        try:
            v = torch.cuda.nccl.version()
            out["nccl"] = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
        except Exception as exc:  # noqa: BLE001 - a build without NCCL still has a GPU to check
            out["nccl"] = f"unavailable: {exc}"
        out["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        out["tf32_conv"] = torch.backends.cudnn.allow_tf32
        out["peak_tflops"] = next(
            (peaks for frag, peaks in PEAK_TFLOPS if frag in out["gpus"][0]), None
        )
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,power.limit",
             "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        out["nvidia_smi"] = smi.stdout.strip().splitlines() or smi.stderr.strip()[-300:]
    except (OSError, subprocess.TimeoutExpired) as exc:
        out["nvidia_smi"] = f"unavailable: {exc}"
    out["summary"] = f"{len(out['gpus'])} GPU(s): {', '.join(out['gpus']) or 'none'}"
    return out


def run_group(cmd: list[str], log: Path, timeout: float) -> int:
    """Run cmd with its output in `log`, in its own process group; past the timeout the whole
    group is killed (pytest's and torch.compile's children included) and TimeoutExpired raised.
    Output goes to a file, not a pipe: a surviving grandchild cannot hold the check up."""
    with log.open("w") as f:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise


def pytest_gpu(py: str, out: Path, sizes: Sizes, timeout: float) -> dict[str, Any]:
    xml = out / "pytest_gpu.xml"
    xml.unlink(missing_ok=True)
    cmd = [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"]
    cmd += list(sizes.pytest_paths)
    log = out / "pytest_gpu.log"
    rc = run_group(cmd, log, timeout)
    if not xml.is_file():
        raise RuntimeError(f"pytest exited {rc}: {_tail(log, 1500)}")
    counts, failures = _junit(xml)
    entry = {
        "command": " ".join(cmd[1:]),
        "returncode": rc,
        **counts,
        "failures": failures,
        "summary": ", ".join(f"{v} {k}" for k, v in counts.items()),
    }
    # 5: no test selected (a CPU machine has only skips, which still count as collected)
    if rc not in (0, 5) or counts["failed"] or counts["errors"]:
        raise _PartFailed(entry)
    return entry


class _PartFailed(Exception):
    """A part that ran but failed: its details still go into the report."""

    def __init__(self, entry: dict[str, Any]) -> None:
        super().__init__(entry.get("summary", "failed"))
        self.entry = entry


def _junit(xml: Path) -> tuple[dict[str, int], list[dict[str, str]]]:
    root = ET.parse(xml).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    counts = {"tests": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures: list[dict[str, str]] = []
    for s in suites:
        counts["tests"] += int(s.get("tests", 0))
        counts["failed"] += int(s.get("failures", 0))
        counts["errors"] += int(s.get("errors", 0))
        counts["skipped"] += int(s.get("skipped", 0))
        for case in s.iter("testcase"):
            for bad in list(case.findall("failure")) + list(case.findall("error")):
                failures.append(
                    {
                        "test": f"{case.get('classname')}::{case.get('name')}",
                        "message": (bad.get("message") or "")[:500],
                    }
                )
    counts["passed"] = counts["tests"] - counts["failed"] - counts["errors"] - counts["skipped"]
    return counts, failures


def variants(sizes: Sizes, cuda: bool) -> list[dict[str, Any]]:
    """Every variant of the table, in the order they are measured: eager before compiled, and
    within each the most informative first (channels_last, bf16, the larger batch)."""
    precisions = [p for p in ("bf16", "fp16", "fp32") if p in sizes.precisions]
    layouts = [lay for lay in ("channels_last", "nchw") if lay in sizes.layouts]
    out = []
    for mode in sizes.modes:
        for layout in layouts:
            for precision in precisions:
                for batch in sorted(sizes.batches, reverse=True):
                    for model in MODELS:
                        skip = None
                        if precision == "fp16" and not cuda:
                            skip = "fp16 autocast needs CUDA"
                        elif mode == "compiled" and layout not in sizes.compiled_layouts:
                            skip = "not compiled in this layout (see Sizes.compiled_layouts)"
                        out.append(
                            {
                                "model": model,
                                "batch": batch,
                                "precision": precision,
                                "layout": layout,
                                "mode": mode,
                                "skip": skip,
                            }
                        )
    return out


def _key(v: dict[str, Any]) -> str:
    return "/".join(str(v[k]) for k in ("model", "batch", "precision", "layout", "mode"))


def benchmark(py: str, out: Path, sizes: Sizes, timeout: float) -> dict[str, Any]:
    """The table, measured by worker processes; a worker that dies costs only its variant."""
    import torch

    todo = variants(sizes, torch.cuda.is_available())
    results: dict[str, dict[str, Any]] = {}
    for v in todo:
        if v["skip"]:
            results[_key(v)] = {**v, "status": "skipped", "error": v["skip"]}
    deadline = time.time() + timeout
    spec = out / "bench_spec.json"
    lines = out / "bench_results.jsonl"
    lines.unlink(missing_ok=True)
    worker_errors: list[str] = []
    while True:
        remaining = [v for v in todo if _key(v) not in results]
        left = deadline - time.time()
        if not remaining or left < 5:
            break
        spec.write_text(json.dumps({"sizes": asdict(sizes), "variants": remaining}))
        cmd = [py, "-m", "benchmarks.gpu_check", "bench-worker", str(spec), str(lines)]
        log = out / "bench_worker.log"
        try:
            rc: int | str = run_group(cmd, log, left)
        except subprocess.TimeoutExpired:
            rc = "timeout"
        tail = _tail(log, 1500).strip()
        started = _read_results(lines, results)
        if started is not None:  # the worker stopped inside this variant
            why = "time budget ran out" if rc == "timeout" else f"worker exited {rc}: {tail}"
            results[started] = {
                **next(v for v in todo if _key(v) == started),
                "status": "timeout" if rc == "timeout" else "failed",
                "error": why[-600:],
            }
        elif rc not in (0, "timeout"):
            worker_errors.append(f"worker exited {rc}: {tail}"[-1000:])
            break  # died outside any variant (start-up): retrying would fail the same way
        if rc == "timeout":
            break
    rows = []
    for v in todo:
        row = results.get(_key(v)) or {**v, "status": "skipped", "error": "time budget"}
        row.pop("skip", None)
        rows.append(row)
    ok = [r for r in rows if r["status"] == "ok"]
    entry = {
        "sizes": asdict(sizes),
        "rows": rows,
        "worker_errors": worker_errors,
        "summary": f"{len(ok)} of {len(rows)} variants measured",
    }
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:  # a variant that fails (a compile error, out of memory) is a finding, not a crash
        entry["summary"] += f"; {len(failed)} failed (see rows)"
    if worker_errors or not ok:
        entry["summary"] += f"; {worker_errors[0][:200]}" if worker_errors else ""
        raise _PartFailed(entry)
    return entry


def _read_results(path: Path, results: dict[str, dict[str, Any]]) -> str | None:
    """Fold the worker's lines into results; the variant it started but did not finish."""
    started: str | None = None
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if "start" in rec:
            started = rec["start"]
        else:
            results[rec["key"]] = rec["row"]
            if rec["key"] == started:
                started = None
    path.unlink()
    return started


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_SILENT": "true"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("WORLD_SIZE", None)
    return env


def bench_worker(spec_path: Path, out_path: Path) -> int:
    """Measure the listed variants one by one, appending one JSON line per start and result."""
    import torch

    from benchmarks.bare import BareLoop
    from benchmarks.common import median, time_ms
    from benchmarks.flops import count_flops, flops_report
    from benchmarks.recipes import bench_config
    from gandist.training.trainer import Trainer

    spec = json.loads(spec_path.read_text())
    sizes = Sizes(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["sizes"].items()})
    if torch.cuda.is_available():
        torch.set_num_threads(min(8, os.cpu_count() or 1))
    else:
        torch.set_num_threads(1)  # the dry run shares a CPU with the test suite
    built: dict[tuple[str, int], tuple[Any, Any, int]] = {}
    tmp = tempfile.TemporaryDirectory()

    def emit(rec: dict[str, Any]) -> None:
        with out_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")

    for v in spec["variants"]:
        key = _key(v)
        emit({"start": key})
        row = {k: v[k] for k in ("model", "batch", "precision", "layout", "mode")}
        try:
            model, batch = v["model"], v["batch"]
            if (model, batch) not in built:
                cfg = bench_config(model, batch, sizes.width, "fp32", Path(tmp.name) / key)
                trainer = Trainer(cfg)
                flops = count_flops(BareLoop(trainer, cfg).step)  # one eager fp32 step
                built[(model, batch)] = (trainer, cfg, flops)
            trainer, cfg, flops = built[(model, batch)]
            dev = trainer.acc.device
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            loop = BareLoop(
                trainer,
                cfg,
                precision=v["precision"],
                channels_last=v["layout"] == "channels_last",
                compile=v["mode"] == "compiled",
                backend=sizes.backend,
            )
            t0 = time.time()
            time_ms(loop.step, sizes.warmup, dev)  # compiles, when compiled
            warm_s = time.time() - t0
            steps = sizes.steps[model]
            reps = [time_ms(loop.step, steps, dev) for _ in range(sizes.reps)]
            ms = median(reps)
            images = batch * cfg.train.n_critic
            row.update(
                status="ok",
                ms_per_step=round(ms, 3),
                img_per_s=round(images / ms * 1000.0, 1),
                warmup_s=round(warm_s, 1),
                compiled=loop.compiled,
                reps_ms=[round(r, 3) for r in reps],
                **flops_report(flops, ms, dev, v["precision"]),
            )
            if dev.type == "cuda":
                row["max_memory_gb"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
        except Exception as exc:  # noqa: BLE001 - one failing variant must not stop the table
            row.update(status="failed", error=f"{type(exc).__name__}: {exc}"[-600:])
        finally:
            loop = None
            if v["mode"] == "compiled":
                torch._dynamo.reset()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        emit({"key": key, "row": row})
    tmp.cleanup()
    return 0


def training(py: str, out: Path, sizes: Sizes, timeout: float) -> dict[str, Any]:
    """DCGAN-64 through the real CLI for sizes.train_seconds, then SIGTERM (preemption path).

    The run (shards, checkpoint) lives in a temporary directory; its log, metrics and status
    are copied to `out`."""
    with tempfile.TemporaryDirectory(prefix="gandist-gpu-check-") as tmp:
        return _training(py, out, sizes, timeout, Path(tmp))


def _training(py: str, out: Path, sizes: Sizes, timeout: float, tmp: Path) -> dict[str, Any]:
    args = [
        "train",
        str(REPO / "configs" / "dcgan_digits.yaml"),
        *sizes.train_overrides,
        "train.steps=100000000",
        "train.sample_every=0",
        "train.checkpoint_every=0",
        "tracking.wandb=disabled",
        f"train.output_dir={tmp / 'runs'}",
        f"data.root={tmp / 'data'}",
        "train.run_name=dcgan64",
    ]
    cmd = [py, "-m", "gandist", *args]
    log = out / "training.log"
    with log.open("w") as f:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )
        t0 = time.time()
        metrics = tmp / "runs" / "dcgan64" / "metrics.jsonl"
        # Train for train_seconds from the launch, and at least until the first logged step:
        # a SIGTERM before the trainer has installed its handler would just kill it.
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"training exited {proc.returncode} early: {_tail(log)}")
            elapsed = time.time() - t0
            started = metrics.is_file() and metrics.stat().st_size > 0
            if (started and elapsed >= sizes.train_seconds) or elapsed > timeout - 30:
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=max(10.0, min(60.0, timeout - (time.time() - t0))))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise RuntimeError(f"no exit within 60 s of SIGTERM: {_tail(log)}") from None
        wall = time.time() - t0
    run = tmp / "runs" / "dcgan64"
    status: dict[str, Any] = {}
    if (run / "status.json").is_file():
        status = json.loads((run / "status.json").read_text())
        (out / "training_status.json").write_text(json.dumps(status, indent=2))
    rows = []
    if (run / "metrics.jsonl").is_file():
        text = (run / "metrics.jsonl").read_text()
        (out / "training_metrics.jsonl").write_text(text)
        rows = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
    rates = sorted(r["perf/img_per_s"] for r in rows[1:] if "perf/img_per_s" in r)
    last = next((r for r in reversed(rows) if "d/loss" in r), {})
    entry = {
        "command": " ".join(cmd[1:]),
        "command_summary": "DCGAN-64 (configs/dcgan_digits.yaml, "
        + " ".join(o for o in sizes.train_overrides if "width" in o or "image_size" in o)
        + ")",
        "returncode": proc.returncode,
        "run_status": status.get("state"),
        "steps": status.get("step"),
        "train_seconds": round(wall, 1),
        "img_per_s": rates[len(rates) // 2] if rates else None,
        "d_loss": last.get("d/loss"),
        "g_loss": last.get("g/loss"),
        "gpu_mem_gb": last.get("perf/gpu_mem_gb"),
    }
    entry["summary"] = (
        f"{entry['steps']} steps, {_fmt(entry['img_per_s'])} img/s, status {entry['run_status']}"
    )
    # SIGTERM must end in a checkpoint and a "preempted" status (exit 75, EXIT_PREEMPTED).
    if status.get("state") != "preempted" or proc.returncode != 75 or not entry["steps"]:
        entry["log_tail"] = _tail(log)
        raise _PartFailed(entry)
    return entry


def _tail(path: Path, n: int = 2000) -> str:
    return path.read_text(errors="replace")[-n:] if path.is_file() else ""


# ---------------------------------------------------------------------------- the driver


def run(args: argparse.Namespace) -> int:
    sizes = DRY if args.dry_run else Sizes()
    started = args.started or time.time()
    budget = args.budget or (100.0 if args.dry_run else 465.0)
    report = Report(args.out, args.dry_run, started, budget)
    if args.install:
        status, seconds = args.install.split(":", 1) if ":" in args.install else (args.install, "")
        # "skipped" is --no-install: the caller brought the Python (an offline GPU machine).
        report.data["parts"]["install"] = {
            "status": "ok" if status in ("ok", "dry-run", "skipped") else "failed",
            "seconds": float(seconds or 0),
            "summary": "not asked for (--no-install)" if status == "skipped" else status,
        }
    py = sys.executable
    # Time for the training part (start-up is inside train_seconds; then SIGTERM, checkpoint,
    # exit) and the least the table gets; pytest may use what is left over, up to its limit.
    train_need = sizes.train_seconds + sizes.train_margin
    report.part("environment", environment, timeout=60)
    _run_part(
        report,
        "pytest_gpu",
        lambda t: pytest_gpu(py, args.out, sizes, t),
        min(sizes.pytest_timeout, report.left() - train_need - sizes.bench_min),
    )
    _run_part(
        report, "benchmark", lambda t: benchmark(py, args.out, sizes, t), report.left() - train_need
    )
    _run_part(report, "training", lambda t: training(py, args.out, sizes, t), report.left())
    report.write()
    print(f"gpu check: {'ok' if report.data['ok'] else 'FAILED'}; {args.out / 'gpu_check.json'}")
    print(markdown(report.data))
    return 0 if report.data["ok"] else 1


def _run_part(
    report: Report, name: str, fn: Callable[[float], dict[str, Any]], timeout: float
) -> None:
    """report.part with the part's time limit passed on, and a failed part's details kept."""
    kept: dict[str, Any] = {}

    def call() -> dict[str, Any]:
        try:
            return fn(timeout)
        except _PartFailed as exc:
            kept.update(exc.entry)
            raise

    report.part(name, call, timeout)
    entry = report.data["parts"][name]
    if kept and entry["status"] == "failed":
        entry.update({k: v for k, v in kept.items() if k not in ("status", "seconds")})
        entry["error"] = kept.get("summary", entry.get("error"))
        entry.pop("traceback", None)
        report.write()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="the whole check (scripts/gpu_check.sh runs this)")
    r.add_argument("--out", type=Path, required=True, help="writes gpu_check.json and .md here")
    r.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: checks the code")
    r.add_argument("--budget", type=float, default=0, help="seconds in all (0: 465, dry 100)")
    r.add_argument("--started", type=float, default=0, help="epoch seconds the check began")
    r.add_argument("--install", default="", help="STATUS:SECONDS of the script's install step")
    w = sub.add_parser("bench-worker", help="internal: measure the variants of a spec file")
    w.add_argument("spec", type=Path)
    w.add_argument("results", type=Path)
    args = p.parse_args(argv)
    if args.command == "bench-worker":
        return bench_worker(args.spec, args.results)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
