"""The experiment runner's tables, on synthetic run directories (nothing is trained here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gandist import experiments as ex
from gandist.child_runs import Outcome
from gandist.cli import main as cli_main
from gandist.config import load_config

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT_CONFIGS = sorted((REPO / "configs" / "experiments").glob("*/*.yaml"))


def _run(
    root: Path,
    name: str,
    cfg: dict,
    rows: list[dict],
    eval_json: dict | None = None,
    state: str = "completed",
) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "status.json").write_text(json.dumps({"state": state, "step": rows[-1]["step"]}))
    if eval_json is not None:
        (d / "eval.json").write_text(json.dumps(eval_json))
    return d


def _toy_cfg(adv: str, penalty: str, opt: str) -> dict:
    return {
        "model": {"arch": "toy", "condition": "none"},
        "loss": {"adversarial": adv, "penalty": penalty},
        "optim": {"g": {"name": opt}, "d": {"name": opt}},
        "data": {"source": "toy2d:ring8"},
    }


def _modes(captured: int, hq: float, kl: float) -> dict:
    return {
        "step": 10,
        "modes_captured": float(captured),
        "modes_total": 8.0,
        "high_quality_share": hq,
        "reverse_kl": kl,
    }


def test_epoch_of_counts_from_one_and_puts_epoch_ends_in_their_epoch() -> None:
    # The trainer logs epoch + position / batches_per_epoch after the step's last batch.
    assert ex.epoch_of({"epoch": 1 / 28}) == 1
    assert ex.epoch_of({"epoch": 1.0}) == 1  # the last batch of epoch 1
    assert ex.epoch_of({"epoch": 1 + 1 / 28}) == 2
    assert ex.epoch_of({"epoch": 0.0}) == 1
    assert ex.epoch_of({"step": 3}) is None


def test_epoch_means_average_every_logged_row_of_an_epoch() -> None:
    rows = [
        {"step": 1, "epoch": 0.5, "d/loss": 1.0, "g/loss": 2.0},
        {"step": 2, "epoch": 1.0, "d/loss": 3.0, "g/loss": 4.0},
        {"step": 3, "epoch": 1.5, "d/loss": 5.0, "g/loss": float("nan")},
        {"step": 4, "epoch": 2.0, "d/loss": 7.0},
        {"step": 5, "eval/fid": 3.0},  # an eval-only row has no epoch
    ]
    means = ex.epoch_means(rows)
    assert means == {1: {"d/loss": 2.0, "g/loss": 3.0}, 2: {"d/loss": 6.0}}


def test_pick_epochs_prefers_the_lab_milestones_and_always_shows_the_last() -> None:
    assert ex.pick_epochs(list(range(1, 31))) == [1, 5, 10, 20, 30]
    assert ex.pick_epochs(list(range(1, 21))) == [1, 5, 10, 20]
    assert ex.pick_epochs([1, 2, 3]) == [1, 3]
    assert ex.pick_epochs(list(range(1, 31)), [2, 30, 99]) == [2, 30]
    assert ex.pick_epochs([]) == []


def test_loss_table_is_lab_003_shaped() -> None:
    means = {e: {"d/loss": e / 10, "g/loss": -float(e)} for e in range(1, 11)}
    table = ex.loss_table(means)
    assert table.splitlines() == [
        "| epoch | 1 | 5 | 10 |",
        "|---|---|---|---|",
        "| d_loss | 0.1 | 0.5 | 1 |",
        "| g_loss | -1 | -5 | -10 |",
    ]


def test_markdown_table_formats_numbers_and_missing_values() -> None:
    out = ex.markdown_table(["a", "b", "c", "d"], [[0.123456, None, 3, "x"]])
    assert out.splitlines()[-1] == "| 0.1235 | — | 3 | x |"


def test_describe_names_the_loss_family_model_and_optimizer() -> None:
    assert ex.describe(_toy_cfg("wasserstein", "gp", "rmsprop")) == {
        "loss": "WGAN-GP",
        "model": "MLP",
        "optimizer": "RMSprop",
    }
    cfg = {
        "model": {"arch": "dcgan", "condition": "acgan"},
        "loss": {"adversarial": "ns", "penalty": "none"},
        "optim": {"d": {"name": "adam"}},
    }
    assert ex.describe(cfg) == {
        "loss": "GAN",
        "model": "DCGAN + aux classifier",
        "optimizer": "Adam",
    }
    cfg["model"]["aux_twin"] = True
    assert ex.describe(cfg)["model"] == "DCGAN + aux classifier and its twin"
    assert ex.describe({"loss": {"adversarial": "wasserstein", "penalty": "clip"}})["loss"] == (
        "WGAN"
    )


def test_eval_scores_prefer_the_newest_gandist_eval_record(tmp_path: Path) -> None:
    d = _run(tmp_path, "r", _toy_cfg("ns", "none", "adam"), [{"step": 5}], {"fid": 9.0, "x": 1})
    evals = d / "evals"
    evals.mkdir()
    (evals / "step_000004-domain.json").write_text(json.dumps({"step": 4, "fid": 7.0}))
    (evals / "step_000005-domain.json").write_text(json.dumps({"step": 5, "fid": 5.0}))
    assert ex.eval_scores(d) == {"fid": 5.0, "x": 1, "step": 5}


def test_toy_render_has_the_loss_by_optimizer_grid(tmp_path: Path) -> None:
    rows = [{"step": 10, "epoch": 2.0, "d/loss": 1.0, "g/loss": 0.5}]
    _run(tmp_path, "gan_adam", _toy_cfg("ns", "none", "adam"), rows, _modes(8, 0.5, 0.01))
    _run(tmp_path, "gan_rmsprop", _toy_cfg("ns", "none", "rmsprop"), rows, _modes(7, 0.4, 0.1))
    _run(tmp_path, "gan_sgd", _toy_cfg("ns", "none", "sgd"), rows, _modes(0, 0.0, 2.08))
    _run(tmp_path, "wgan_adam", _toy_cfg("wasserstein", "clip", "adam"), rows)  # no eval.json
    (tmp_path / ex.TIMINGS).write_text(json.dumps({"gan_adam": {"wall_s": 61.4, "rc": 0}}))
    out = ex.render(tmp_path)
    # The lab's order (Adam, SGD, RMSprop), not the alphabetical order of the run names.
    assert "| loss \\ optimizer | Adam | SGD | RMSprop |" in out
    assert "| GAN | 8/8 · 0.500 · 0.01 | 0/8 · 0.000 · 2.08 | 7/8 · 0.400 · 0.10 |" in out
    assert "| WGAN | — | — | — |" in out
    assert "| gan_adam | GAN | MLP | Adam | 10 | 2 | completed | 8 | 0.5 | 0.01 | 61 |" in out
    assert "| wgan_adam |" in out and ex.TO_BE_SCORED in out


def test_image_render_marks_unscored_runs_and_shows_kid_std(tmp_path: Path) -> None:
    cfg = {
        "model": {"arch": "dcgan", "condition": "concat"},
        "loss": {"adversarial": "ns"},
        "optim": {"d": {"name": "adam"}},
        "data": {"source": "shapes"},
    }
    rows = [
        {"step": 15, "epoch": 1.0, "d/loss": 1.0, "g/loss": 2.0},
        {"step": 30, "epoch": 2.0, "d/loss": 0.5, "g/loss": 3.0},
    ]
    scores = {
        "fid": 12.5,
        "kid_mean": 0.0123,
        "kid_std": 0.0011,
        "precision": 0.5,
        "recall": 0.25,
        "density": 0.4,
        "coverage": 0.3,
        "cond_accuracy": 0.7,
        "cond_f1": 0.65,
        "cond_pixel_diversity": 0.9,
    }
    _run(tmp_path, "cdcgan", cfg, rows, scores)
    _run(tmp_path, "acgan", cfg, rows, state="running")
    out = ex.render(tmp_path, losses=True)
    assert "cond_accuracy | cond_f1 | cond_pixel_diversity | wall (s) |" in out
    assert "| cdcgan | GAN | DCGAN + label concat | Adam | 30 | 2 | completed | 12.5 | " in out
    assert "0.0123 ± 0.0011" in out and "| 0.7 | 0.65 | 0.9 | — |" in out
    assert "| acgan |" in out and out.count(ex.TO_BE_SCORED) == 9  # every metric cell
    assert "**cdcgan** (GAN, DCGAN + label concat, Adam): mean loss per epoch" in out
    assert "| d_loss | 1 | 0.5 |" in out


def test_table_cli_prints_markdown(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = [{"step": 10, "epoch": 5.0, "d/loss": 1.0, "g/loss": 0.5}]
    _run(tmp_path, "gan_adam", _toy_cfg("ns", "none", "adam"), rows, _modes(8, 0.5, 0.01))
    assert cli_main(["experiments", "table", str(tmp_path), "--losses", "--epochs", "5"]) == 0
    out = capsys.readouterr().out
    assert "| epoch | 5 |" in out and "| GAN | 8/8" in out
    with pytest.raises(SystemExit):
        cli_main(["experiments", "table", str(tmp_path), "a.b=c"])
    with pytest.raises(FileNotFoundError):
        ex.render(tmp_path / "gan_adam")  # a run directory, not an experiment's output


def test_run_trains_in_order_skips_completed_and_records_wall_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = tmp_path / "configs" / "exp"
    configs.mkdir(parents=True)
    for stem in ("b", "a", "c"):
        (configs / f"{stem}.yaml").write_text("train: {steps: 1}\n")
    out = tmp_path / "runs"
    (out / "exp" / "c").mkdir(parents=True)
    (out / "exp" / "c" / "status.json").write_text(json.dumps({"state": "completed"}))
    calls: list[tuple[list[str], dict]] = []

    def fake_run(commands: list[list[str]], env: dict) -> list[Outcome]:
        (cmd,) = commands
        calls.append((cmd, env))
        return [Outcome(1 if cmd[4].endswith("b.yaml") else 0, 0.5)]

    monkeypatch.setattr(ex, "run_commands", fake_run)
    # Overrides after the options still reach every run.
    rc = cli_main(
        ["experiments", "run", str(configs), "--out", str(out), "--threads", "1", "train.seed=2"]
    )
    assert rc == 1  # b failed
    assert [Path(c[4]).stem for c, _ in calls] == ["a", "b"]  # sorted; c was completed
    cmd, env = calls[0]
    assert cmd[2:4] == ["gandist", "train"]
    assert cmd[5:] == [
        f"train.output_dir={out / 'exp'}",
        "train.run_name=a",
        "train.resume=auto",
        "train.seed=2",
    ]
    assert env["OMP_NUM_THREADS"] == "1"
    timings = json.loads((out / "exp" / ex.TIMINGS).read_text())
    assert set(timings) == {"a", "b"} and timings["b"]["rc"] == 1


def test_a_stopped_run_stops_the_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM reaches the running child, which checkpoints and exits 75: the runner must not
    start the next config (it did), and exits 75 itself so a scheduler requeues it."""
    configs = tmp_path / "configs" / "exp"
    configs.mkdir(parents=True)
    for stem in ("a", "b", "c"):
        (configs / f"{stem}.yaml").write_text("train: {steps: 1}\n")
    started: list[str] = []

    def fake_run(commands: list[list[str]], env: dict) -> list[Outcome]:
        started.append(Path(commands[0][4]).stem)
        return [Outcome(75 if started[-1] == "b" else 0, 0.5)]

    monkeypatch.setattr(ex, "run_commands", fake_run)
    rc = cli_main(["experiments", "run", str(configs), "--out", str(tmp_path / "runs")])
    assert rc == 75 and started == ["a", "b"]


