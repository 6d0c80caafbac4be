"""docs/cluster.md's SLURM "Variables" section names every GANDIST_* variable the SLURM scripts
read, so a new knob cannot ship undocumented (text only; tests/cluster/ runs the scripts)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VARIABLE = re.compile(r"\bGANDIST_[A-Z][A-Z_]*[A-Z]\b")


def variables_section() -> str:
    text = (REPO / "docs" / "cluster.md").read_text()
    start = text.index("### Variables", text.index("\n## SLURM"))
    end = text.find("\n#", start + 1)
    return text[start : end if end > 0 else None]


def test_every_slurm_variable_is_documented() -> None:
    read = {v for f in (REPO / "slurm").glob("*.sh") for v in VARIABLE.findall(f.read_text())}
    assert {"GANDIST_HOME", "GANDIST_LAUNCHER", "GANDIST_MIXED_PRECISION"} <= read
    missing = sorted(read - set(VARIABLE.findall(variables_section())))
    assert not missing, f"docs/cluster.md 'Variables' does not name {missing}"
