"""Real processes: 2 torchrun ranks x 2 loader workers stream one epoch of shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import REPO
from tests.shard_fixtures import make_shards

SCRIPT = """
import json, os, sys
import torch.distributed as dist
from gandist.data.shards.stream import ShardStream, resolve_shards
from tests.shard_fixtures import indices_of

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
urls, m = resolve_shards(sys.argv[1])
s = ShardStream(urls, m, 16, rank, world, seed=3, workers=2, shuffle_buffer=32)
epochs = []
for _ in range(2):
    n = s.batches_per_epoch
    epochs.append([indices_of(next(s)[0]) for _ in range(n)])
with open(os.path.join(sys.argv[2], f"rank{rank}.json"), "w") as fh:
    json.dump({"world": world, "epochs": epochs}, fh)
dist.destroy_process_group()
"""


def test_two_ranks_two_workers_one_epoch(tmp_path: Path) -> None:
    shards = make_shards(tmp_path / "shards", [23, 20, 25, 18, 22, 24, 21, 19, 30])
    script = tmp_path / "epoch.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        str(shards),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    for e in range(2):
        counts = [len(r["epochs"][e]) for r in ranks]
        assert counts[0] == counts[1] > 0  # equal batch counts: no DDP hang
        seen = [i for r in ranks for b in r["epochs"][e] for i in b]
        assert all(len(b) == 8 for r in ranks for b in r["epochs"][e])
        assert len(seen) == len(set(seen))  # nothing twice within the epoch
        # coverage: only per-worker partial batches and the rank imbalance are dropped
        assert len(seen) >= 202 - 2 * 2 * 7 - 16 * 2
    assert ranks[0]["epochs"][0] != ranks[0]["epochs"][1]  # reshuffled per epoch
