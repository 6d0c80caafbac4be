"""What a finished run leaves in W&B besides curves: the final generator as a model artifact, and
the best evaluation scores in the run summary.

A model artifact is how W&B users pick up a trained generator (`run.use_artifact(...)`); it
carries everything needed to rebuild and sample it without the run directory: the weights, the
run's config.yaml, and dataset.json (the data's shape and labels).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from gandist.run_files import CONFIG, EVAL, TRAINER_STATE

# Which way is better for each eval/* metric (keys of toy_metrics, image_metrics, image_eval).
EVAL_GOALS = {
    "fid": "min",
    "kid_mean": "min",
    "precision": "max",
    "recall": "max",
    "density": "max",
    "coverage": "max",
    "cond_accuracy": "max",
    "cond_f1": "max",
    "modes_captured": "max",
    "high_quality_share": "max",
    "reverse_kl": "min",
}


def define_eval_summaries(run: Any) -> None:
    """Make the run summary show the best value of each eval/* metric next to the last one (by
    default W&B keeps only the last, which after a late collapse hides the run's best point)."""
    for key, goal in EVAL_GOALS.items():
        run.define_metric(f"eval/{key}", summary=f"{goal},last")


def artifact_name(run_name: str) -> str:
    """W&B artifact names allow letters, digits, '-', '_' and '.' only."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{run_name}-generator").strip("-")


def dataset_json(run_dir: Path, stream: Any, state: dict[str, Any]) -> str:
    """The data's description, best source first: a dataset.json in the run directory, the shard
    manifest the stream reads, else the data_info the trainer keeps in trainer_state.json."""
    local = run_dir / "dataset.json"
    if local.is_file():
        return local.read_text()
    manifest = getattr(stream, "manifest", None)
    if manifest is not None and hasattr(manifest, "to_json"):
        return str(manifest.to_json())
    return json.dumps(state.get("data_info", {}), indent=2)


def log_model_artifact(
    run: Any,
    checkpoint: Path,
    run_dir: Path,
    stream: Any = None,
    ema: bool = False,
    aliases: tuple[str, ...] = ("final",),
) -> Any:
    """Log the checkpoint's generator (the EMA one when `ema`) as a W&B artifact of type model,
    with config.yaml and dataset.json; returns the artifact. Main process, tracker active."""
    import wandb

    state = json.loads((checkpoint / TRAINER_STATE).read_text())
    weights = checkpoint / ("ema_generator.safetensors" if ema else "generator.safetensors")
    scores = run_dir / EVAL
    final_eval = json.loads(scores.read_text()) if scores.is_file() else {}
    metadata: dict[str, Any] = {
        "step": state.get("step"),
        "images_seen": state.get("images_seen"),
        "world_size": state.get("world_size"),
        "gandist_version": state.get("gandist_version"),
        "config_name": state.get("config_name"),
        "ema": ema,
        "weights": weights.name,
        "data_info": state.get("data_info", {}),
        # eval.json is this step's only when the final evaluation ran (else a stale file)
        "eval": final_eval if final_eval.get("step") == state.get("step") else {},
    }
    artifact = wandb.Artifact(
        artifact_name(run_dir.name),
        type="model",
        description=f"gandist generator{' (EMA)' if ema else ''} of run {run_dir.name} at step "
        f"{metadata['step']}",
        metadata=metadata,
    )
    # Copied into wandb's staging area: an offline run uploads them at `wandb sync`, possibly
    # after checkpoint rotation has removed this directory.
    artifact.add_file(str(weights), name=weights.name)
    artifact.add_file(str(checkpoint / CONFIG), name=CONFIG)
    with artifact.new_file("dataset.json") as fh:
        fh.write(dataset_json(run_dir, stream, state))
    run.log_artifact(artifact, aliases=list(aliases))
    return artifact


def log_final_model(
    run: Any, checkpoint: Path | None, run_dir: Path, stream: Any = None, ema: bool = False
) -> bool:
    """`log_model_artifact` for the end of training, where a W&B problem must not turn a
    completed run into a failed one: it is reported on stderr instead. True when logged."""
    if checkpoint is None:
        return False
    try:
        log_model_artifact(run, checkpoint, run_dir, stream, ema)
    except Exception as exc:  # noqa: BLE001 - the weights are safe in the checkpoint regardless
        print(
            f"gandist: could not log the generator to W&B ({type(exc).__name__}: {exc}); it is "
            f"in {checkpoint}",
            file=sys.stderr,
            flush=True,
        )
        return False
    return True
