"""Image metrics of a generator, computed across ranks (in training and by `gandist eval`).

Sample i's noise and condition depend only on (seed, i), and the N samples are split into one
contiguous chunk per rank; features are gathered in index order, so 1 process and N processes
score exactly the same samples. The metrics themselves run on the main rank.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from gandist.config import Config
from gandist.data.base import DatasetInfo
from gandist.data.keys import GENERATED_SOURCES, source_name
from gandist.evaluation.classifier import WEIGHTS, default_evaluator_dir
from gandist.evaluation.features import build_extractor, spec_matches
from gandist.evaluation.image_metrics import conditional_scores, fid_kid, prdc, thumbnails
from gandist.evaluation.reference import load_or_build_reference
from gandist.training.noise import sample_noise


@dataclass
class Unavailable:
    """Why image metrics cannot run, with the fix (eval.images=auto logs it once and goes on)."""

    reason: str


def evaluator_dir(cfg: Config) -> Path:
    return Path(cfg.eval.evaluator) if cfg.eval.evaluator else default_evaluator_dir(cfg.data)


def train_evaluator_hint(cfg: Config) -> str:
    d = cfg.data
    cmd = f"gandist train-evaluator {shlex.quote(d.source)}"  # pipe: sources hold spaces
    for flag, value in (("--image-size", d.image_size), ("--channels", d.channels)):
        if value:
            cmd += f" {flag} {value}"
    if source_name(d.source) in GENERATED_SOURCES:  # elsewhere they select nothing
        if d.n_samples:
            cmd += f" --n-samples {d.n_samples}"
        if d.seed:
            cmd += f" --seed {d.seed}"
    if d.root != "data":
        cmd += f" --root {d.root}"
    return cmd


def open_extractor(cfg: Config, info: DatasetInfo) -> nn.Module | Unavailable:
    """The configured extractor for images like `info`'s, or why there is none."""
    e = cfg.eval
    directory = evaluator_dir(cfg)
    if e.extractor == "domain" and not (directory / WEIGHTS).is_file():
        return Unavailable(
            f"no evaluator for this data set in {directory}: train one with "
            f"`{train_evaluator_hint(cfg)}` (or set eval.evaluator, or eval.extractor=inception)"
        )
    try:
        extractor = build_extractor(e.extractor, directory, e.inception_weights)
    except FileNotFoundError as exc:
        return Unavailable(str(exc))
    spec = getattr(extractor, "spec", None)
    if spec is not None:
        why = spec_matches(spec, info.channels, info.image_size)
        if why:
            return Unavailable(
                f"{directory}: {why}; train one for this data: `{train_evaluator_hint(cfg)}`"
            )
    return extractor


def _chunk(n: int, rank: int, world: int) -> tuple[int, int]:
    sizes = [len(c) for c in torch.arange(n).tensor_split(world)]
    start = sum(sizes[:rank])
    return start, start + sizes[rank]


