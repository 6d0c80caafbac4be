"""Real-data features, computed once per (data set, extractor, sample count) and cached.

The cache sits next to the evaluator (`<evaluator dir>/reference-*.safetensors`) and its name
carries the extractor's weight digest, so a retrained evaluator gets fresh reference features
and every run and `gandist eval` on the same data compares against the same real samples.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from gandist.config import DataConfig
from gandist.data.base import DatasetInfo
from gandist.data.keys import dataset_key, source_name
from gandist.data.pipeline import open_stream, uses_shards
from gandist.data.shards.stream import TooFewSamples
from gandist.data.sources.pil import ImageReadError
from gandist.data.sources.registry import load_source
from gandist.data.stream import BatchStream
from gandist.evaluation.image_metrics import thumbnails

READ_BATCH = 16


def reference_path(
    directory: Path, extractor: nn.Module, data: DataConfig, n: int, seed: int
) -> Path:
    """Named by everything the features depend on: extractor weights, data set, n, seed."""
    name = f"reference-{extractor.kind}-{extractor.digest}-{dataset_key(data)}-n{n}-seed{seed}"
    return directory / f"{name}.safetensors"


def reads_shards(data: DataConfig) -> bool:
    """Whether real samples are read out of shards: `shards:` sources, and image folders that
    train from their auto-written shards, so the scores compare against what training saw
    (unreadable files skipped as the shard writer skips them), not the raw folder."""
    name = source_name(data.source)
    return name == "shards" or (name == "folder" and uses_shards(data))


def real_samples(data: DataConfig, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to n real (images, labels), drawn without replacement (all of a smaller data set)."""
    if reads_shards(data):
        return stream_samples(shard_reader(data, seed), n)
    src = load_source(dataclasses.replace(data, shards="off"))
    order = torch.randperm(len(src), generator=torch.Generator().manual_seed(seed))
    if src.tensors is not None:
        idx = order[:n]
        return src.tensors[0][idx], src.tensors[1][idx]
    items = readable_items(src.dataset, order.tolist(), n)
    return torch.stack([x for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])


def readable_items(dataset: Dataset, order: list[int], n: int) -> list[tuple[Any, Any]]:
    """The first n items of `order` that decode; unreadable image files are skipped (and named
    on stderr) as the shard writer skips them, rather than failing an evaluation at the end of
    a run (data.shards=off reads the folder itself)."""
    items: list[tuple[Any, Any]] = []
    skipped: list[str] = []
    for i in order:
        if len(items) == n:
            break
        try:
            items.append(dataset[i])
        except ImageReadError as exc:
            skipped.append(exc.path)
    if skipped:
        more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
        print(
            f"gandist: real samples: skipped {len(skipped)} unreadable image "
            f"file{'s' if len(skipped) > 1 else ''} ({skipped[0]}{more})",
            file=sys.stderr,
            flush=True,
        )
    if not items:
        raise ValueError(f"no readable image among the {len(order)} files of the data set")
    return items


def samples_in_memory(info: DatasetInfo, n: int, max_bytes: int) -> int:
    """n, or as many float images of `info`'s shape as fit in max_bytes (at least 1000, or n
    when fewer)."""
    if info.kind != "image":
        return n
    return min(n, max(1000, max_bytes // (4 * info.channels * info.image_size**2)))


def shard_reader(data: DataConfig, seed: int) -> BatchStream:
    """A one-process stream over shards for reading samples out, in batches small enough for
    any data set that can train (a batch of 256 would refuse shards of 200 samples). Its loader
    workers decode in parallel; a set too small to give each of them a batch (a small image
    folder's auto shards) is read in this process, one sample at a time, so none is left out
    (each worker leaves out its last partial batch)."""
    try:
        stream = open_stream(data, READ_BATCH, 0, 1, seed, True, lambda: None, announce=False)
        if not getattr(stream, "workers_fitted", False):
            return stream
    except TooFewSamples:
        pass
    alone = dataclasses.replace(data, workers=0)
    return open_stream(alone, 1, 0, 1, seed, True, lambda: None)


def stream_samples(stream: BatchStream, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to n (images, labels) from a one-process stream: shuffled shards, not storage order
    (shards written class by class would otherwise give one class). At most one epoch is read,
    so no sample comes twice: an epoch leaves out each loader worker's last partial batch (a few
    samples of a small set) and the next one would repeat samples already taken."""
    xs, ys, total = [], [], 0
    for _ in range(stream.batches_per_epoch):
        if total >= n:
            break
        x, y = next(stream)
        xs.append(x)
        ys.append(y)
        total += len(x)
    return torch.cat(xs)[:n], torch.cat(ys)[:n]


@torch.no_grad()
def extract(
    extractor: nn.Module,
    images: torch.Tensor,
    batch_size: int,
    device: torch.device,
    desc: str = "",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (and logits, when the extractor has labels) of images in [-1, 1], batched."""
    feats, logits = [], []
    for i in tqdm(range(0, len(images), batch_size), desc=desc, disable=not progress, leave=False):
        f, lg = extractor(images[i : i + batch_size].to(device))
        feats.append(f.float().cpu())
        if lg is not None:
            logits.append(lg.float().cpu())
    return torch.cat(feats), (torch.cat(logits) if logits else None)


def load_or_build_reference(
    extractor: nn.Module,
    data: DataConfig,
    directory: Path,
    n: int,
    seed: int,
    batch_size: int,
    device: torch.device,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """{"features", "labels", "pixels"[, "logits"]} of n real samples (pixels: `thumbnails`),
    from the cache or computed now. A cache written before "pixels" existed is rebuilt."""
    path = reference_path(directory, extractor, data, n, seed)
    if path.is_file():
        ref = load_file(str(path))
        if "pixels" in ref:
            return ref
    images, labels = real_samples(data, n, seed)
    feats, logits = extract(
        extractor, images, batch_size, device, desc="eval: real features", progress=progress
    )
    ref = {
        "features": feats.contiguous(),
        "labels": labels.float().contiguous(),
        "pixels": thumbnails(images).contiguous(),
    }
    if logits is not None:
        ref["logits"] = logits.contiguous()
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(ref, str(tmp))
    tmp.replace(path)
    return ref