@pytest.mark.parametrize("path", EXPERIMENT_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_experiment_config_loads_and_says_what_it_reproduces(path: Path) -> None:
    recipe, overrides = ex.resolve_run(path)
    cfg = load_config(recipe, overrides)
    if recipe == path:  # a full config (the labs')
        assert cfg.name == path.stem
    else:  # a shipped recipe, as it is, with a seed
        assert recipe.parent == REPO / "configs" and cfg.train.seed == int(path.stem[-1])
    assert path.read_text().startswith(f"# Experiment {path.parent.name}, run {path.stem}:")


def test_the_experiments_exist() -> None:
    names = {p.parent.name for p in EXPERIMENT_CONFIGS}
    assert {"toy2d_optimizers", "digits_losses", "faces64", "conditional_shapes"} <= names
    assert {"toy2d_recipes", "digits_recipes", "glyphs_recipes"} <= names
    assert len([p for p in EXPERIMENT_CONFIGS if p.parent.name == "toy2d_optimizers"]) == 9


def test_a_recipe_reference_trains_the_recipe_with_its_overrides(tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text("train: {steps: 1}\n")
    exp = tmp_path / "exp"
    exp.mkdir()
    ref = exp / "r_s1.yaml"
    ref.write_text("config: ../recipe.yaml\noverrides: [train.seed=1]\n")
    cmd = ex.train_command(ref, tmp_path / "out", ["x.y=2"])
    assert cmd[4:] == [
        str(tmp_path / "recipe.yaml"),
        "train.seed=1",  # the file's, then the runner's, then the user's (last wins)
        f"train.output_dir={tmp_path / 'out'}",
        "train.run_name=r_s1",
        "train.resume=auto",
        "x.y=2",
    ]
    full = exp / "lab.yaml"
    full.write_text("train: {steps: 1}\n")
    assert ex.resolve_run(full) == (full, [])


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("config: ../missing.yaml\n", "not found"),
        ("config: ../recipe.yaml\ntrain: {seed: 1}\n", "only `config` and `overrides`"),
        ("config: ../recipe.yaml\noverrides: train.seed=1\n", "list of key=value"),
        ("config: ../recipe.yaml\noverrides: [train.sedd=1]\n", "did you mean 'train.seed'"),
    ],
)
def test_a_broken_reference_fails_before_anything_trains(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    text: str,
    says: str,
) -> None:
    (tmp_path / "recipe.yaml").write_text("train: {steps: 1}\n")
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "a_ok.yaml").write_text("train: {steps: 1}\n")
    (exp / "b_bad.yaml").write_text(text)
    started: list = []
    monkeypatch.setattr(ex, "run_commands", lambda cmds, env: started.append(cmds))
    rc = cli_main(["experiments", "run", str(exp), "--out", str(tmp_path / "runs")])
    assert rc != 0 and started == []  # a_ok did not train either
    err = capsys.readouterr().err
    assert "b_bad.yaml" in err and says in err


