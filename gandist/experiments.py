"""`gandist experiments run|table`: train an experiment's configs, then tabulate their results.

An experiment is a directory of run files (`configs/experiments/<name>/<run>.yaml`): full configs,
or references to a shipped recipe with overrides (resolve_run). `run` trains each one, one after
the other, as `gandist train <config> [its overrides] train.output_dir=<out>/<name>
train.run_name=<run> train.resume=auto`, so its outputs land in `<out>/<name>/<run>/` and a
re-run skips finished runs and continues interrupted ones instead of starting `<run>-2`. The wall
time of each training is kept in `<out>/<name>/timings.json`: metrics.jsonl only knows the time
since the run's logging started, not the start-up or the final plots.

`table` reads only files the trainer and `gandist eval` write (config.yaml, status.json,
metrics.jsonl, eval.json, evals/*.json), so it works on any run directory, for any
experiment. The table-building functions below are pure (rows in, Markdown out) so they are
tested on synthetic files without training anything.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from gandist.child_runs import run_commands
from gandist.config import ConfigError, load_config
from gandist.run_files import (
    CONFIG,
    EVAL,
    EXIT_PREEMPTED,
    STATUS,
    eval_records,
    read_json,
    read_metrics,
)
from gandist.sweep import read_base

TIMINGS = "timings.json"
# The lab reports tabulate losses at these epochs (lab 003: 1/5/10/50/100/150/200).
LAB_EPOCHS = (1, 5, 10, 20, 50, 100, 150, 200)
TOY_KEYS = ("modes_captured", "high_quality_share", "reverse_kl")
IMAGE_KEYS = ("fid", "kid_mean", "precision", "recall", "density", "coverage")
COND_KEYS = ("cond_accuracy", "cond_f1", "cond_pixel_diversity")
TO_BE_SCORED = "to be scored"
# Grid order of the lab reports; labels not listed here follow in the order met.
LOSS_ORDER = ("GAN", "WGAN", "WGAN-GP")
OPTIMIZER_ORDER = ("Adam", "SGD", "RMSprop")


# ---------------------------------------------------------------- reading run directories


def eval_scores(run_dir: Path) -> dict[str, Any]:
    """The run's final scores: the trainer's eval.json, overlaid by the newest `gandist eval`
    record (evals/step_N-<extractor>.json, highest step, then newest file) when there is one,
    since an explicit re-scoring is what the user asked for last."""
    scores = dict(read_json(run_dir / EVAL))
    records = eval_records(run_dir)
    if records:
        scores.update(read_json(records[-1]))
    return scores


def run_dirs(experiment_dir: Path) -> list[Path]:
    """Run directories (those with a config.yaml) of an experiment's output, by name."""
    return sorted(p for p in experiment_dir.iterdir() if (p / CONFIG).is_file())


def describe(cfg: dict[str, Any]) -> dict[str, str]:
    """Short labels of a resolved config: the loss family, the model, the optimizer."""
    model, loss, optim = cfg.get("model", {}), cfg.get("loss", {}), cfg.get("optim", {})
    adv, penalty = loss.get("adversarial", "ns"), loss.get("penalty", "none")
    family = {
        ("wasserstein", "clip"): "WGAN",
        ("wasserstein", "gp"): "WGAN-GP",
    }.get((adv, penalty), {"ns": "GAN", "minimax": "GAN (minimax)", "lsgan": "LSGAN"}.get(adv, adv))
    arch = {"dcgan": "DCGAN", "mlp": "MLP", "toy": "MLP"}.get(model.get("arch", ""), "?")
    condition = model.get("condition", "none")
    if condition != "none":
        arch += {"concat": " + label concat", "acgan": " + aux classifier"}.get(
            condition, f" + {condition}"
        )
        if condition == "acgan" and model.get("aux_twin"):
            arch += " and its twin"  # TAC-GAN
    opt = optim.get("d", {}).get("name", "?")
    opt = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}.get(opt, opt)
    return {"loss": family, "model": arch, "optimizer": opt}


# ---------------------------------------------------------------- pure table functions


