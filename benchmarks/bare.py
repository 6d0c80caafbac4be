"""The reference a gandist step is measured against: the textbook GAN step in plain PyTorch.

Same G and D (copied from a trainer's), optimizers, loss and penalty, and the whole data set
already on the device; no accelerate, no DDP wrapper, no metrics. The layout and compile
switches live here too, so the bare loop can also measure channels_last and torch.compile
without the trainer.
"""

from __future__ import annotations

import copy
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from gandist.objectives.losses import LOSSES
from gandist.objectives.penalties import gradient_penalty, interpolate
from gandist.training.optimizers import build_optimizer

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def to_channels_last(*modules: nn.Module) -> None:
    """NHWC parameters in place (the optimizers keep their references); conv outputs follow."""
    for m in modules:
        m.to(memory_format=torch.channels_last)


PENALISED = ("gp", "r1")  # penalties that differentiate D twice


def compile_pair(
    G: nn.Module, D: nn.Module, penalty: str, backend: str = "inductor"
) -> tuple[nn.Module, nn.Module, nn.Module, list[str]]:
    """torch.compile G and D's plain forwards.

    A GP or R1 penalty differentiates D twice, which compiled (aot_autograd) graphs do not
    support, so its forward runs the eager D (the same module and parameters) while D's forwards
    on real and fake data run compiled. Returns (G, D for the plain forwards, D for the penalty's
    forward, names of what was compiled). `backend`: torch.compile's (inductor; aot_eager runs
    the same autograd path without code generation, for quick CPU checks).
    """
    G_c = torch.compile(G, backend=backend)
    D_c = torch.compile(D, backend=backend)
    if penalty in PENALISED:
        return G_c, D_c, D, ["G", "D (plain forwards; penalty forward eager)"]
    return G_c, D_c, D_c, ["G", "D"]


class BareLoop:
    """One outer GAN step (n_critic D updates, one G update) with nothing else in it."""

    def __init__(
        self,
        trainer: Any,
        cfg: Any,
        precision: str | None = None,
        channels_last: bool = False,
        compile: bool = False,
        backend: str = "inductor",
    ) -> None:
        self.cfg = cfg
        self.device = trainer.acc.device
        G = copy.deepcopy(trainer.parts.G_plain)
        D = copy.deepcopy(trainer.parts.D_plain)
        if channels_last:
            to_channels_last(G, D)
        self.opt_g = build_optimizer(G.parameters(), cfg.optim.g)
        self.opt_d = build_optimizer(D.parameters(), cfg.optim.d)
        self.compiled: list[str] = []
        D_penalty = D
        if compile:
            G, D, D_penalty, self.compiled = compile_pair(G, D, cfg.loss.penalty, backend)
        self.G, self.D, self.D_penalty = G, D, D_penalty
        self.loss = LOSSES.get(cfg.loss.adversarial)
        x, _ = trainer.stream.first_samples(trainer.stream.num_samples)
        self.x = x.to(self.device)
        if channels_last and self.x.dim() == 4:  # as the trainer's batches (StepInputs.batch)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        precision = precision or cfg.train.precision
        self.amp = AMP_DTYPES.get(precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")

    def _autocast(self) -> AbstractContextManager:
        if self.amp is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp)

    def d_step(self, B: int) -> None:
        cfg = self.cfg
        real = self.x[torch.randint(len(self.x), (B,), device=self.device)]
        z = torch.randn(B, cfg.model.z_dim, device=self.device)
        with torch.no_grad(), self._autocast():
            fake = self.G(z, None)
        with self._autocast():
            loss = self.loss.d(self.D(real, None)[0].float(), self.D(fake, None)[0].float())
            if cfg.loss.penalty == "gp":
                eps = torch.rand(B, device=self.device)
                x_hat = interpolate(real, fake, eps)
                gp, _ = gradient_penalty(self.D_penalty, x_hat, None, scaler=self.scaler)
                loss = loss + cfg.loss.gp_weight * gp
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt_d)
        self.scaler.update()

    def g_step(self, B: int) -> None:
        self.D.requires_grad_(False)
        z = torch.randn(B, self.cfg.model.z_dim, device=self.device)
        with self._autocast():
            g_loss = self.loss.g(self.D(self.G(z, None), None)[0].float())
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(g_loss).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self.D.requires_grad_(True)

    def step(self) -> None:
        B = self.cfg.train.batch_size
        for _ in range(self.cfg.train.n_critic):
            self.d_step(B)
        self.g_step(B)