def test_curve_table_lines_runs_up_by_epoch() -> None:
    # A GAN logs eval every 200 steps, a WGAN (n_critic 5) every 40: the same epochs.
    gan = [{"step": 200 * i, "epoch": 5.12 * i, "eval/modes_captured": float(i)} for i in (1, 2)]
    wgan = [{"step": 40, "epoch": 5.12, "eval/modes_captured": 3.0}, {"step": 45, "epoch": 5.7}]
    assert ex.metric_by_epoch(gan, "eval/modes_captured") == {5.1: 1.0, 10.2: 2.0}
    runs = [{"name": "gan", "rows": gan}, {"name": "wgan", "rows": wgan}]
    assert ex.curve_table(runs, "eval/modes_captured").splitlines() == [
        "| eval/modes_captured \\ epoch | 5.1 | 10.2 |",
        "|---|---|---|",
        "| gan | 1 | 2 |",
        "| wgan | 3 | — |",
    ]
    many = [{"name": "r", "rows": [{"epoch": e, "m": e} for e in range(1, 31)]}]
    header = ex.curve_table(many, "m", max_cols=4).splitlines()[0]
    assert header == "| m \\ epoch | 1 | 11 | 20 | 30 |"


def test_toy_render_of_seeds_of_one_recipe_has_no_merged_grid(tmp_path: Path) -> None:
    """Seeds of one recipe share (loss, optimizer): a grid cell would show one of them only."""
    rows = [{"step": 10, "epoch": 2.0, "d/loss": 1.0, "g/loss": 0.5}]
    for seed, modes in enumerate((8, 7, 6)):
        _run(
            tmp_path, f"ring_s{seed}", _toy_cfg("ns", "none", "adam"), rows, _modes(modes, 0.9, 0.0)
        )
    out = ex.render(tmp_path)
    assert "loss \\ optimizer" not in out
    assert all(f"| ring_s{s} | GAN |" in out for s in range(3))