def epoch_of(row: dict[str, Any]) -> int | None:
    """1-based epoch of a metrics row. The trainer logs `epoch` as epoch + position/batches, so
    a value in (k, k+1] means the step's last batch was in epoch k+1 (counting from 1)."""
    e = row.get("epoch")
    if e is None:
        return None
    return max(1, math.ceil(float(e) - 1e-9))


def epoch_means(
    rows: Iterable[dict[str, Any]], keys: Sequence[str] = ("d/loss", "g/loss")
) -> dict[int, dict[str, float]]:
    """Mean of each key over the logged rows of each epoch (every step when log_every=1)."""
    sums: dict[int, dict[str, list[float]]] = {}
    for row in rows:
        ep = epoch_of(row)
        if ep is None:
            continue
        for k in keys:
            v = row.get(k)
            if isinstance(v, (int, float)) and math.isfinite(v):
                sums.setdefault(ep, {}).setdefault(k, []).append(float(v))
    return {
        ep: {k: sum(vs) / len(vs) for k, vs in per_key.items()}
        for ep, per_key in sorted(sums.items())
    }


def pick_epochs(available: Sequence[int], wanted: Sequence[int] | None = None) -> list[int]:
    """Columns for a loss table: the requested epochs that exist, else the lab's milestones that
    exist plus the last epoch (so a short run still shows its end)."""
    have = sorted(set(available))
    if not have:
        return []
    if wanted:
        return [e for e in wanted if e in have]
    picked = [e for e in LAB_EPOCHS if e in have]
    if have[-1] not in picked:
        picked.append(have[-1])
    return picked


