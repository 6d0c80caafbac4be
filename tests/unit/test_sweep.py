"""`gandist sweep`: grid order, run names, up-front validation, the W&B twin, the runner.

Nothing here trains: the runner is exercised with tiny `python -c` children.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from gandist.child_runs import run_commands
from gandist.cli import build_parser, main
from gandist.config import load_config, to_dict
from gandist.sweep import (
    Point,
    Sweep,
    SweepError,
    format_value,
    grid_points,
    load_sweep,
    plan,
    point_at,
)
from gandist.sweep_runs import run_all

REPO = Path(__file__).resolve().parents[2]
SWEEPS = REPO / "configs" / "sweeps"
TOY = REPO / "configs" / "toy2d_wgan.yaml"


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def sweep_file(tmp_path: Path, grid: str, extra: str = "") -> Path:
    return write(tmp_path, f"config: {TOY}\n{extra}grid:\n{grid}")


# ---------------------------------------------------------------- order, count, names


def test_shipped_sweep_is_the_ordered_cartesian_product() -> None:
    sweep, points = plan(SWEEPS / "wgan_digits.yaml")
    assert sweep.name == "wgan_digits" and sweep.config == REPO / "configs" / "wgan_digits.yaml"
    assert len(points) == sweep.size == 18
    assert [p.index for p in points] == list(range(18))
    cfgs = [load_config(sweep.config, list(p.overrides)) for p in points]
    # File order, last axis fastest: index = 6 * lr + 2 * clip + n_critic.
    expected = itertools.product([5e-5, 1e-4, 2e-4], [0.005, 0.01, 0.02], [1, 5])
    got = [(c.optim.d.lr, c.loss.clip_value, c.train.n_critic) for c in cfgs]
    assert got == list(expected)
    for c in cfgs:
        assert c.optim.g.lr == c.optim.d.lr  # the tie: one axis, not 3 x 3
        assert c.train.steps == 300  # the sweep's overrides
        assert c.optim.d.name == "rmsprop" and c.loss.penalty == "clip"  # the rest: the recipe
        assert c.tracking.group == "wgan_digits"
    assert points[1].assignments == (
        "optim.d.lr=5e-05",
        "optim.g.lr=5e-05",
        "loss.clip_value=0.005",
        "train.n_critic=5",
    )


def test_run_names() -> None:
    sweep, points = plan(SWEEPS / "wgan_digits.yaml")
    assert points[0].run_name == "wgan_digits-000-lr=5e-05,clip_value=0.005,n_critic=1"
    assert points[17].run_name == "wgan_digits-017-lr=0.0002,clip_value=0.02,n_critic=5"
    assert len({p.run_name for p in points}) == 18
    cfg = load_config(sweep.config, list(points[9].overrides))
    assert cfg.train.run_name == points[9].run_name


def test_labels_tell_keys_apart_and_values_stay_exact(tmp_path: Path) -> None:
    """Two `lr` keys become d.lr / g.lr; `off` stays the string it is (YAML 1.1 would read a
    bare off as false); a `name:` replaces the file stem; `1e-4` is a number, as in configs."""
    path = sweep_file(
        tmp_path,
        "  optim.d.lr: [1e-4]\n  optim.g.lr: [2.0e-4, 3.0e-4]\n"
        '  data.shards: ["off"]\n  data.source: ["toy2d:ring8"]\n',
        extra="name: toy\n",
    )
    _, points = plan(path)
    assert [p.run_name for p in points] == [
        "toy-000-d.lr=0.0001,g.lr=0.0002,shards=off,source=toy2d_ring8",
        "toy-001-d.lr=0.0001,g.lr=0.0003,shards=off,source=toy2d_ring8",
    ]
    cfg = load_config(TOY, list(points[1].overrides))
    assert (cfg.optim.d.lr, cfg.optim.g.lr, cfg.data.shards) == (1e-4, 3e-4, "off")
    assert cfg.tracking.group == "toy"


@pytest.mark.parametrize(
    "value", [5e-05, 0.1, 3, True, "off", "toy2d:ring8", "a: b", [0.0, 0.9], None, -1.5e-7]
)
def test_format_value_round_trips(value: object) -> None:
    from gandist.config import parse_override

    assert parse_override(f"k={format_value(value)}")["k"] == value


def test_extra_overrides_apply_to_every_point(tmp_path: Path) -> None:
    path = sweep_file(tmp_path, "  loss.clip_value: [0.1, 0.2]\n", "overrides: [train.steps=7]\n")
    sweep, points = plan(path, ["train.steps=3"])  # after the sweep's own: it wins
    assert all(load_config(TOY, list(p.overrides)).train.steps == 3 for p in points)
    with pytest.raises(SweepError, match="loss.clip_value is a grid key"):
        grid_points(sweep, ["loss.clip_value=0.5"])
    with pytest.raises(SweepError, match="set by the sweep"):
        grid_points(sweep, ["train.run_name=x"])
    # a typo on the command line is the command line's, not the sweep file's
    with pytest.raises(SweepError, match=r"^command-line overrides train\.stpes=3: .*steps"):
        plan(path, ["train.stpes=3"])


# ---------------------------------------------------------------- errors before any training


CLIP = "grid:\n  loss.clip_value: [0.2]\n"
BAD_SWEEPS = {
    # a typo in a grid key: the sweep file, the key and the suggestion
    "typo": (
        "grid:\n  loss.clip_valu: [0.01]\n",
        r"grid: loss\.clip_valu=0\.01: .*did you mean 'loss\.clip_value'",
    ),
    # a bad value in one point only: caught anyway, with the key and the value
    "range": ("grid:\n  train.n_critic: [5, 0]\n", r"grid: train\.n_critic=0: .*must be > 0"),
    "type": ("grid:\n  optim.d.lr: [fast]\n", r"grid: optim\.d\.lr=fast: .*expected a number"),
    # rules between keys: the whole point
    "cross-key": (
        "grid:\n  loss.penalty: [clip, gp]\n  model.d_norm: [none, batch]\n",
        r"point 3 \(loss\.penalty=gp model\.d_norm=batch\): .*BatchNorm",
    ),
    "scalar": ("grid:\n  loss.clip_value: 0.01\n", r"grid: loss\.clip_value: expected a list"),
    "empty": ("grid:\n  loss.clip_value: []\n", r"an empty list"),
    "twice": ("grid:\n  loss.clip_value: [0.01, 0.01]\n", r"listed twice"),
    "tie-lengths": (
        "grid:\n  lr:\n    optim.d.lr: [1.0e-4, 2.0e-4]\n    optim.g.lr: [1.0e-4]\n",
        r"differ in length",
    ),
    "reserved": ("grid:\n  train.run_name: [a, b]\n", r"train\.run_name: set by the sweep"),
    "overlap": (
        "grid:\n  optim.d: [{lr: 0.1}]\n  optim.d.lr: [0.2]\n",
        r"optim\.d\.lr: overlaps grid key optim\.d",
    ),
    "override-is-grid": ("overrides: [loss.clip_value=0.1]\n" + CLIP, r"also a grid key"),
    "override-syntax": ("overrides: [train.steps]\n" + CLIP, r"expected key=value"),
    "override-typo": ("overrides: [train.stepz=3]\n" + CLIP, r"overrides: .*train\.stepz"),
    "top-level": ("grids:\n  loss.clip_value: [0.2]\n", r"grids: unknown key; did you mean 'grid'"),
    "name": ("name: a b\n" + CLIP, r"name: 'a b'"),
}


@pytest.mark.parametrize("case", sorted(BAD_SWEEPS))
def test_bad_sweeps_fail_before_training(tmp_path: Path, case: str) -> None:
    body, match = BAD_SWEEPS[case]
    path = write(tmp_path, f"config: {TOY}\n{body}")
    with pytest.raises(SweepError, match=match) as info:
        plan(path)
    assert str(info.value).startswith(f"{path}: ")  # always names the sweep file


def test_missing_files(tmp_path: Path) -> None:
    path = write(tmp_path, "config: ../nowhere.yaml\ngrid:\n  train.n_critic: [1]\n")
    with pytest.raises(SweepError, match=rf"{path}: config: {tmp_path.parent}/nowhere.yaml not"):
        load_sweep(path)
    with pytest.raises(SweepError, match="sweep file not found"):
        load_sweep(tmp_path / "absent.yaml")


def test_config_is_relative_to_the_sweep_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "recipes" / "sweeps").mkdir(parents=True)
    (tmp_path / "recipes" / "base.yaml").write_text(TOY.read_text())
    path = write(
        tmp_path / "recipes" / "sweeps", "config: ../base.yaml\ngrid:\n  train.n_critic: [1]\n"
    )
    monkeypatch.chdir(REPO)  # anywhere but the sweep file's directory
    sweep, _ = plan(path)
    assert sweep.config == tmp_path / "recipes" / "base.yaml"


@pytest.mark.parametrize("index", [18, -1])
def test_index_out_of_range(index: int) -> None:
    sweep, points = plan(SWEEPS / "wgan_digits.yaml")
    with pytest.raises(
        SweepError, match=r"--index .* out of range: .* 18 points, valid indices are 0-17"
    ):
        point_at(sweep, points, index)


# ---------------------------------------------------------------- the command line


def test_cli_list_count_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(SWEEPS / "wgan_digits.yaml")
    assert main(["sweep", path, "--count"]) == 0
    assert capsys.readouterr().out == "18\n"
    assert main(["sweep", path, "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split() == ["0", "optim.d.lr=5e-05", "optim.g.lr=5e-05",
                                "loss.clip_value=0.005", "train.n_critic=1"]  # fmt: skip
    assert lines[-1].startswith("18 points; on SLURM: sbatch --array=0-17 slurm/sweep.sh")
    assert main(["sweep", path, "train.seed=3", "--index", "5", "--dry-run"]) == 0
    cmd = capsys.readouterr().out.split()
    assert cmd[:3] == ["gandist", "train", str(REPO / "configs" / "wgan_digits.yaml")]
    assert "train.seed=3" in cmd and "train.n_critic=5" in cmd and "loss.clip_value=0.02" in cmd
    assert "train.run_name=wgan_digits-005-lr=5e-05,clip_value=0.02,n_critic=5" in cmd


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--index", "18"], "valid indices are 0-17"),
        (["--index", "1", "--max-parallel", "2"], "--max-parallel applies"),
        (["--max-parallel", "0"], "--max-parallel must be >= 1"),
        (["loss.clip_value=1"], "is a grid key"),
    ],
)
def test_cli_errors_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sweep", str(SWEEPS / "wgan_digits.yaml"), *args]) == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------- the W&B sweep file


def _wandb_commands(path: Path) -> list[list[str]]:
    """Every command a W&B agent runs for this grid, built as wandb's own code builds it."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    spec = sweep_utils.load_sweep_config(str(path))
    assert spec is not None and spec["method"] == "grid" and spec["program"] == "gandist"
    names = list(spec["parameters"])
    commands = []
    for combo in itertools.product(*(spec["parameters"][n]["values"] for n in names)):
        run = {"args": {n: {"value": v} for n, v in zip(names, combo, strict=True)}}
        macros = {
            **sweep_utils.create_sweep_command_args(run),
            # what wandb/wandb_agent.py adds for a program run
            "env": ["/usr/bin/env"],
            "program": [spec["program"]],
            "interpreter": ["python"],
        }
        argv: list[str] = []
        for word in map(str, spec["command"]):
            if word.startswith("${") and word.endswith("}"):
                assert word[2:-1] in macros, f"not a wandb macro: {word}"
                argv += macros[word[2:-1]]
            else:
                argv.append(word)
        commands.append(argv)
    return commands


