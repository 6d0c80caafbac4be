"""`gandist train-evaluator`: fit the domain evaluator of a labelled image data set.

One process, a held-out tenth for the accuracy it reports, and a saved directory that
`gandist eval` and in-training evaluation find by the data set's key.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset, TensorDataset
from tqdm.auto import tqdm

from gandist.config import DataConfig
from gandist.data.base import SourceData
from gandist.data.keys import dataset_key
from gandist.data.sources.registry import load_source
from gandist.evaluation.classifier import (
    EvaluatorNet,
    EvaluatorSpec,
    default_evaluator_dir,
    save_evaluator,
)
from gandist.evaluation.image_metrics import label_agreement
from gandist.evaluation.reference import (
    reads_shards,
    samples_in_memory,
    shard_reader,
    stream_samples,
)
from gandist.objectives.losses import aux_loss

TARGET_STEPS = 1000  # epochs=0 trains about this many batches
# Held-out accuracy below which an evaluator is too weak to judge conditions with (the digits
# evaluator reaches 0.99; the 32 px shapes one 0.89 at the default length, 0.998 at 12 epochs).
WEAK_EVALUATOR = 0.95
MIN_SAMPLES = 20
SHARD_BYTES = 2 * 2**30  # shards are read into memory up to this much of float images


@torch.no_grad()
def _heldout_scores(net: EvaluatorNet, loader: DataLoader, label_type: str, device) -> dict:
    net.eval()
    logits, ys = [], []
    for x, y in loader:
        logits.append(net(x.to(device))[1].float().cpu())
        ys.append(y)
    net.train()
    return label_agreement(torch.cat(logits), torch.cat(ys), label_type)


def weak_evaluator_warning(spec: EvaluatorSpec) -> str | None:
    """Why and how to retrain an evaluator whose held-out accuracy is below WEAK_EVALUATOR, else
    None: generated images' cond_accuracy is read against it, so it caps what they can score."""
    acc = spec.heldout["accuracy"]
    if acc >= WEAK_EVALUATOR:
        return None
    return (
        f"the evaluator recognises only {acc:.3f} of the held-out real images' labels after "
        f"{spec.epochs} epoch{'' if spec.epochs == 1 else 's'}, so generated images' "
        f"cond_accuracy cannot be read above that; train it longer: --epochs {3 * spec.epochs}"
    )


def _labelled_data(data: DataConfig, seed: int) -> SourceData:
    """The source's samples; shards (the only copy a cluster user may have, and an image
    folder's auto shards, which training reads) are read through the shuffled stream into
    memory, at most SHARD_BYTES of images, and say so when capped."""
    if not reads_shards(data):
        return load_source(dataclasses.replace(data, shards="off"))
    stream = shard_reader(data, seed)
    info = stream.info
    n = samples_in_memory(info, stream.num_samples, SHARD_BYTES)
    if n < stream.num_samples:
        print(
            f"train-evaluator: reading {n} of the {stream.num_samples} samples of "
            f"{data.source} (shuffled; {SHARD_BYTES / 2**30:.0f} GiB in memory at most)",
            file=sys.stderr,
        )
    x, y = stream_samples(stream, n)
    return SourceData(info, TensorDataset(x, y), (x, y))


def train_evaluator(
    data: DataConfig,
    out_dir: str | Path | None = None,
    epochs: int = 0,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    width: int = 16,
    feature_dim: int = 128,
    progress: bool = True,
) -> tuple[Path, EvaluatorSpec]:
    """Train and save the evaluator for `data`; returns its directory and spec (with the held-out
    scores). `epochs=0` picks enough epochs for about TARGET_STEPS batches."""
    src = _labelled_data(data, seed)
    info = src.info
    if info.kind != "image":
        raise ValueError(f"train-evaluator: {data.source} is not an image source")
    if info.label_type not in ("class", "multi"):
        raise ValueError(
            f"train-evaluator: {data.source} has no labels, so no classifier can be trained on "
            "it; use eval.extractor=inception for unlabelled data"
        )
    n = len(src)
    if n < MIN_SAMPLES:
        raise ValueError(
            f"train-evaluator: {data.source} has only {n} samples (need >= {MIN_SAMPLES})"
        )
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g).tolist()
    n_held = max(10, n // 10)
    held, fit = Subset(src.dataset, perm[:n_held]), Subset(src.dataset, perm[n_held:])
    workers = 0 if src.tensors is not None else data.workers
    loader = DataLoader(
        fit, batch_size=batch_size, shuffle=True, drop_last=True, generator=g, num_workers=workers
    )
    held_loader = DataLoader(held, batch_size=256, num_workers=workers)
    if epochs <= 0:
        epochs = min(100, max(2, math.ceil(TARGET_STEPS / max(len(loader), 1))))

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    spec = EvaluatorSpec(
        channels=info.channels,
        image_size=info.image_size,
        label_type=info.label_type,
        num_labels=info.num_labels,
        label_names=list(info.label_names),
        width=width,
        feature_dim=feature_dim,
        dataset_key=dataset_key(data),
        source=data.source,
        epochs=epochs,
    )
    net = EvaluatorNet(spec).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(loader))
    bar = tqdm(
        total=epochs * len(loader), desc="train-evaluator", unit="batch", disable=not progress
    )
    for epoch in range(epochs):
        for x, y in loader:
            loss = aux_loss(net(x.to(device))[1], y.to(device), info.label_type)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    spec.heldout = {
        "samples": float(n_held),
        **_heldout_scores(net, held_loader, info.label_type, device),
    }
    out = Path(out_dir) if out_dir else default_evaluator_dir(data)
    save_evaluator(net.cpu(), spec, out)
    return out, spec
