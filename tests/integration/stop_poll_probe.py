"""`torchrun ... -m tests.integration.stop_poll_probe OUT_DIR`: StopRequest.poll on a real process
group. The last rank is "signalled" just before poll 3; every rank records what each poll
returned and the signal name it ended with (one JSON per rank)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist

from gandist.training.preemption import StopRequest

SIGNALLED_AT = 3


def main(argv: list[str]) -> int:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    stop = StopRequest()
    answers = []
    for i in range(8):
        if rank == world - 1 and i == SIGNALLED_AT:
            stop.signal_name = "SIGTERM"
        answers.append(stop.poll())
        if answers[-1]:
            break
    stop.drain()
    out = {"rank": rank, "world": world, "answers": answers, "signal": stop.signal_name}
    (Path(argv[0]) / f"rank{rank}.json").write_text(json.dumps(out))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
