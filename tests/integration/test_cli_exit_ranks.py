"""2 processes: a finished `gandist` command leaves its process group only when every rank has
finished its collectives.

CI saw rank 1 of a 2-process `gandist eval --rejection` abort ("terminate called without an
active exception") after rank 0 had written the results: rank 1 returns right after its last
collective (a reduce) while rank 0 still scores, and reached interpreter teardown while a gloo
worker thread still held that collective's tensors. Destroying the group did not stop those
threads once torch._dynamo was imported (torchmetrics imports it in `gandist eval`). The script
below is that shape: the same imports, a reduce, then rank 0 busy for a while before it leaves.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import cpu_torchrun_env

REPO = Path(__file__).resolve().parents[2]
BUSY = 2.0  # seconds rank 0 spends after the last collective (scoring, writing results)

SCRIPT = f"""
import argparse, json, sys, time
from pathlib import Path
import torch, torch.distributed as dist
from accelerate import Accelerator
from gandist import cli

def command(args):
    acc = Accelerator(cpu=True)
    import torch._dynamo  # noqa: F401  (what torchmetrics imports in `gandist eval`)
    acc.reduce(torch.ones(1, dtype=torch.float64), reduction="sum")  # the last collective
    if acc.is_main_process:
        time.sleep({BUSY})
    args.report.update(rank=acc.process_index, world=acc.num_processes, leaving=time.time())
    return 0

report = {{}}
cli.parse = lambda argv: argparse.Namespace(func=command, report=report)
code = cli.main([])
report.update(left=time.time(), code=code, initialized=dist.is_initialized())
Path(sys.argv[1], f"rank{{report['rank']}}.json").write_text(json.dumps(report))
"""


def test_ranks_leave_the_group_together(tmp_path: Path) -> None:
    script = tmp_path / "leave.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**cpu_torchrun_env(), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [*cmd, str(script), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (r0["world"], r1["world"]) == (2, 2)
    assert r0["code"] == r1["code"] == 0
    assert not r0["initialized"] and not r1["initialized"]
    # rank 1 finished its part at once, but left only after rank 0 had finished its own
    assert r1["leaving"] < r0["leaving"] - BUSY / 2
    assert r1["left"] >= r0["leaving"]
