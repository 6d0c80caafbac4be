"""Write constraints.txt: the exact versions, installed in this venv, of everything that
`pip install -e '.[dev]'` pulls in (the dependency closure of gandist[dev], nothing else).

Why: pyproject.toml states the ranges gandist works with; constraints.txt pins one tested point
inside them, so `make install` and the Dockerfile build the same set a month apart. Refresh it
after upgrading the venv on purpose (`make constraints`), run the tests, commit both.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEADER = """\
# Exact versions of gandist[dev]'s whole dependency closure, as tested: written from the dev
# venv by scripts/update_constraints.py (`make constraints` refreshes it). Used by `make install`
# (pip install -c constraints.txt -e .[dev]) and by the Dockerfile. A local build tag is ignored
# by `==`, so torch==X matches X+cpu or X+cu130 alike: the index picks the build, this file the
# version.
"""


def closure(root: str, extras: set[str]) -> dict[str, str]:
    """name -> installed version for `root[extras]` and everything it requires, transitively.

    Markers are evaluated for this machine (Linux): the CUDA wheels Linux torch needs are in.
    """
    env = default_environment()
    versions: dict[str, str] = {}
    done: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset(extras))]
    while todo:
        item = todo.pop()
        if item in done:
            continue
        done.add(item)
        name, wanted = item
        dist = metadata.distribution(name)
        versions[canonicalize_name(dist.metadata["Name"])] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(
                req.marker.evaluate({**env, "extra": e}) for e in (*wanted, "")
            ):
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    versions.pop(canonicalize_name(root), None)
    return versions


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("constraints.txt")
    pins = closure("gandist", {"dev"})
    lines = [f"{name}=={pins[name]}" for name in sorted(pins)]
    out.write_text(HEADER + "\n".join(lines) + "\n")
    print(f"{out}: {len(lines)} pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
