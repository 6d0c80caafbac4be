"""Training img/s on 1 process vs N processes at the same global batch (strong scaling).

Each process count is a real `torchrun --standalone --nproc_per_node N` launch of
`benchmarks.scaling_worker` (on a CPU-only host with ACCELERATE_USE_CPU=1; `accelerate launch
--cpu --num_processes N` would start a single process there). The world size every launch got is
checked by the workers and again here. Launches alternate between the process counts
(`--launches` rounds) so that load from other jobs on a shared machine hits each alike. On CPU the
cores are split evenly: N processes get cpu_count / N threads each unless `--threads` says
otherwise, so 1 and N processes use the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import machine, median, rounded, settings
from benchmarks.recipes import add_model_arguments

REPO = Path(__file__).resolve().parents[1]


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--nprocs", default="1,2", help="comma-separated process counts")
    p.add_argument("--launches", type=int, default=1, help="alternating launches per count")
    p.add_argument("--threads", type=int, default=0, help="per process (0: cpu_count / N)")
    p.add_argument("--timeout", type=int, default=300, help="seconds per launch")


def launch(n: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One torchrun launch of n workers; returns rank 0's JSON."""
    result = work / f"result-{n}.json"
    result.unlink(missing_ok=True)
    model = ["--model", args.model, "--batch", str(args.batch), "--width", str(args.width)]
    timing = ["--steps", str(args.steps), "--reps", str(args.reps)]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free local port: no clash with other jobs on the machine
        "--nproc_per_node",
        str(n),
        "-m",
        "benchmarks.scaling_worker",
        *model,
        *timing,
        "--precision",
        args.precision,
        "--world-size",  # (not --nproc: torchrun would take it for --nproc-per-node)
        str(n),
        "--workdir",
        str(work / f"runs-{n}"),
        "--result",
        str(result),
    ]
    threads = args.threads or max(1, (os.cpu_count() or 1) // n)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "WANDB_SILENT": "true"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("WORLD_SIZE", None)
    if not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "1"
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=args.timeout
    )
    if proc.returncode != 0 or not result.is_file():
        tail = f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}\n{tail}")
    out = json.loads(result.read_text())
    if out["world_size"] != n:
        raise RuntimeError(f"launched {n} processes, the run had world size {out['world_size']}")
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    counts = [int(n) for n in args.nprocs.split(",")]
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.launches):
            for n in counts:
                runs[n].append(launch(n, args, Path(tmp)))
    per_n: dict[str, Any] = {}
    for n, outs in runs.items():
        step = [v for o in outs for v in o["ms"]["step"]]
        checked = [v for o in outs for v in o["ms"]["step_with_stop_check"]]
        ms = median(step)
        images = args.batch * outs[0]["n_critic"]
        per_n[str(n)] = {
            "world_size": n,
            "threads_per_process": outs[0]["threads_per_process"],
            "device": outs[0]["device"],
            "ms_per_step": round(ms, 2),
            "img_per_s": round(images / ms * 1000.0, 1),
            # the per-step stop check (StopRequest.poll) in the step (paired, noisy); the host
            # time of a poll in the loop; the blocking agreement (the round trip poll hides)
            "stop_check_ms_per_step": round(median(checked) - ms, 3),
            "stop_poll_alone_ms": round(median([o["stop_poll_alone_ms"] for o in outs]), 3),
            "stop_check_alone_ms": round(median([o["stop_check_alone_ms"] for o in outs]), 3),
            "reps_ms": {"step": rounded(step), "step_with_stop_check": rounded(checked)},
        }
    base = per_n.get("1")
    for entry in per_n.values():
        speedup = entry["img_per_s"] / base["img_per_s"] if base else None
        entry["speedup_vs_1"] = round(speedup, 3) if speedup else None
        entry["efficiency"] = round(speedup / entry["world_size"], 3) if speedup else None
    return {
        "benchmark": "scaling",
        "machine": machine(),
        "settings": settings(args),
        "global_batch": args.batch,
        "processes": per_n,
    }