class ImageEvaluator:
    """Scores a generator against cached real features. Calling it is a collective."""

    def __init__(
        self,
        cfg: Config,
        info: DatasetInfo,
        extractor: nn.Module,
        acc: Accelerator,
        progress: bool = True,
    ) -> None:
        self.cfg, self.info, self.acc, self.progress = cfg, info, acc, progress
        self.extractor = extractor.to(acc.device).eval()
        e = cfg.eval
        directory = evaluator_dir(cfg)
        seed = cfg.train.seed

        def reference() -> dict[str, torch.Tensor]:
            return load_or_build_reference(
                self.extractor,
                cfg.data,
                directory,
                e.n_samples,
                seed,
                e.batch_size,
                acc.device,
                progress=progress and acc.is_main_process,
            )

        # The main rank builds (or reads) the cache; the others read it after the barrier.
        self.reference = reference() if acc.is_main_process else {}
        acc.wait_for_everyone()
        if not acc.is_main_process:
            self.reference = reference()
        judge = getattr(extractor, "label_type", "none")
        self.judges_labels = (
            info.label_type != "none"
            and judge == info.label_type
            and extractor.spec.num_labels == info.num_labels
        )

    def conditions(self, n: int) -> torch.Tensor | None:
        """Condition of sample i: the label of real reference sample i (mod the reference size),
        so generated conditions follow the data's label distribution."""
        if self.info.label_type == "none":
            return None
        labels = self.reference["labels"]
        y = labels[torch.arange(n) % len(labels)]
        return y.long() if self.info.label_type == "class" else y.float()

    @torch.no_grad()
    def __call__(self, G: nn.Module, seed: int) -> dict[str, float] | None:
        """Metrics of n samples from G on the main rank; None elsewhere. Every rank calls it."""
        acc, e = self.acc, self.cfg.eval
        n = e.n_samples
        z_all = sample_noise(seed, "eval", 0, n, G.z_dim)
        y_all = self.conditions(n)
        lo, hi = _chunk(n, acc.process_index, acc.num_processes)
        dtype = next(G.parameters()).dtype
        was_training = G.training
        G.eval()
        feats, logits, pixels = [], [], []
        bar = tqdm(
            total=n,
            desc="eval: generated samples",
            unit="img",
            leave=False,
            disable=not (self.progress and acc.is_main_process),
        )
        for i in range(lo, hi, e.batch_size):
            j = min(i + e.batch_size, hi)
            y = None if y_all is None else y_all[i:j].to(acc.device)
            if y is not None and y.is_floating_point():
                y = y.to(dtype)
            x = G(z_all[i:j].to(acc.device, dtype), y).float().clamp(-1, 1)
            f, lg = self.extractor(x)
            feats.append(f.float())
            if y is not None:  # per-condition pixel diversity
                pixels.append(thumbnails(x))
            if lg is not None:
                logits.append(lg.float())
            bar.update((j - i) * acc.num_processes)
        bar.close()
        G.train(was_training)
        fake = self._gather(feats, hi - lo, n, int(self.extractor.num_features))
        fake_pixels = None
        if y_all is not None:  # the same on every rank, so every rank joins this gather
            fake_pixels = self._gather(pixels, hi - lo, n, self.reference["pixels"].shape[1])
        fake_logits = None
        if self.judges_labels:
            fake_logits = self._gather(logits, hi - lo, n, self.info.num_labels)
        if not acc.is_main_process:
            return None
        ref = self.reference
        out = {
            **fid_kid(ref["features"], fake, e.kid_subsets),
            **prdc(ref["features"], fake, e.nearest_k),
        }
        if y_all is not None:
            # accuracy per label needs an evaluator of these labels; diversity within a label
            # only features, so every extractor gets it. `fake` and `y_all` are in sample order
            # on any number of processes (see _gather), so every label groups the same samples.
            out.update(
                conditional_scores(
                    ref["features"],
                    ref["labels"],
                    fake,
                    y_all,
                    self.info.label_type,
                    self.info.num_labels,
                    fake_logits,
                    ref["pixels"],
                    fake_pixels,
                )
            )
        if fake_logits is not None and y_all is not None:
            # the ceiling: the evaluator on real images it was not trained on
            heldout = self.extractor.spec.heldout
            out.update({f"cond_{k}_real": v for k, v in heldout.items() if k != "samples"})
        return out

    def _gather(self, parts: list[torch.Tensor], count: int, n: int, dim: int) -> torch.Tensor:
        """Concatenate every rank's chunk in rank order (chunks differ by at most one row)."""
        local = torch.cat(parts) if parts else torch.zeros(0, dim, device=self.acc.device)
        width = -(-n // self.acc.num_processes)
        padded = torch.zeros(width, dim, device=local.device)
        padded[:count] = local
        everything = self.acc.gather(padded).cpu()  # (world * width, D)
        rows = []
        for r in range(self.acc.num_processes):
            lo, hi = _chunk(n, r, self.acc.num_processes)
            rows.append(everything[r * width : r * width + (hi - lo)])
        return torch.cat(rows)
