"""What a run tells about itself: the start-up banner, its W&B run (started with the flat
config), the files it leaves at the end (status, pictures, eval.json, the model artifact) and
the end-of-run summary. The trainer passes in what it knows."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gandist import __version__
from gandist.config import Config, to_dict
from gandist.data.base import DatasetInfo
from gandist.run_files import EVAL, LOSS_CURVES, METRICS, write_status
from gandist.tracking.artifacts import define_eval_summaries, log_final_model
from gandist.tracking.plots import make_gif, plot_losses
from gandist.tracking.wandb_run import init_kwargs, moved_note, resolve_settings


def banner(
    cfg: Config,
    info: DatasetInfo,
    num_samples: int,
    processes: int,
    device: str,
    run_dir: Path,
    compiled: str = "",
) -> str:
    """The run's first line. `compiled`: accelerate's dynamo backend when it compiled G and D
    (`accelerate launch --dynamo_backend`), so the user sees the flag took effect."""
    t = cfg.train
    shape = "x".join(map(str, info.sample_shape))
    compile_note = f", torch.compile ({compiled})" if compiled else ""
    return (
        f"gandist {__version__}: {cfg.name} | data {info.source} ({num_samples} samples, {shape}, "
        f"labels {info.label_type}) | {processes} process(es) on {device}, precision "
        f"{t.precision}{compile_note} | global batch {t.batch_size}, n_critic {t.n_critic}, "
        f"{t.steps} steps | run dir {run_dir}"
    )


def summary(
    step: int,
    run_dir: Path,
    samples_dir: Path,
    checkpoint: Path | None,
    wandb_dir: Path | None,
    wandb_mode: str,
    stopped_of: int = 0,
) -> str:
    """The block printed when a run ends: where everything went. `stopped_of`: the run was
    stopped by a signal before its train.steps (this many), which the first line says."""
    first = f"done: {step} steps"
    if stopped_of:
        first = f"stopped at step {step} of {stopped_of} (continue with train.resume=auto)"
    lines = [
        first,
        f"  run directory : {run_dir}",
        f"  sample grids  : {samples_dir}",
        f"  checkpoint    : {checkpoint}",
    ]
    if (run_dir / METRICS).is_file():  # train.log_every=0 and no evaluation: none written
        lines.append(f"  metrics       : {run_dir / METRICS} (curves: {LOSS_CURVES})")
    lines.append(f"  report        : gandist report {run_dir}")
    scores = run_dir / EVAL
    if scores.is_file():
        record = json.loads(scores.read_text())
        shown = [k for k in ("fid", "cond_accuracy", "modes_captured") if k in record]
        brief = ", ".join(f"{k} {record[k]:.4g}" for k in shown)
        lines.append(f"  evaluation    : {scores}" + (f" ({brief})" if brief else ""))
    if wandb_dir is not None:
        lines.append(f"  W&B ({wandb_mode}) : {wandb_dir}")
        if wandb_mode == "offline":
            # one offline directory per session: a resumed run's history is in all of them
            sessions = sorted(wandb_dir.parent.glob("offline-run-*"))
            many = len(sessions) > 1 and wandb_dir in sessions
            what = f"{wandb_dir.parent}/offline-run-*" if many else str(wandb_dir)
            lines.append(f"  upload later  : wandb sync {what}")
    return "\n".join(lines)


def flat_config(cfg: Config) -> dict[str, Any]:
    """{"optim.d.lr": 2e-4, ...}: the config as W&B's run config shows it."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = node

    walk("", to_dict(cfg))
    return flat


def start_tracker(
    acc: Any,
    cfg: Config,
    mode: str,
    run_id: str,
    run_dir: Path,
    saved: Mapping[str, str] | None = None,
) -> str:
    """Start the run's W&B tracker through accelerate (it logs on the main process only) and
    return the mode it runs in: an online start that fails falls back to offline, never stops
    training. `saved`: where the run was started (a resumed run continues there)."""
    if acc.is_main_process and (note := moved_note(cfg.tracking, saved)):
        print(f"gandist: {note}", flush=True)

    def init(how: str) -> None:
        kwargs = init_kwargs(cfg.tracking, how, run_id, run_dir, run_dir.name, saved)
        acc.init_trackers(
            resolve_settings(cfg.tracking, saved=saved).project,
            config=flat_config(cfg),
            init_kwargs={"wandb": kwargs},
        )

    try:
        init(mode)
    except Exception as exc:  # noqa: BLE001 - any W&B failure must not stop training
        if mode != "online":
            raise
        print(
            f"gandist: W&B online init failed ({type(exc).__name__}: {exc}); logging "
            "offline instead (upload later with `wandb sync`)",
            file=sys.stderr,
            flush=True,
        )
        import wandb

        wandb.teardown()  # the failed run still holds its id in wandb's service process
        mode = "offline"
        acc.trackers = []
        init(mode)
    if acc.is_main_process:  # the best eval/* in the run summary, not only the last
        define_eval_summaries(acc.get_tracker("wandb", unwrap=True))
    return mode


def record_end(
    run_dir: Path,
    *,
    preempted: bool,
    step: int,
    steps: int,
    checkpoint: Path,
    signal: str | None,
    final_eval: dict[str, float] | None,
    wandb_run: Any = None,
    stream: Any = None,
    ema: bool = False,
) -> None:
    """The files a run leaves when it ends (main process only): status.json, the loss curves
    and samples GIF (with or without W&B), eval.json, and on W&B the final generator as a
    model artifact (completed runs only: a preempted run goes on)."""
    write_status(
        run_dir,
        "preempted" if preempted else "completed",
        step=step,
        steps=steps,
        checkpoint=str(checkpoint),
        signal=signal,
    )
    plot_losses(run_dir)
    make_gif(run_dir)
    if final_eval is not None:
        (run_dir / EVAL).write_text(json.dumps({"step": step, **final_eval}, indent=2))
    if wandb_run is not None and not preempted:
        log_final_model(wandb_run, checkpoint, run_dir, stream, ema=ema)


def wandb_local_dir(acc: Any, mode: str) -> Path | None:
    """The W&B run's local directory (main process, tracking on), for the summary."""
    if mode == "disabled" or not acc.is_main_process:
        return None
    try:
        return Path(acc.get_tracker("wandb", unwrap=True).dir).parent
    except Exception:  # noqa: BLE001 - tracker absence must not fail a finished run
        return None