def test_wandb_sweep_file_is_the_same_grid() -> None:
    """Each command the W&B agent would run must parse as `gandist train` and load to exactly
    the config of one gandist sweep point (run names aside), and no point may be missing."""
    commands = _wandb_commands(SWEEPS / "wgan_digits.wandb.yaml")
    wandb_cfgs = []
    for argv in commands:
        assert argv[:2] == ["/usr/bin/env", "gandist"], argv
        args = build_parser().parse_args(argv[2:])
        assert args.command == "train" and args.config == "configs/wgan_digits.yaml"
        cfg = load_config(REPO / args.config, args.overrides)  # the agent runs in the repo root
        wandb_cfgs.append(
            dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, run_name=""))
        )

    sweep, points = plan(SWEEPS / "wgan_digits.yaml")
    ours = []
    for p in points:
        cfg = load_config(sweep.config, list(p.overrides))
        ours.append(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, run_name="")))

    def key(cfgs: list) -> list[str]:
        return sorted(json.dumps(to_dict(c), sort_keys=True) for c in cfgs)

    assert len(commands) == len(points) == 18
    assert key(wandb_cfgs) == key(ours)


# ---------------------------------------------------------------- the runner


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_run_commands_one_failure_does_not_stop_the_rest(capfd: pytest.CaptureFixture[str]) -> None:
    outs = run_commands([_py("print('a')"), _py("raise SystemExit(3)"), _py("print('c')")])
    assert [o.rc for o in outs] == [0, 3, 0]
    out = capfd.readouterr().out
    assert "a\n" in out and "c\n" in out


