"""Every `gandist ...` command line in the README and docs (also after `torchrun ... -m` or
`accelerate launch ... -m`) parses as written (options and dotted overrides in any order), and
each `gandist train` / `gandist config` of a shipped config resolves with its overrides, so the
documentation cannot drift from the CLI or the config keys."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gandist.cli import parse
from gandist.config import load_config

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
            text = re.sub(r"^(torchrun|accelerate launch|python) .*?-m gandist ", "gandist ", text)
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


def resolvable(command: str) -> bool:
    """A train/config command of a config in this checkout, without shell placeholders."""
    argv = shlex.split(command)[1:]
    return (
        len(argv) >= 2
        and argv[0] in ("train", "config")
        and (REPO / argv[1]).is_file()
        and not any(c in command for c in "$<")
    )


RESOLVED = [(w, c) for w, c in COMMANDS if resolvable(c)]


def test_launcher_lines_are_found() -> None:
    assert any("-m gandist" in line for line in (REPO / "README.md").read_text().splitlines())
    assert any(w.startswith("README.md") and "dcgan_digits" in c for w, c in COMMANDS)
    assert len(RESOLVED) > 10


@pytest.mark.parametrize(("where", "command"), RESOLVED, ids=[w for w, _ in RESOLVED])
def test_documented_config_resolves(where: str, command: str) -> None:
    args = parse(shlex.split(command)[1:])
    try:
        load_config(REPO / args.config, args.overrides)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as exc:
        pytest.fail(f"{where}: `{command}`: {exc}")


def test_overrides_after_options() -> None:
    args = parse(["eval", "runs/cdcgan_shapes", "--n", "10000", "eval.nearest_k=3"])
    assert args.overrides == ["eval.nearest_k=3"] and args.n == 10000
    args = parse(["train", "c.yaml", "a.b=1", "c.d=2"])
    assert args.overrides == ["a.b=1", "c.d=2"]
    args = parse(["sweep", "s.yaml", "--index", "3", "train.steps=5"])
    assert args.overrides == ["train.steps=5"] and args.index == 3
