"""One process of the scaling benchmark; `benchmarks.scaling` starts N of these with torchrun.

Every rank builds the real Trainer (DDP over gloo on CPU, NCCL on GPUs), checks that the world
size it got is the one launched, and times windows of outer steps, taking turns between the bare
`train_step` and `train_step` plus the stop-signal check the training loop makes after every
step by default (`dist.stop_check_every=1`: `StopRequest.poll`, an asynchronous allreduce read at
the next check), so the price of that check is measured too; and the host time of each poll in
that loop, and the blocking agreement by itself (`StopRequest.agreed`: one allreduce and a host
sync, the round trip the poll hides). Rank 0 writes the times as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from benchmarks.common import time_ms
from benchmarks.recipes import add_model_arguments, bench_config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling_worker")
    add_model_arguments(p)
    p.add_argument("--world-size", type=int, required=True, help="the world size launched")
    p.add_argument("--workdir", type=Path, required=True, help="run directory root (shared)")
    p.add_argument("--result", type=Path, required=True, help="rank 0 writes its JSON here")
    args = p.parse_args(argv)

    import torch

    from gandist.training.preemption import StopRequest
    from gandist.training.trainer import Trainer

    world = f"dist.world_size={args.world_size}"
    cfg = bench_config(args.model, args.batch, args.width, args.precision, args.workdir, world)
    trainer = Trainer(cfg)  # raises if accelerate sees another world size than launched
    acc = trainer.acc
    if acc.num_processes != args.world_size:
        raise RuntimeError(f"launched {args.world_size} processes, got {acc.num_processes}")
    stop = StopRequest()  # not installed: only its per-step agreement is exercised

    poll_s: list[float] = []

    def step_and_check() -> None:
        trainer.train_step()
        t0 = time.perf_counter()
        stop.poll()
        poll_s.append(time.perf_counter() - t0)

    fns = {"step": trainer.train_step, "step_with_stop_check": step_and_check}
    for fn in fns.values():
        time_ms(fn, 2, acc.device)  # warm-up
    ms: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.reps):
        for k, fn in fns.items():
            acc.wait_for_everyone()  # ranks start each window together
            ms[k].append(time_ms(fn, args.steps, acc.device))
    acc.wait_for_everyone()
    stop.drain()
    poll_ms = 1000.0 * statistics.median(poll_s)  # host time of one poll, a step after the last
    # The blocking check with the ranks in step: the allreduce's round trip, what poll hides.
    check_ms = time_ms(lambda: stop.agreed(acc.device), 20, acc.device)
    if acc.is_main_process:
        result = {
            "world_size": acc.num_processes,
            "device": acc.device.type,
            "distributed_type": str(acc.distributed_type),
            "threads_per_process": torch.get_num_threads(),
            "n_critic": cfg.train.n_critic,
            "ms": ms,
            "stop_check_alone_ms": check_ms,
            "stop_poll_alone_ms": poll_ms,
        }
        args.result.write_text(json.dumps(result))
    acc.wait_for_everyone()
    acc.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
