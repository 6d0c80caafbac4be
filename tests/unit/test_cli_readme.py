"""Every `gandist ...` command line in the README and docs parses as written (options and dotted
overrides in any order), so the documentation cannot drift from the CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gandist.cli import parse

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def documented_commands() -> list[tuple[str, str]]:
    """(file:line, command) for each `gandist ...` line inside a fenced code block."""
    found = []
    for doc in DOCS:
        fenced, pending = False, ""
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced, pending = not fenced, ""
                continue
            text = pending + re.sub(r"\s+#.*$", "", line).strip()
            if text.endswith("\\"):  # continued on the next line
                pending = text[:-1] + " "
                continue
            pending = ""
            text = re.sub(r"^(\$\(BIN\)/|\.venv/bin/|\$ )", "", text)
            if fenced and text.startswith("gandist "):
                found.append((f"{doc.name}:{n}", text))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) > 20


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_parses(where: str, command: str) -> None:
    argv = shlex.split(command)[1:]
    try:
        parse(argv)
    except SystemExit as exc:  # argparse reports a bad command line by exiting 2
        pytest.fail(f"{where}: `{command}` does not parse (exit {exc.code})")


def test_overrides_after_options() -> None:
    args = parse(["eval", "runs/cdcgan_shapes", "--n", "10000", "eval.nearest_k=3"])
    assert args.overrides == ["eval.nearest_k=3"] and args.n == 10000
    args = parse(["train", "c.yaml", "a.b=1", "c.d=2"])
    assert args.overrides == ["a.b=1", "c.d=2"]
    args = parse(["sweep", "s.yaml", "--index", "3", "train.steps=5"])
    assert args.overrides == ["train.steps=5"] and args.index == 3
