"""Signals -> one agreed stop step on every rank -> checkpoint -> status file and exit code.

Contract with the launch scripts (slurm/, k8s/):
- SIGTERM (preemption, `kubectl delete`, torchrun forwarding its own SIGTERM) and SIGUSR1
  (`#SBATCH --signal=B:USR1@<s>` relayed by the batch script) ask the run to stop. Every rank
  checks the request at each step boundary with one allreduce(MAX), so all ranks stop after the
  same step even when only some of them were signalled.
- The run then saves a checkpoint at that step and writes `<run>/status.json`:
  {"state": "preempted", "step": N, "checkpoint": ..., "signal": "SIGUSR1"}, and every process
  exits with EXIT_PREEMPTED (75, EX_TEMPFAIL: "try again"). A finished run writes
  {"state": "completed", ...} and exits 0; a crash writes {"state": "failed", "error": ...}.
- torchrun and `accelerate launch` exit 1 whenever a worker exits non-zero, so scripts must read
  status.json (not the launcher's exit code) to decide whether to requeue; `train.resume=auto`
  then continues from `checkpoints/latest`.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist

EXIT_PREEMPTED = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
STATUS_FILE = "status.json"


class StopRequest:
    """Records a stop signal; `agreed()` turns per-rank requests into one decision."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> StopRequest:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Only set a flag: the step finishes, then all ranks stop together.
        self.signal_name = signal.Signals(signum).name

    def agreed(self, device: torch.device) -> bool:
        """True on every rank if any rank was signalled (a collective: call on all ranks)."""
        local = self.signal_name is not None
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return local
        flag = torch.tensor([1 if local else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and self.signal_name is None:
            self.signal_name = "peer"  # another rank was signalled
        return bool(flag.item())


def write_status(run_dir: Path, state: str, **fields: Any) -> Path:
    """Atomically write `<run>/status.json` (read by slurm/ and k8s/ scripts)."""
    path = Path(run_dir) / STATUS_FILE
    tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"state": state, "time": time.time(), **fields}, indent=2))
    os.replace(tmp, path)
    return path