def fmt(v: Any, digits: int = 4) -> str:
    """Numbers for tables: 4 significant digits; missing values as an em dash."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.{digits}g}"
    return str(v)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; cells go through `fmt`."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def loss_table(means: dict[int, dict[str, float]], epochs: Sequence[int] | None = None) -> str:
    """Lab-003-style table: rows d_loss / g_loss, one column per chosen epoch."""
    cols = pick_epochs(list(means), epochs)
    rows = [
        [label] + [means[e].get(key) for e in cols]
        for label, key in (("d_loss", "d/loss"), ("g_loss", "g/loss"))
    ]
    return markdown_table(["epoch"] + [str(e) for e in cols], rows)


def metric_by_epoch(rows: Iterable[dict[str, Any]], key: str) -> dict[float, float]:
    """A logged metric (e.g. eval/modes_captured) against the epoch it was logged at, rounded
    to 0.1: runs with different n_critic log at different steps but comparable epochs."""
    return {
        round(float(r["epoch"]), 1): float(r[key])
        for r in rows
        if "epoch" in r and isinstance(r.get(key), (int, float))
    }


def curve_table(runs: Sequence[dict[str, Any]], key: str, max_cols: int = 11) -> str:
    """Runs (rows) x epochs (columns) of one logged metric: how fast each run got there."""
    curves = {r["name"]: metric_by_epoch(r["rows"], key) for r in runs}
    cols = sorted({e for c in curves.values() for e in c})
    if len(cols) > max_cols:  # evenly spread, always keeping the last
        idx = sorted({round(i * (len(cols) - 1) / (max_cols - 1)) for i in range(max_cols)})
        cols = [cols[i] for i in idx]
    return markdown_table(
        [f"{key} \\ epoch"] + [f"{e:g}" for e in cols],
        [[name] + [c.get(e) for e in cols] for name, c in curves.items()],
    )


def _ordered(labels: Iterable[str], order: Sequence[str]) -> list[str]:
    seen = list(dict.fromkeys(labels))
    return [x for x in order if x in seen] + [x for x in seen if x not in order]


def toy_pivot(runs: Sequence[dict[str, Any]]) -> str:
    """Loss (rows) x optimizer (columns); a cell reads `modes captured/total · HQ · rev KL`."""
    losses = _ordered((r["loss"] for r in runs), LOSS_ORDER)
    opts = _ordered((r["optimizer"] for r in runs), OPTIMIZER_ORDER)
    cell: dict[tuple[str, str], str] = {}
    for r in runs:
        s = r["scores"]
        if "modes_captured" not in s:
            cell[(r["loss"], r["optimizer"])] = "—"
            continue
        cell[(r["loss"], r["optimizer"])] = (
            f"{int(s['modes_captured'])}/{int(s.get('modes_total', 0))} · "
            f"{s['high_quality_share']:.3f} · {s['reverse_kl']:.2f}"
        )
    return markdown_table(
        ["loss \\ optimizer"] + opts,
        [[loss] + [cell.get((loss, o), "—") for o in opts] for loss in losses],
    )


def summary_rows(
    runs: Sequence[dict[str, Any]], metric_keys: Sequence[str]
) -> tuple[list[str], list[list[Any]]]:
    """One row per run: labels, schedule, each metric (or "to be scored"), wall time."""
    headers = ["run", "loss", "model", "optimizer", "steps", "epochs", "state"]
    headers += list(metric_keys) + ["wall (s)"]
    rows = []
    for r in runs:
        s = r["scores"]
        scored = any(k in s for k in metric_keys)
        metrics = [s.get(k) if scored else TO_BE_SCORED for k in metric_keys]
        if "kid_mean" in metric_keys and scored and s.get("kid_std") is not None:
            i = list(metric_keys).index("kid_mean")
            metrics[i] = f"{fmt(s['kid_mean'])} ± {fmt(s['kid_std'], 2)}"
        rows.append(
            [
                r["name"],
                r["loss"],
                r["model"],
                r["optimizer"],
                r["step"],
                None if r["epochs"] is None else round(r["epochs"], 1),
                r["state"],
                *metrics,
                None if r["wall_s"] is None else round(r["wall_s"]),
            ]
        )
    return headers, rows


def collect(experiment_dir: Path) -> list[dict[str, Any]]:
    """Everything the tables need from each run directory of an experiment's output."""
    timings = read_json(experiment_dir / TIMINGS)
    runs = []
    for d in run_dirs(experiment_dir):
        cfg = yaml.safe_load((d / CONFIG).read_text()) or {}
        rows = read_metrics(d)
        status = read_json(d / STATUS)
        last = rows[-1] if rows else {}
        runs.append(
            {
                "name": d.name,
                "dir": d,
                **describe(cfg),
                "source": cfg.get("data", {}).get("source", ""),
                "step": status.get("step", last.get("step")),
                "epochs": last.get("epoch"),
                "state": status.get("state", "running"),
                "scores": eval_scores(d),
                "rows": rows,
                "means": epoch_means(rows),
                "wall_s": timings.get(d.name, {}).get("wall_s"),
            }
        )
    return runs


def render(
    experiment_dir: Path,
    kind: str = "auto",
    losses: bool = False,
    epochs: Sequence[int] = (),
    curves: Sequence[str] = (),
) -> str:
    """The Markdown for an experiment's output directory: a summary table (toy: also the
    loss x optimizer grid), a runs x epochs table per metric in `curves`, and, with `losses`,
    one per-epoch loss table per run."""
    runs = collect(experiment_dir)
    if not runs:
        raise FileNotFoundError(f"{experiment_dir}: no run directories (with config.yaml)")
    if kind == "auto":
        kind = "toy" if all(r["source"].startswith(("toy2d", "points")) for r in runs) else "image"
    parts = []
    if kind == "toy":
        pairs = [(r["loss"], r["optimizer"]) for r in runs]
        if len(set(pairs)) == len(pairs):  # a grid only when each cell is one run (not seeds)
            parts.append(
                "Cells: modes captured / total · high-quality share · reverse KL (final step).\n\n"
                + toy_pivot(runs)
            )
        keys: Sequence[str] = TOY_KEYS
    else:
        conditional = any("+" in r["model"] for r in runs)
        keys = IMAGE_KEYS + (COND_KEYS if conditional else ())
    parts.append(markdown_table(*summary_rows(runs, keys)))
    parts += [curve_table(runs, key) for key in curves]
    if losses:
        for r in runs:
            parts.append(
                f"**{r['name']}** ({r['loss']}, {r['model']}, {r['optimizer']}): "
                "mean loss per epoch\n\n" + loss_table(r["means"], epochs or None)
            )
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------- running an experiment


