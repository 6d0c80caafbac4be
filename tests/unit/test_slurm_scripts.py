"""The SLURM scripts locate the repository with the same `gandist_home` block: it must run before
slurm/lib.sh can be sourced, so it cannot live there and is copied; this keeps the copies equal."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^gandist_home\(\) \{\n.*?^\}\n", re.S | re.M)


def test_every_slurm_script_has_the_same_gandist_home() -> None:
    scripts = sorted(p for p in (REPO / "slurm").glob("*.sh") if p.name != "lib.sh")
    blocks = {p.name: BLOCK.findall(p.read_text()) for p in scripts}
    assert len(scripts) >= 4
    assert all(len(b) == 1 for b in blocks.values()), {k: len(v) for k, v in blocks.items()}
    assert len({b[0] for b in blocks.values()}) == 1, "gandist_home differs between scripts"
