"""`gandist sample`: images or points from a checkpoint's safetensors export and config only.

Nothing pickled is read, so sampling a checkpoint from elsewhere cannot execute code, and no
data set has to be present: the data description travels in `trainer_state.json` (only
rejection sampling reads real data, to calibrate the critic).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from gandist.config import load_config
from gandist.data.base import DatasetInfo
from gandist.models import build_generator
from gandist.models.conditioning import random_labels
from gandist.models.rejection import check_rejection
from gandist.models.truncation import check_truncation, truncated
from gandist.run_files import CONFIG
from gandist.seeds import derive_seed
from gandist.tracking.images import save_grid, save_scatter
from gandist.training.checkpoint import load_module_weights, read_trainer_state, resolve_checkpoint
from gandist.training.ema import refresh_norm_stats


def info_from_state(state: dict) -> DatasetInfo:
    d = state["data_info"]
    return DatasetInfo(
        kind=d["kind"],
        channels=d["channels"],
        image_size=d["image_size"],
        label_type=d["label_type"],
        num_labels=d["num_labels"],
        label_names=tuple(d["label_names"]),
        source=d["source"],
        point_dim=d.get("point_dim", 2),
    )


def load_generator(
    path: str | Path, use_ema: bool = True
) -> tuple[torch.nn.Module, DatasetInfo, Path]:
    """Build the generator of a run or checkpoint directory and load its exported weights.

    The returned info has label_type "none" when the model ignores labels, even if its data had
    them, so callers condition exactly when the generator does.
    """
    ck = resolve_checkpoint(path)
    cfg = load_config(ck / CONFIG)
    info = info_from_state(read_trainer_state(ck))
    if cfg.model.condition == "none":
        info = dataclasses.replace(info, label_type="none")
    G = build_generator(cfg.model, info)
    weights = ck / "ema_generator.safetensors"
    if not (use_ema and weights.is_file()):
        weights = ck / "generator.safetensors"
    load_module_weights(G, weights)
    if weights.name == "ema_generator.safetensors":  # averaged BatchNorm statistics: recompute
        n_labels = info.num_labels if info.label_type != "none" else 0
        seed = derive_seed(cfg.train.seed, "norm-stats")
        refresh_norm_stats(G, info.label_type, n_labels, seed)
    G.eval()
    return G, info, ck


DEFAULT_N = 64


def default_count(info: DatasetInfo) -> int:
    """`gandist sample` without --n: 64, or for a class model as many per class as fit in 64
    (at least one), so the grid has one full row per class."""
    k = info.num_labels if info.label_type == "class" else 0
    return k * max(1, DEFAULT_N // k) if k else DEFAULT_N


def class_rows(n: int, k: int) -> tuple[torch.Tensor, int]:
    """n class labels sorted by class, spread evenly over the k classes, and the grid's row
    length: one row per class when n is a multiple of k, else 0 (the grid's own)."""
    if n % k == 0:
        return torch.arange(k).repeat_interleave(n // k), n // k
    return torch.arange(n) * k // n, 0


def parse_labels(
    text: str | None, info: DatasetInfo, n: int, seed: int = 0
) -> tuple[torch.Tensor | None, int]:
    """Labels for n samples: None -> class-sorted rows / label sets drawn from `seed`; else one
    condition for all samples, given as a class name or index ("cat", "3") or, for multi-label
    data, label names or indices joined by commas ("red cube,blue sphere"). A name comes
    first: class folders named 1..5 (or "0", "1", "10", "2" sorted) have names that are other
    classes' indices, and `--labels 1` means the folder called 1."""
    if info.label_type == "none":
        if text:
            raise ValueError("--labels given, but this generator is unconditional")
        return None, 0
    names = list(info.label_names)

    def index(tok: str) -> int:
        tok = tok.strip()
        if tok in names:
            return names.index(tok)
        if tok.isdigit() and int(tok) < info.num_labels:
            return int(tok)
        raise ValueError(
            f"--labels: {tok!r} is not a label index (0..{info.num_labels - 1}) "
            f"or name ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})"
        )

    if info.label_type == "class":
        if text is None:
            return class_rows(n, info.num_labels)
        return torch.full((n,), index(text), dtype=torch.long), 0
    if text is None:
        g = torch.Generator().manual_seed(seed)  # as G.sample(n, seed=seed) draws them
        return random_labels("multi", info.num_labels, n, g), 0
    y = torch.zeros(n, info.num_labels)
    for tok in text.split(","):
        y[:, index(tok)] = 1
    return y, 0


def check_out(out: Path) -> None:
    """Before any work: the format comes from the file name's suffix (a directory, or a name
    without one, failed after sampling with an image library's "unknown file extension")."""
    if out.is_dir() or not out.suffix:
        example = out / "samples.png" if out.is_dir() else out.with_suffix(".png")
        raise ValueError(
            f"--out {out}: give a file name, e.g. {example} (.png or .jpg: the picture; .npy: "
            "the array)"
        )


@torch.no_grad()
def sample(
    path: str | Path,
    n: int | None,
    out: str | Path,
    labels: str | None = None,
    seed: int = 0,
    use_ema: bool = True,
    truncation: float = 1.0,
    rejection: float = 0.0,
) -> Path:
    """n samples (None: default_count) of a run's generator to a PNG grid / scatter or a .npy
    file; `rejection`: through discriminator rejection sampling at that quantile
    (models/rejection.py)."""
    check_truncation(truncation, "--truncation")
    check_rejection(rejection, "--rejection")
    if n is not None and n < 1:
        raise ValueError(f"--n: must be at least 1, got {n}")
    check_out(Path(out))
    G, info, ck = load_generator(path, use_ema)
    n = default_count(info) if n is None else n
    G = truncated(G, truncation)
    if rejection > 0:
        from gandist.evaluation.rejection import load_critic, with_rejection

        cfg = load_config(ck / CONFIG)
        critic = load_critic(ck, cfg, info, torch.device("cpu"))
        G = with_rejection(G, critic, cfg, info, rejection)
    y, nrow = parse_labels(labels, info, n, seed)
    count = n if y is None else len(y)
    z = torch.randn(count, G.z_dim, generator=torch.Generator().manual_seed(seed))
    x = G(z, y)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if info.kind == "points":
        if out.suffix == ".npy":
            np.save(out, x.numpy().astype(np.float32))
        else:
            save_scatter(x, out)
        return out
    if out.suffix == ".npy":
        np.save(out, x.numpy().astype(np.float32))
        return out
    return save_grid(x, out, nrow=nrow or None)