def experiment_configs(config_dir: Path) -> list[Path]:
    configs = sorted(config_dir.glob("*.yaml"))
    if not configs:
        raise FileNotFoundError(f"{config_dir}: no *.yaml configs")
    return configs


def resolve_run(path: Path) -> tuple[Path, list[str]]:
    """The config to train and its overrides for one experiment file.

    An experiment file is either a full config (the labs' runs: frozen as the lab had them) or a
    reference to a shipped recipe in the sweep files' form, `config: <path relative to the
    file>` plus `overrides: [key=value, ...]` (e.g. a seed), so the measured runs of a recipe
    are always the recipe as shipped, never a copy that drifts from it."""
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or "config" not in raw:  # no config schema key is `config`
        return path, []
    extra = set(raw) - {"config", "overrides"}
    if extra:
        raise ValueError(
            f"{path}: a recipe reference holds only `config` and `overrides`, not "
            f"{', '.join(sorted(extra))}: put settings in `overrides` as key=value strings"
        )
    return read_base(path, raw)


def train_command(config: Path, out_dir: Path, overrides: Sequence[str]) -> list[str]:
    """`gandist train` for one experiment file, writing to <out_dir>/<file stem>, resumable."""
    recipe, own = resolve_run(config)
    return [
        sys.executable,
        "-m",
        "gandist",
        "train",
        str(recipe),
        *own,
        f"train.output_dir={out_dir}",
        f"train.run_name={config.stem}",
        "train.resume=auto",
        *overrides,
    ]


def run_experiment(
    config_dir: Path,
    out_root: Path,
    overrides: Sequence[str] = (),
    only: Sequence[str] = (),
    threads: int = 0,
) -> int:
    """Train the experiment's configs one after the other (they would only fight over the
    CPUs). Completed runs are skipped: delete a run's directory to train it again. A run that
    stops on a signal (exit 75: SIGTERM, a preemption) stops the experiment too; the same
    command resumes it. Returns the exit code: 0, 1 when any run failed, or 75 when stopped."""
    out_dir = out_root / config_dir.name
    out_dir.mkdir(parents=True, exist_ok=True)
    timings_path = out_dir / TIMINGS
    env: dict[str, str] = {}
    if threads:
        # Small models on a shared CPU: one intra-op thread per process avoids oversubscription.
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    failed = 0
    # Every run's config loaded first: a typo or a broken reference fails now, not after hours
    # of runs (as `gandist sweep` does).
    planned = []
    for config in experiment_configs(config_dir):
        if not only or config.stem in only:
            base, own = resolve_run(config)
            try:
                load_config(base, [*own, *overrides])
            except ConfigError as exc:  # a reference: name the experiment file too
                raise exc if base == config else ConfigError(f"{config}: {exc}") from None
            planned.append((config, train_command(config, out_dir, overrides)))
    for config, cmd in planned:
        status = read_json(out_dir / config.stem / STATUS)
        if status.get("state") == "completed":
            print(f"[experiments] {config.stem}: completed, skipped", flush=True)
            continue
        print(f"[experiments] {' '.join(cmd[2:])}", flush=True)
        outcome = run_commands([cmd], env=env)[0]
        rc, wall = outcome.rc, outcome.seconds
        timings = read_json(timings_path)
        timings[config.stem] = {"wall_s": round(wall, 1), "rc": rc, "finished": time.ctime()}
        timings_path.write_text(json.dumps(timings, indent=2) + "\n")
        print(f"[experiments] {config.stem}: exit {rc}, {wall:.0f} s", flush=True)
        if rc == EXIT_PREEMPTED:
            print(
                f"[experiments] stopped at {config.stem} (checkpointed); the same command "
                "resumes it and trains the rest",
                flush=True,
            )
            return EXIT_PREEMPTED
        failed += rc != 0
    return 1 if failed else 0
