"""Trainer overhead: a gandist step vs a bare PyTorch loop doing the same work, side by side.

Both use the very same G and D architectures (built by gandist.models from one config), the same
global batch, optimizers, loss and penalty, and the same in-memory data; the bare loop is the
textbook GAN step with no accelerate, no DDP wrapper, no metrics. Repetitions alternate between
the two so machine noise hits both alike. Reported: ms per outer step each, the overhead ratio,
and the cost of a GP critic step relative to a plain one.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from gandist.config import load_config
from gandist.objectives.losses import LOSSES
from gandist.objectives.penalties import gradient_penalty, interpolate
from gandist.training.optimizers import build_optimizer

RECIPES = {"dcgan64": "dcgan_digits.yaml", "wgan_gp64": "wgan_gp_digits.yaml"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=sorted(RECIPES), default="dcgan64")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--width", type=int, default=64, help="g_width = d_width")
    p.add_argument("--steps", type=int, default=10, help="timed outer steps per repetition")
    p.add_argument("--reps", type=int, default=5, help="alternating repetitions")
    p.add_argument("--precision", choices=["no", "bf16", "fp16"], default="no")


def _cfg(args: argparse.Namespace, tmp: Path):
    root = Path(__file__).resolve().parents[1] / "configs"
    return load_config(
        root / RECIPES[args.model],
        [
            "data.image_size=64",
            "data.shards=off",
            f"train.batch_size={args.batch}",
            f"model.g_width={args.width}",
            f"model.d_width={args.width}",
            "train.steps=1000000",
            "train.log_every=0",
            "train.sample_every=0",
            "train.checkpoint_every=0",
            "tracking.wandb=disabled",
            f"train.output_dir={tmp}",
            f"train.precision={args.precision}",
        ],
    )


class BareLoop:
    """The same GAN step written plainly (single device, no accelerate)."""

    def __init__(self, trainer: Any, cfg: Any) -> None:
        import copy

        self.G = copy.deepcopy(trainer.parts.G_plain)
        self.D = copy.deepcopy(trainer.parts.D_plain)
        self.opt_g = build_optimizer(self.G.parameters(), cfg.optim.g)
        self.opt_d = build_optimizer(self.D.parameters(), cfg.optim.d)
        self.loss = LOSSES.get(cfg.loss.adversarial)
        self.cfg = cfg
        x, _ = trainer.stream.first_samples(trainer.stream.num_samples)
        self.x = x.to(trainer.acc.device)
        self.device = trainer.acc.device
        self.amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.precision)
        fp16 = cfg.train.precision == "fp16"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)

    def _autocast(self):
        if self.amp is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp)

    def step(self) -> None:
        cfg, B = self.cfg, self.cfg.train.batch_size
        for _ in range(cfg.train.n_critic):
            real = self.x[torch.randint(len(self.x), (B,), device=self.device)]
            z = torch.randn(B, cfg.model.z_dim, device=self.device)
            with torch.no_grad(), self._autocast():
                fake = self.G(z, None)
            with self._autocast():
                loss = self.loss.d(self.D(real, None)[0].float(), self.D(fake, None)[0].float())
                if cfg.loss.penalty == "gp":
                    eps = torch.rand(B, device=self.device)
                    x_hat = interpolate(real, fake, eps)
                    gp, _ = gradient_penalty(self.D, x_hat, None, scaler=self.scaler)
                    loss = loss + cfg.loss.gp_weight * gp
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt_d)
            self.scaler.update()
        self.D.requires_grad_(False)
        z = torch.randn(B, cfg.model.z_dim, device=self.device)
        with self._autocast():
            g_loss = self.loss.g(self.D(self.G(z, None), None)[0].float())
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(g_loss).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self.D.requires_grad_(True)


def _time(fn: Any, steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps * 1000.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    from gandist.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = _cfg(args, Path(tmp))
        trainer = Trainer(cfg)
        bare = BareLoop(trainer, cfg)
        dev = trainer.acc.device
        for fn in (trainer.train_step, bare.step):  # warm-up (allocator, autotuning)
            _time(fn, 2, dev)
        ours, plain = [], []
        for _ in range(args.reps):
            ours.append(_time(trainer.train_step, args.steps, dev))
            plain.append(_time(bare.step, args.steps, dev))
    g, b = statistics.median(ours), statistics.median(plain)
    return {
        "benchmark": "train",
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("func", "out", "name")},
        "n_critic": cfg.train.n_critic,
        "gandist_ms_per_step": round(g, 2),
        "bare_ms_per_step": round(b, 2),
        "overhead": round(g / b - 1.0, 4),
        "gandist_img_per_s": round(args.batch * cfg.train.n_critic / g * 1000.0, 1),
        "reps_ms": {"gandist": [round(v, 2) for v in ours], "bare": [round(v, 2) for v in plain]},
    }
