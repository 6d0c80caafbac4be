"""Packaging hygiene: an SPDX license string (no setuptools deprecation warnings), every direct
import declared, the version written once, and constraints.txt pinning the whole dependency set
that `make install` and the Dockerfile install."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def declared(group: list[str]) -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in group]
    return {canonicalize_name(r.name): r for r in reqs}


def constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+!-]+)", line)
        assert m, f"constraints.txt: {line!r} is not an exact name==version pin"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"constraints.txt pins {name} twice"
        pins[name] = m.group(2)
    return pins


def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    requires = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    setuptools = next(r for r in requires if r.name == "setuptools")
    assert not setuptools.specifier.contains("76.9") and setuptools.specifier.contains("77.0")


def test_version_is_written_once() -> None:
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "gandist.__version__"
    tree = ast.parse((REPO / "gandist" / "__init__.py").read_text())
    literal = [
        n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign)
        and [getattr(t, "id", "") for t in n.targets] == ["__version__"]
        and isinstance(n.value, ast.Constant)
    ]
    assert len(literal) == 1 and Version(literal[0])  # a static literal: setuptools reads it
    hits = [
        p
        for p in (REPO / "gandist").rglob("*.py")
        if re.search(r"__version__\s*=", p.read_text()) and p.name != "__init__.py"
    ]
    assert not hits, f"a second version string in {hits}"


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(module-level, function-level) third-party top-level import names of one file."""
    tree = ast.parse(path.read_text())
    top, inner = set(), set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module.split(".")[0]]
        names = [n for n in names if n not in sys.stdlib_module_names and n != "gandist"]
        (top if node in tree.body else inner).update(names)
    return top, inner


def test_every_direct_import_is_declared() -> None:
    """Module-level imports need a dependency; lazy ones (inside functions) may use an extra."""
    runtime = set(declared(PROJECT["dependencies"]))
    extras = {n for group in PROJECT["optional-dependencies"].values() for n in declared(group)}
    dists = metadata.packages_distributions()
    missing: list[str] = []
    for path in sorted((REPO / "gandist").rglob("*.py")):
        top, inner = _imports(path)
        for names, allowed in ((top, runtime), (inner, runtime | extras)):
            for name in sorted(names):
                owners = {canonicalize_name(d) for d in dists.get(name, [name])}
                if not owners & allowed:
                    missing.append(f"{path.relative_to(REPO)}: {name} ({', '.join(owners)})")
    assert not missing, "imported but not declared in pyproject.toml:\n" + "\n".join(missing)
    for name in ("numpy", "pillow", "braceexpand"):
        assert name in runtime


def test_constraints_pin_every_declared_package_inside_its_range() -> None:
    pins = constraints()
    groups = [PROJECT["dependencies"], *PROJECT["optional-dependencies"].values()]
    for group in groups:
        for name, req in declared(group).items():
            assert name in pins, f"constraints.txt does not pin {name} (make constraints)"
            assert req.specifier.contains(pins[name], prereleases=True), (
                f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {req}"
            )
    assert "gandist" not in pins and "torch" in pins and "torchvision" in pins


def test_constraints_match_this_environment() -> None:
    """The tests run on the pinned set (make install uses -c constraints.txt); a deliberate
    upgrade re-pins with `make constraints`. Local build tags (+cu130, +cpu) are ignored."""
    wrong = []
    for name, pin in constraints().items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # e.g. the CUDA wheels under a CPU-only torch
        if Version(have).public != Version(pin).public:
            wrong.append(f"{name}: installed {have}, pinned {pin}")
    assert not wrong, "constraints.txt differs from the installed set:\n" + "\n".join(wrong)


def test_make_install_and_the_dockerfile_use_the_constraints() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"pip install .*-c constraints\.txt -e '\.\[dev\]'", makefile)
    assert re.search(r"^\$\(STAMP\):.*constraints\.txt", makefile, re.M)
    docker = (REPO / "Dockerfile").read_text()
    assert "COPY constraints.txt /opt/venv/constraints.txt" in docker
    # Both layers that resolve dependencies (torch, then the project's) are constrained.
    assert docker.count("--constraint /opt/venv/constraints.txt") == 2


def test_building_the_wheel_prints_no_deprecation_warning(tmp_path: Path) -> None:
    """The setuptools warnings `make demo` printed (license as a TOML table) are gone. Built
    from a copy with this venv's setuptools (no download), verbose so warnings show."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "gandist", src / "gandist", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
         "-v", "-w", str(tmp_path / "wheel")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert not re.search(r"DeprecationWarning|BuildBackendWarning|deprecated", log, re.I), log
    wheel = next((tmp_path / "wheel").glob("gandist-*.whl"))
    import gandist

    assert wheel.name.startswith(f"gandist-{gandist.__version__}-")
