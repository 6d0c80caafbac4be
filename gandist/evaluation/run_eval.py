"""`gandist eval <run or checkpoint>`: score a saved generator, on one process or many.

Results go to `<run>/evals/step_NNNNNN-<extractor>[-nN][-seedS][-raw][-psiP][-drsQ].json`
(`eval_record_name`: each setting that changes the scores and differs from the run's own is in
the name; never over the training's own `eval.json` or an earlier record) and, unless tracking
is disabled, to a W&B run of job type `eval` grouped with the training run, so the scores sit
beside its curves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from gandist.config import load_config
from gandist.evaluation.image_eval import ImageEvaluator, Unavailable, open_extractor
from gandist.evaluation.rejection import load_critic, rejection_record, with_rejection
from gandist.evaluation.toy_metrics import evaluate_modes, has_mode_metrics
from gandist.models.truncation import truncated
from gandist.run_files import CONFIG, EVALS_DIR
from gandist.sampling import load_generator
from gandist.tracking.wandb_run import log_side_run
from gandist.training.checkpoint import read_trainer_state, run_dir_of
from gandist.training.distributed import assert_world_size


def evaluate_checkpoint(
    path: str | Path,
    overrides: list[str] | None = None,
    use_ema: bool = True,
    wandb_mode: str = "",
    out: str | Path | None = None,
) -> tuple[dict[str, Any], Path | None]:
    """Scores of the checkpoint at `path` (a run directory means its latest checkpoint).

    `overrides` are dotted config keys applied to the run's config (eval.n_samples=5000,
    eval.extractor=inception, ...). Returns the result record and where it was written (None
    off the main rank)."""
    G, info, ck = load_generator(path, use_ema)
    cfg = load_config(ck / CONFIG, overrides or [])
    own = load_config(ck / CONFIG, [])  # the run's settings: a record names where it differs
    has_ema = (ck / "ema_generator.safetensors").is_file()
    state = read_trainer_state(ck)
    step = int(state["step"])
    acc = Accelerator(cpu=not torch.cuda.is_available())
    assert_world_size(acc)
    psi = cfg.eval.truncation
    G = truncated(G.to(acc.device), psi)
    started = time.perf_counter()
    score: Callable[[torch.nn.Module], dict[str, float] | None]
    if info.kind == "points":
        extras = _toy_extras(cfg)
        if not has_mode_metrics(extras):
            raise ValueError(
                f"{cfg.data.source}: no metrics for this 2-D data (mode metrics need a known "
                "mixture: toy2d:ring8 or toy2d:grid25)"
            )
        extractor_name = "modes"

        def score(g: torch.nn.Module) -> dict[str, float] | None:
            return evaluate_modes(g, extras, cfg.eval.n_samples, cfg.train.seed, acc.device)
    else:
        extractor = open_extractor(cfg, info)
        if isinstance(extractor, Unavailable):
            raise FileNotFoundError(extractor.reason)
        extractor_name = extractor.kind
        evaluator = ImageEvaluator(cfg, info, extractor, acc)

        def score(g: torch.nn.Module) -> dict[str, float] | None:
            return evaluator(g, cfg.train.seed)

    q = cfg.eval.rejection
    if q > 0:  # after the checks above: calibration can take minutes
        G = with_rejection(G, load_critic(ck, cfg, info, acc.device), cfg, info)
    scores = score(G) or {}
    drs = rejection_record(G, acc if info.kind == "image" else None)
    if not acc.is_main_process:
        return {}, None
    record = {
        "checkpoint": str(ck),
        "step": step,
        "extractor": extractor_name,
        "n_samples": cfg.eval.n_samples,
        "processes": acc.num_processes,
        "ema": use_ema and has_ema,
        "truncation": psi,
        **({"label_names": list(info.label_names)} if info.label_type != "none" else {}),
        **drs,
        "seconds": round(time.perf_counter() - started, 2),
        **scores,
    }
    run_dir = run_dir_of(ck)
    name = eval_record_name(
        step,
        extractor_name,
        n=None if cfg.eval.n_samples == own.eval.n_samples else cfg.eval.n_samples,
        seed=None if cfg.train.seed == own.train.seed else cfg.train.seed,
        raw=has_ema and not use_ema,
        psi=psi,
        rejection=q,
    )
    target = Path(out) if out else unused_path(run_dir / EVALS_DIR / name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(record, indent=2) + "\n")
    numbers = {k: v for k, v in record.items() if isinstance(v, int | float) and k != "step"}
    log_side_run(
        cfg.tracking,
        wandb_mode,
        run_dir,
        job_type="eval",
        step=step,
        scalars={f"eval/{k}": v for k, v in numbers.items()},
        config={"checkpoint": str(ck), "train_run_id": state.get("wandb_run_id", "")},
        saved=state.get("wandb"),
    )
    return record, target


def eval_record_name(
    step: int,
    extractor: str,
    n: int | None = None,
    seed: int | None = None,
    raw: bool = False,
    psi: float = 1.0,
    rejection: float = 0.0,
) -> str:
    """File name of a `gandist eval` record. Scores taken with other settings (more samples,
    other noise, the raw G beside its EMA, truncation, rejection sampling) get their own name, so
    comparing them never overwrites the first; `n`/`seed` are None where they are the run's."""
    tag = extractor
    tag += "" if n is None else f"-n{n}"
    tag += "" if seed is None else f"-seed{seed}"
    tag += "-raw" if raw else ""
    tag += "" if psi == 1.0 else f"-psi{psi:g}"
    tag += f"-drs{rejection:g}" if rejection else ""
    return f"step_{step:06d}-{tag}.json"


def unused_path(path: Path) -> Path:
    """`path`, or `stem-2.json`, `stem-3.json`, ... when it exists: a re-score with settings the
    name does not carry (an override such as eval.nearest_k) keeps the earlier record."""
    k = 2
    found = path
    while found.exists():
        found = path.with_name(f"{path.stem}-{k}{path.suffix}")
        k += 1
    return found


def _toy_extras(cfg) -> dict:
    from gandist.data.sources.registry import load_source

    return load_source(cfg.data).info.extras


def format_scores(record: dict[str, Any]) -> str:
    """Aligned `name value` lines for the terminal; per-label scores (`family/label` keys, e.g.
    cond_label_accuracy/3) share one line per family, as `label:value` pairs. With the record's
    `label_names` the labels (and the classes cond_label_predicted names) are shown by name, so
    a folder data set's `cat:0.91` needs no lookup of which index is which class."""
    names = [str(n).replace(" ", "_") for n in record.get("label_names") or []]

    def named(index: str) -> str:
        return names[int(index)] if index.isdigit() and int(index) < len(names) else index

    rows: list[tuple[str, str]] = []
    families: dict[str, list[str]] = {}
    for k, v in record.items():
        if not isinstance(v, float) or k == "seconds":
            continue
        family, per_label, label = k.partition("/")
        if not per_label:
            rows.append((k, f"{v:.4f}"))
            continue
        if family not in families:
            families[family] = []
            rows.append((family, ""))
        value = f"{v:.3g}"
        if family == "cond_label_predicted":  # a class index
            value = named(value)
        families[family].append(f"{named(label)}:{value}")
    rows = [(k, text or " ".join(families[k])) for k, text in rows]
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"  {k:<{width}} {text}" for k, text in rows)