def test_run_commands_in_parallel_prefixes_lines_and_deals_devices(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    show = "import os, time; time.sleep(0.5); print('gpu', os.environ['CUDA_VISIBLE_DEVICES'])"
    t0 = time.monotonic()
    outs = run_commands([_py(show), _py(show), _py("raise SystemExit(1)")], 2, ["x0", "x1", "x2"])
    assert [o.rc for o in outs] == [0, 0, 1]
    lines = capfd.readouterr().out.splitlines()
    assert sorted(lines) == ["[x0] gpu 4", "[x1] gpu 5"]  # one device per running slot
    assert time.monotonic() - t0 < 0.5 * 2 + 5  # the two sleepers overlapped (loose bound)


def test_run_commands_stop_signal_reaches_children(tmp_path: Path) -> None:
    """SIGTERM to the sweep: the running child gets SIGTERM (gandist checkpoints and exits 75),
    the points not yet started are not started."""
    ready = tmp_path / "ready"
    child = (
        "import signal, sys, time, pathlib\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(75))\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(60)\n"
    )

    def stop_when_ready() -> None:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_ready, daemon=True).start()
    outs = run_commands([_py(child), _py("print('never')")])
    assert [o.rc for o in outs] == [75, None]


def test_run_all_summary_and_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capfd: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """Point 0 crashes, point 1 completes (writing status.json where gandist would, in a fresh
    `-2` directory because an older run holds the name): exit 1, a table naming both."""
    monkeypatch.chdir(tmp_path)
    path = sweep_file(
        tmp_path, "  loss.clip_value: [0.1, 0.2]\n", "overrides: [train.output_dir=out]\n"
    )
    sweep, points = plan(path)
    (tmp_path / "out" / points[1].run_name / "checkpoints").mkdir(parents=True)  # an older run

    def fake(sweep: Sweep, point: Point, extra: object) -> list[str]:
        if point.index == 0:
            return _py("raise SystemExit(1)")
        run = tmp_path / "out" / f"{point.run_name}-2"
        status = json.dumps({"state": "completed", "step": 4})
        return _py(f"import pathlib; p = pathlib.Path({str(run)!r}); p.mkdir(parents=True); "
                   f"(p / 'status.json').write_text({status!r})")  # fmt: skip

    assert run_all(sweep, points, command=fake) == 1
    out = capfd.readouterr().out
    assert "1 of 2 completed, 1 failed" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[-2:]}
    assert rows["0"][1:3] == ["failed", "(1)"]
    assert rows["1"][1:3] == ["completed", "4"]
    assert rows["1"][-1] == f"out/{points[1].run_name}-2"
