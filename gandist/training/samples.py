"""What the trainer shows and scores along the way: fixed-input sample grids (or 2-D scatters)
and the image evaluator, set up once. Every function here takes the unwrapped generator."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator

from gandist.config import Config
from gandist.data.base import DatasetInfo
from gandist.data.stream import BatchStream
from gandist.evaluation.image_eval import ImageEvaluator, Unavailable, open_extractor
from gandist.evaluation.rejection import rejection_record, with_rejection
from gandist.evaluation.toy_metrics import evaluate_modes, has_mode_metrics
from gandist.models.truncation import truncated
from gandist.tracking.images import save_grid, save_scatter
from gandist.training.noise import fixed_noise


@dataclass
class FixedInputs:
    """The z (and labels) of every sample grid of a run, so grids over time are comparable."""

    z: torch.Tensor
    y: torch.Tensor | None
    nrow: int  # grid row length (one row per class for class labels), 0: automatic


def fixed_labels(stream: BatchStream, n: int) -> tuple[torch.Tensor | None, int]:
    """Labels for sample grids: one row per class (class-sorted), or the first n label sets."""
    info = stream.info
    if info.label_type == "class":
        per_class = max(1, n // info.num_labels)
        return torch.arange(info.num_labels).repeat_interleave(per_class), per_class
    if info.label_type == "multi":
        return stream.first_samples(n)[1].clone(), 0
    return None, 0


def fixed_inputs(cfg: Config, stream: BatchStream) -> FixedInputs:
    y, nrow = (
        fixed_labels(stream, cfg.train.num_samples) if cfg.model.condition != "none" else (None, 0)
    )
    n = cfg.train.num_samples if y is None else len(y)
    return FixedInputs(fixed_noise(cfg.train.seed, n, cfg.model.z_dim), y, nrow)


@torch.no_grad()
def render_samples(
    G: torch.nn.Module,
    inputs: FixedInputs,
    stream: BatchStream,
    path: Path,
    title: str,
    device: torch.device,
    dtype: torch.dtype,
) -> Path:
    """G's samples for the fixed inputs as a PNG grid (images) or scatter over the data (2-D)."""
    was_training = G.training
    G.eval()
    y = None if inputs.y is None else inputs.y.to(device)
    if y is not None and y.is_floating_point():
        y = y.to(dtype)
    out = G(inputs.z.to(device, dtype), y)
    G.train(was_training)
    if stream.info.kind == "points":
        save_scatter(out, path, real=stream.first_samples(2000)[0], title=title)
    else:
        save_grid(out, path, nrow=inputs.nrow or None)
    return path


def open_scorer(
    cfg: Config, info: DatasetInfo, acc: Accelerator
) -> tuple[ImageEvaluator | None, str]:
    """The image evaluator of this run, or None and why (every rank decides alike: same files,
    same config). eval.images=on turns a missing extractor into an error."""
    if cfg.eval.images == "off":
        return None, ""
    if cfg.model.condition == "none":
        info = dataclasses.replace(info, label_type="none")
    extractor = open_extractor(cfg, info)
    if isinstance(extractor, Unavailable):
        if cfg.eval.images == "on":
            raise FileNotFoundError(f"eval.images=on: {extractor.reason}")
        return None, f"image metrics off: {extractor.reason}"
    return ImageEvaluator(cfg, info, extractor, acc), ""


class Scorer:
    """The run's metrics for its data kind: mode coverage for 2-D mixtures, FID and friends for
    images when an extractor is available (set up once, on first use). A collective: every rank
    calls it; the scores come back on the main rank, None elsewhere."""

    def __init__(self, cfg: Config, info: DatasetInfo, acc: Accelerator) -> None:
        self.cfg, self.info, self.acc = cfg, info, acc
        self._images: ImageEvaluator | None = None
        self._checked = False

    def __call__(
        self,
        G: torch.nn.Module,
        say: Callable[[str], None],
        critic: torch.nn.Module | None = None,
    ) -> dict[str, float] | None:
        """`critic`: score with rejection sampling (eval.rejection) through a calibrated copy
        of it; the scores then carry `rejection` and `rejection_acceptance`."""
        G = truncated(G, self.cfg.eval.truncation)
        if self.info.kind == "image":
            if not self._checked:
                self._checked = True
                self._images, why = open_scorer(self.cfg, self.info, self.acc)
                if why:
                    say(why)
            if self._images is None:
                return None  # nothing to score: no calibration either
        elif not self.acc.is_main_process or not has_mode_metrics(self.info.extras):
            return None  # 2-D scores: the main rank's alone, for known mixtures
        if critic is not None:
            steps = self.cfg.eval.rejection_steps
            how = f"calibrating the critic for {steps} steps" if steps else "the critic as trained"
            say(f"rejection sampling (eval.rejection {self.cfg.eval.rejection:g}): {how}")
            G = with_rejection(G, critic, self.cfg, self.info)
        if self._images is not None:
            scores = self._images(G, self.cfg.train.seed)
        else:
            scores = evaluate_modes(
                G, self.info.extras, self.cfg.eval.n_samples, self.cfg.train.seed, self.acc.device
            )
        drs = rejection_record(G, self.acc if self.info.kind == "image" else None)
        return None if scores is None else {**scores, **drs}
