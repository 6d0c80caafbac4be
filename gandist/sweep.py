"""`gandist sweep`: a grid of dotted overrides over one base config, one run per grid point.

A sweep file names a base config, overrides applied to every point and a grid:

    name: wgan_digits              # optional; default: the file's stem
    config: ../wgan_digits.yaml    # relative to the sweep file's directory (or absolute)
    overrides: [train.steps=300]   # every point
    grid:
      lr:                          # a tie (a mapping): its keys move together, one axis
        optim.d.lr: [5.0e-5, 1.0e-4, 2.0e-4]
        optim.g.lr: [5.0e-5, 1.0e-4, 2.0e-4]
      loss.clip_value: [0.005, 0.01, 0.02]
      train.n_critic: [1, 5]

Points are the cartesian product of the axes in the order the file lists them, the last axis
varying fastest (nested loops), so an index names the same point on every machine: this is what
lets a SLURM array task `i` train point `i` without any coordination. Each point is trained as
`gandist train <config> <overrides> <point's values> train.run_name=<sweep>-<iii>-<summary>
tracking.group=<sweep>`. Every point's config is loaded before anything trains, so a typo in
the grid fails in seconds, not after the first 17 runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import itertools
import json
import math
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gandist.config import (
    ConfigError,
    UniqueKeyLoader,
    _fix_yaml11_floats,
    load_config,
    parse_override,
)

# The sweep sets these itself: a shared run_name would put every point in one directory.
RESERVED_KEYS = ("train.run_name", "tracking.group")
TOP_LEVEL_KEYS = ("name", "config", "overrides", "grid")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LABEL_RE = re.compile(r"^[A-Za-z0-9_]+$")


class SweepError(ConfigError):
    """A sweep file, or one of its grid points, that cannot be used; names the file and key."""


@dataclass(frozen=True)
class Axis:
    """One dimension of the grid: a single dotted key, or a tie of several moving together."""

    label: str  # the key's name in run names (a tie's own name)
    keys: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]  # per position along the axis: one value per key


@dataclass(frozen=True)
class Sweep:
    path: Path
    name: str
    config: Path
    overrides: tuple[str, ...]
    axes: tuple[Axis, ...]

    @property
    def size(self) -> int:
        return math.prod(len(a.values) for a in self.axes)


@dataclass(frozen=True)
class Point:
    index: int
    assignments: tuple[str, ...]  # this point's grid values as `key=value`, in axis order
    run_name: str
    overrides: tuple[str, ...]  # everything passed to load_config, in order


# ---------------------------------------------------------------- the sweep file


def _fail(path: Path, where: str, msg: str) -> SweepError:
    return SweepError(f"{path}: {where}: {msg}")


def _override_key(text: str) -> str:
    parse_override(text)  # raises ConfigError on a malformed override
    return text.partition("=")[0].strip()


def _overlap(a: str, b: str) -> bool:
    """Whether two dotted keys set the same value (equal, or one is a section of the other)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def read_base(path: Path, raw: dict[str, Any]) -> tuple[Path, list[str]]:
    """The `config:` and `overrides:` of a file that builds on a shipped config (a sweep, or an
    experiment's reference to a recipe): the config's path, relative to the file so it works
    from any working directory (SLURM jobs), and overrides that each parse as key=value."""
    config = raw.get("config")
    if not isinstance(config, str) or not config.strip():
        raise _fail(path, "config", "the base config file is required, e.g. config: ../x.yaml")
    config_path = Path(os.path.normpath(path.parent / config))
    if not config_path.is_file():
        raise _fail(
            path, "config", f"{config_path} not found (relative paths are from {path.parent})"
        )
    overrides = raw.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise _fail(path, "overrides", "expected a list of key=value strings")
    for text in overrides:
        try:
            _override_key(text)
        except ConfigError as exc:
            raise _fail(path, "overrides", str(exc)) from None
    return config_path, overrides


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file's structure (the configs are checked by `check_points`)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"{path}: sweep file not found")
    try:
        raw = yaml.load(path.read_text(), Loader=UniqueKeyLoader)  # noqa: S506 (safe)
    except yaml.YAMLError as exc:
        raise SweepError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: the top level must be a mapping (config, overrides, grid)")
    raw = _fix_yaml11_floats(raw)  # `1e-4` is a number here too, as in configs
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            close = difflib.get_close_matches(str(key), TOP_LEVEL_KEYS, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise _fail(path, str(key), f"unknown key{hint} (valid: {', '.join(TOP_LEVEL_KEYS)})")

    name = str(raw.get("name") or path.stem)
    if not _NAME_RE.match(name):
        raise _fail(path, "name", f"{name!r}: use letters, digits, '.', '_' and '-'")

    config_path, overrides = read_base(path, raw)
    for text in overrides:
        key = _override_key(text)
        if any(_overlap(key, r) for r in RESERVED_KEYS):
            raise _fail(path, f"overrides: {key}", "set by the sweep for each point")

    axes = _read_grid(path, raw.get("grid"))
    for text in overrides:
        key = _override_key(text)
        for axis in axes:
            if any(_overlap(key, k) for k in axis.keys):
                raise _fail(path, f"overrides: {key}", "also a grid key; set it in one place")
    return Sweep(path, name, config_path, tuple(overrides), _with_labels(axes))


def _read_grid(path: Path, grid: Any) -> list[Axis]:
    if not isinstance(grid, dict) or not grid:
        raise _fail(path, "grid", "expected a mapping of dotted keys to lists of values")
    axes: list[Axis] = []
    seen: list[str] = []
    for entry, spec in grid.items():
        entry = str(entry)
        if isinstance(spec, dict):  # a tie: several keys, one axis
            if not _LABEL_RE.match(entry):
                raise _fail(path, f"grid: {entry}", "a tie's name uses letters, digits and '_'")
            if not spec:
                raise _fail(path, f"grid: {entry}", "an empty tie")
            columns = {str(k): _values(path, f"grid: {entry}: {k}", v) for k, v in spec.items()}
            lengths = {k: len(v) for k, v in columns.items()}
            if len(set(lengths.values())) != 1:
                raise _fail(path, f"grid: {entry}", f"tied lists differ in length: {lengths}")
            keys = tuple(columns)
            rows = tuple(zip(*columns.values(), strict=True))
            label = entry
        else:
            keys, label = (entry,), ""
            rows = tuple((v,) for v in _values(path, f"grid: {entry}", spec))
        for key in keys:
            if not key or any(not part for part in key.split(".")):
                raise _fail(path, f"grid: {key}", "not a dotted key like optim.d.lr")
            if any(_overlap(key, r) for r in RESERVED_KEYS):
                raise _fail(path, f"grid: {key}", "set by the sweep for each point")
            clash = next((k for k in seen if _overlap(key, k)), None)
            if clash:
                raise _fail(path, f"grid: {key}", f"overlaps grid key {clash}")
            seen.append(key)
        if len(set(map(_canonical, rows))) != len(rows):
            raise _fail(path, f"grid: {entry}", "a value is listed twice")
        axes.append(Axis(label, keys, rows))
    return axes


def _values(path: Path, where: str, spec: Any) -> list[Any]:
    if not isinstance(spec, list):
        raise _fail(path, where, f"expected a list of values, got {spec!r}")
    if not spec:
        raise _fail(path, where, "an empty list of values")
    return spec


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _with_labels(axes: list[Axis]) -> tuple[Axis, ...]:
    """Run-name labels: a tie's name, else the shortest dotted suffix that tells keys apart
    (`clip_value`, but `d.lr` and `g.lr` when both learning rates are axes)."""
    depth = [1] * len(axes)

    def label(i: int) -> str:
        a = axes[i]
        return a.label or ".".join(a.keys[0].split(".")[-depth[i] :])

    while True:
        labels = [label(i) for i in range(len(axes))]
        clashing = [
            i
            for i, lab in enumerate(labels)
            if labels.count(lab) > 1
            and not axes[i].label
            and depth[i] < len(axes[i].keys[0].split("."))
        ]
        if not clashing:
            return tuple(dataclasses.replace(a, label=labels[i]) for i, a in enumerate(axes))
        for i in clashing:
            depth[i] += 1


# ---------------------------------------------------------------- points


def format_value(value: Any) -> str:
    """A value as override text that `parse_override` reads back as the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)  # shortest text that round-trips: 5e-05, 0.0001
    if isinstance(value, str):
        with contextlib.suppress(ConfigError):
            if parse_override(f"x={value}")["x"] == value:
                return value
        return json.dumps(value)  # a double-quoted YAML scalar: `off` stays a string
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()


def _name_part(text: str) -> str:
    """Override text -> something safe in a directory name."""
    text = re.sub(r"[\[\]{}\"' ]", "", text)
    return re.sub(r"[^A-Za-z0-9._+=,-]", "_", text)


def run_name(sweep_name: str, index: int, summary: Sequence[tuple[str, str]]) -> str:
    """`<sweep>-<index:03d>-<label=value,...>`: sortable by index, readable in W&B and `ls`."""
    return f"{sweep_name}-{index:03d}-" + ",".join(
        f"{label}={_name_part(text)}" for label, text in summary
    )


def grid_points(sweep: Sweep, extra: Sequence[str] = ()) -> list[Point]:
    """Every point, in index order. `extra` overrides (e.g. from the command line) apply to
    every point after the sweep's own; they may not touch grid or reserved keys."""
    for text in extra:
        key = _override_key(text)
        if any(_overlap(key, r) for r in RESERVED_KEYS):
            raise SweepError(f"override {text!r}: {key} is set by the sweep for each point")
        for axis in sweep.axes:
            if any(_overlap(key, k) for k in axis.keys):
                raise SweepError(
                    f"override {text!r}: {key} is a grid key of {sweep.path}; "
                    "change the grid there instead"
                )
    points = []
    for index, combo in enumerate(itertools.product(*(range(len(a.values)) for a in sweep.axes))):
        assignments: list[str] = []
        summary: list[tuple[str, str]] = []
        for axis, pos in zip(sweep.axes, combo, strict=True):
            texts = [format_value(v) for v in axis.values[pos]]
            assignments += [f"{k}={t}" for k, t in zip(axis.keys, texts, strict=True)]
            summary.append((axis.label, texts[0]))
        name = run_name(sweep.name, index, summary)
        overrides = (
            *sweep.overrides,
            *extra,
            *assignments,
            f"train.run_name={format_value(name)}",
            f"tracking.group={format_value(sweep.name)}",
        )
        points.append(Point(index, tuple(assignments), name, overrides))
    return points


def check_points(sweep: Sweep, points: Sequence[Point], extra: Sequence[str] = ()) -> None:
    """Load every point's config before anything trains. Each grid value is first tried on its
    own, so an error names the grid key that caused it; then every whole point (cross-key rules,
    e.g. a gradient penalty with a BatchNorm critic)."""
    try:
        load_config(sweep.config, list(sweep.overrides))
    except ConfigError as exc:
        raise SweepError(f"{sweep.path}: overrides: {exc}") from None
    if extra:  # the command line's: named as such, not blamed on the sweep file
        try:
            load_config(sweep.config, [*sweep.overrides, *extra])
        except ConfigError as exc:
            raise SweepError(f"command-line overrides {' '.join(extra)}: {exc}") from None
    for axis in sweep.axes:
        for row in axis.values:
            for key, value in zip(axis.keys, row, strict=True):
                text = format_value(value)
                if _roundtrip(key, text) != value:
                    raise _fail(sweep.path, f"grid: {key}", f"{value!r} cannot be an override")
                try:
                    load_config(sweep.config, [*sweep.overrides, *extra, f"{key}={text}"])
                except ConfigError as exc:
                    raise _fail(sweep.path, f"grid: {key}={text}", str(exc)) from None
    for p in points:
        try:
            load_config(sweep.config, list(p.overrides))
        except ConfigError as exc:
            where = f"point {p.index} ({' '.join(p.assignments)})"
            raise _fail(sweep.path, where, str(exc)) from None


def _roundtrip(key: str, text: str) -> Any:
    node: Any = parse_override(f"{key}={text}")
    for part in key.split("."):
        node = node[part]
    return node


def point_at(sweep: Sweep, points: Sequence[Point], index: int) -> Point:
    if not 0 <= index < len(points):
        raise SweepError(
            f"--index {index} is out of range: {sweep.path} has {len(points)} points, "
            f"valid indices are 0-{len(points) - 1}"
        )
    return points[index]


def plan(path: str | Path, extra: Sequence[str] = ()) -> tuple[Sweep, list[Point]]:
    """Load a sweep file and check every point: what each `gandist sweep` call starts with."""
    sweep = load_sweep(path)
    points = grid_points(sweep, extra)
    check_points(sweep, points, extra)
    return sweep, points


def train_command(sweep: Sweep, point: Point) -> str:
    """The equivalent `gandist train` command line (what --dry-run prints)."""
    return shlex.join(["gandist", "train", str(sweep.config), *point.overrides])


def format_list(sweep: Sweep, points: Sequence[Point]) -> str:
    width = max(5, len(str(len(points) - 1)))
    lines = [
        f"sweep {sweep.name}: {sweep.config}"
        + (f" {' '.join(sweep.overrides)}" if sweep.overrides else ""),
        f"{'index':>{width}}  overrides",
    ]
    lines += [f"{p.index:>{width}}  {' '.join(p.assignments)}" for p in points]
    lines.append(
        f"{len(points)} points; on SLURM: sbatch --array=0-{len(points) - 1} "
        f"slurm/sweep.sh {sweep.path}"
    )
    return "\n".join(lines)
