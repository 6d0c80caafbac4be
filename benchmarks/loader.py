"""Loader throughput: the same images from WebDataset shards and from torchvision's ImageFolder.

Both paths decode PNGs into (C, H, W) float tensors in [-1, 1] with the same number of worker
processes and batch size, measured over the same images in one run, so the ratio is meaningful
on any machine. The trainer's img/s on the same images (DCGAN-64, one process) is measured too:
the loader must outpace it (target: >= 3x).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", type=int, default=2000, help="number of 64x64 RGB images")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2, help="timed passes over the data (best kept)")
    p.add_argument("--train-steps", type=int, default=20, help="0 skips the trainer measurement")
    p.add_argument("--workdir", type=Path, default=None, help="keep the images/shards here")


def _make_folder(root: Path, n: int, size: int) -> Path:
    from gandist.config import DataConfig
    from gandist.data.shards.format import tensor_to_uint8
    from gandist.data.sources.registry import load_source

    folder = root / "images" / "all"
    if folder.is_dir() and len(list(folder.glob("*.png"))) == n:
        return folder.parent
    folder.mkdir(parents=True, exist_ok=True)
    src = load_source(DataConfig(source="shapes", image_size=size, n_samples=n))
    for i in range(n):
        Image.fromarray(tensor_to_uint8(src.dataset[i][0])).save(folder / f"{i:06d}.png")
    return folder.parent


def _rate(batches: Any, epochs: int) -> float:
    best = 0.0
    for _ in range(epochs):
        t0, n = time.perf_counter(), 0
        for x in batches():
            n += x.shape[0]
        best = max(best, n / (time.perf_counter() - t0))
    return best


def imagefolder_rate(root: Path, args: argparse.Namespace) -> float:
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])
    ds = datasets.ImageFolder(str(root), transform=tf)
    dl = torch.utils.data.DataLoader(
        ds, batch_size=args.batch, shuffle=True, num_workers=args.workers, drop_last=True
    )
    return _rate(lambda: (x for x, _ in dl), args.epochs)


def shard_rate(shards: Path, args: argparse.Namespace) -> float:
    from gandist.data.shards.stream import ShardStream, resolve_shards

    urls, m = resolve_shards(str(shards))
    s = ShardStream(urls, m, args.batch, workers=args.workers, shuffle_buffer=1000)

    def epoch():
        s.load_state_dict({"epoch": s.epoch + 1, "position": 0, "seed": 0})
        for _ in range(s.batches_per_epoch):
            yield next(s)[0]

    return _rate(epoch, args.epochs)


def trainer_rate(shards: Path, args: argparse.Namespace, workdir: Path) -> float:
    from gandist.config import load_config
    from gandist.training.trainer import Trainer

    cfg = load_config(
        Path(__file__).resolve().parents[1] / "configs" / "dcgan_digits.yaml",
        [
            f"data.source=shards:{shards}",
            f"train.steps={args.train_steps}",
            f"train.batch_size={args.batch}",
            "train.log_every=0",
            "train.sample_every=0",
            "train.checkpoint_every=0",
            "tracking.wandb=disabled",
            f"train.output_dir={workdir}/runs",
            f"data.workers={args.workers}",
            "model.g_width=64",
            "model.d_width=64",
        ],
    )
    tr = Trainer(cfg)
    tr.train_step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(args.train_steps):
        tr.train_step()
    return args.train_steps * args.batch / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from gandist.data.shards.write import write_shards

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        folder = _make_folder(work, args.images, args.size)
        shards = work / "shards"
        write_shards(
            f"folder:{folder}",
            shards,
            image_size=args.size,
            channels=3,
            shard_size=max(1, args.images // 16),
            workers=args.workers,
            progress=False,
        )
        folder_ips = imagefolder_rate(folder, args)
        shard_ips = shard_rate(shards, args)
        train_ips = trainer_rate(shards, args, work) if args.train_steps else None
    result: dict[str, Any] = {
        "benchmark": "loader",
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("func", "out")
        },
        "imagefolder_img_per_s": round(folder_ips, 1),
        "shards_img_per_s": round(shard_ips, 1),
        "shards_vs_imagefolder": round(shard_ips / folder_ips, 3),
    }
    if train_ips is not None:
        result["trainer_img_per_s_dcgan64"] = round(train_ips, 1)
        result["loader_vs_trainer"] = round(shard_ips / train_ips, 2)
    return result
