"""Run a short training and record every host synchronisation, with the step it happened in.

`python -m tests.integration.host_sync_probe CONFIG --out result.json [overrides...]`, as one
process or under torchrun. Two detectors:

- `--detect calls` (any device): torch.Tensor.item / tolist / cpu / numpy / __bool__ / __float__
  / __int__ are wrapped with a recorder. On a CPU run these are not device syncs, but they are
  the calls that are one on a GPU (they wait for the value), so a steady-state step must not make
  them. torch.optim reads its step counters with .item() (`_get_value`): those counters are host
  tensors on every device (no sync), so those calls are not recorded.
- `--detect cuda`: torch.cuda.set_sync_debug_mode("warn"); every synchronising CUDA call (a
  blocking copy, .item(), a stream sync) warns, and each warning is recorded.

Each record carries the phase it happened in: ("step", n) inside `train_step` for step n, or
("loop", n) in the loop's work after step n (logging, samples, checkpoints, the stop check). The
JSON names the steps that are steady state: neither a logged, sampled, checkpointed or evaluated
step nor the last one, and past the first two (warm-up: optimizer state, DDP buckets, the stop
check's group).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch

WATCHED = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")
WARMUP = 2


class Recorder:
    def __init__(self) -> None:
        self.phase: tuple[str, int] = ("setup", 0)
        self.records: list[dict[str, Any]] = []

    def add(self, what: str) -> None:
        self.records.append(
            {"phase": self.phase[0], "step": self.phase[1], "what": what, "where": _where()}
        )


def _where() -> str:
    """The innermost frame outside torch and this file: who asked for the value."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        f = frame.filename
        if "/torch/" not in f and not f.endswith("host_sync_probe.py"):
            return f"{f}:{frame.lineno} ({frame.name})"
    return "torch"


def _optimizer_step_count() -> bool:
    """torch.optim's `_get_value(step)`: the optimizers keep their step counts on the host."""
    code = sys._getframe(2).f_code
    return code.co_name == "_get_value" and code.co_filename.endswith("torch/optim/optimizer.py")


def watch_calls(rec: Recorder) -> None:
    for name in WATCHED:
        original = getattr(torch.Tensor, name)

        def wrapper(self: torch.Tensor, *a: Any, _name: str = name, _f: Any = original, **k: Any):
            if not _optimizer_step_count():
                rec.add(f"Tensor.{_name}")
            return _f(self, *a, **k)

        setattr(torch.Tensor, name, wrapper)


def watch_cuda(rec: Recorder) -> None:
    torch.cuda.set_sync_debug_mode("warn")
    warnings.simplefilter("always")
    shown = warnings.showwarning

    def record(message: Any, category: Any, filename: str, lineno: int, *a: Any, **k: Any) -> None:
        if "synchroniz" in str(message):
            rec.add(f"cuda sync: {str(message)[:120]}")
        else:
            shown(message, category, filename, lineno, *a, **k)

    warnings.showwarning = record


def steady_steps(cfg: Any) -> list[int]:
    t, every = cfg.train, cfg.eval.every

    def busy(s: int) -> bool:
        cadences = (t.log_every, t.sample_every, t.checkpoint_every, every)
        return s == t.steps or any(c and s % c == 0 for c in cadences)

    return [s for s in range(WARMUP + 1, t.steps) if not busy(s)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.integration.host_sync_probe")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--out", type=Path, required=True, help="rank 0's JSON (rank r: .rank<r>.json)")
    p.add_argument("--detect", choices=("calls", "cuda"), default="calls")
    args = p.parse_intermixed_args(argv)

    from gandist.config import load_config
    from gandist.training.trainer import Trainer

    cfg = load_config(args.config, args.overrides)
    trainer = Trainer(cfg)
    rec = Recorder()
    inner = trainer.train_step

    def train_step() -> dict[str, torch.Tensor]:
        rec.phase = ("step", trainer.step + 1)
        out = inner()
        rec.phase = ("loop", trainer.step)
        return out

    trainer.train_step = train_step  # type: ignore[method-assign]
    if args.detect == "calls":
        watch_calls(rec)
    else:
        watch_cuda(rec)
    result = trainer.fit()
    steady = steady_steps(cfg)
    bad = [r for r in rec.records if r["phase"] in ("step", "loop") and r["step"] in steady]
    out = {
        "world_size": trainer.acc.num_processes,
        "device": trainer.acc.device.type,
        "steps": result.step,
        "steady_steps": steady,
        "steady_syncs": bad,
        "all_syncs": len(rec.records),
        "records": rec.records,
    }
    rank = trainer.acc.process_index
    path = args.out if rank == 0 else args.out.with_suffix(f".rank{rank}.json")
    path.write_text(json.dumps({"rank": rank, **out}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
