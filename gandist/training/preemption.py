"""Signals -> one agreed stop step on every rank -> checkpoint -> status file and exit code.

Contract with the launch scripts (slurm/, k8s/):
- SIGTERM (preemption, `kubectl delete`, torchrun forwarding its own SIGTERM) and SIGUSR1
  (`#SBATCH --signal=B:USR1@<s>` relayed by the batch script) ask the run to stop. Every rank
  reports its request at each check (every `dist.stop_check_every` steps) in one allreduce(MAX),
  so all ranks stop after the same step even when only some of them were signalled. The
  allreduce is asynchronous and read at the next check, so a training step never waits for it:
  a stop takes effect one check later than the signal (see `StopRequest.poll`).
- The run then saves a checkpoint at that step and writes `<run>/status.json`:
  {"state": "preempted", "step": N, "checkpoint": ..., "signal": "SIGUSR1"}, and every process
  exits with EXIT_PREEMPTED (75, EX_TEMPFAIL: "try again"). A finished run writes
  {"state": "completed", ...} and exits 0; a crash writes {"state": "failed", "error": ...}.
- torchrun and `accelerate launch` exit 1 whenever a worker exits non-zero, so scripts must read
  status.json (not the launcher's exit code) to decide whether to requeue; `train.resume=auto`
  then continues from `checkpoints/latest`.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import TYPE_CHECKING, Any

from gandist.run_files import EXIT_PREEMPTED, write_status  # noqa: F401 - re-exported

if TYPE_CHECKING:
    import torch

# torch is imported on first use: `gandist train` installs the handlers before its heavy imports,
# so a stop during start-up (imports, shard writing, W&B) is honoured too.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopRequest:
    """Records a stop signal; `poll()` (or the blocking `agreed()`) turns per-rank requests into
    one decision."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}
        # The reduction in flight: its work handle; the flag it reduces and a numpy view of it.
        self._work: Any = None
        self._flag: torch.Tensor | None = None
        self._flag_np: Any = None
        self._group: Any = None

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

    def poll(self) -> bool:
        """The stop decision, one check late and without blocking (a collective: every rank
        calls it at the same steps).

        Each call first reads the allreduce(MAX) of the flags that the previous call launched,
        then launches the next one with this rank's flag. Every rank decides from the same
        completed reduction, so all stop at the same step; a signal is acted on at the second
        check after it arrives (the first check launches it), not at the first. The reduction
        runs over a gloo group of host tensors, so reading it never waits for a GPU, and it has
        had a whole check interval to complete: `wait()` returns at once unless a rank lags a
        full interval behind. One process: no reduction, the local flag at once.
        """
        local = self.signal_name is not None
        if not _distributed():
            return local
        import torch
        import torch.distributed as dist

        if self._work is not None:
            self._work.wait()
            self._work = None
            if self._flag_np[0]:
                if self.signal_name is None:  # another rank was signalled: its signal's name
                    self.signal_name = _name(int(self._flag_np[0]))
                return True
        if self._flag is None:
            # Host memory and gloo whatever the training backend (NCCL included): the flag never
            # touches a device. new_group is a collective; every rank reaches it at this call.
            self._group = dist.new_group(backend="gloo")
            self._flag = torch.zeros(1, dtype=torch.int32)
            self._flag_np = self._flag.numpy()  # reads and writes without tensor ops
        self._flag_np[0] = self._signum() if local else 0
        self._work = dist.all_reduce(
            self._flag, op=dist.ReduceOp.MAX, group=self._group, async_op=True
        )
        return False

    def drain(self) -> None:
        """Finish a reduction still in flight (every rank launched it; no new collective)."""
        if self._work is not None:
            self._work.wait()
            self._work = None

    def agreed(self, device: torch.device) -> bool:
        """True on every rank if any rank was signalled, decided now (a blocking collective:
        call on all ranks). The training loop uses `poll()` instead."""
        local = self.signal_name is not None
        if not _distributed():
            return local
        import torch
        import torch.distributed as dist

        flag = torch.tensor([self._signum() if local else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and self.signal_name is None:
            self.signal_name = _name(int(flag.item()))  # another rank was signalled
        return bool(flag.item())

    def _signum(self) -> int:
        """This rank's signal as a number for the MAX reduction (SIGTERM wins over SIGUSR1), so
        every rank, and status.json, names the signal a peer got."""
        try:
            return int(signal.Signals[self.signal_name or ""])
        except KeyError:
            return 255  # not a signal number: named "peer"


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "peer"  # a rank's stop without a signal of its own


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
