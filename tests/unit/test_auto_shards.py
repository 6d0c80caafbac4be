"""Two runs starting at once on a cold shard cache (a sweep, two jobs on one node) both train:
one writes the auto shards while the other waits for it, instead of both writing the same files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WRITE = """
import sys
from gandist.config import DataConfig
from gandist.data.pipeline import ensure_shards
cfg = DataConfig(source="digits", root=sys.argv[1], image_size=16)
out = ensure_shards(cfg, True, lambda: None)
print(sorted(p.name for p in out.iterdir() if p.suffix == ".tar"))
"""


def test_concurrent_cold_starts_share_one_shard_write(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITE, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    listings = [out.strip().splitlines()[-1] for out, _ in outs]
    assert listings[0] == listings[1] and ".tar" in listings[0]
    wrote = sum("wrote shards" in out for out, _ in outs)
    assert wrote == 1  # the second found them complete
