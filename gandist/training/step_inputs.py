"""What one training step consumes, on the device: this rank's batch, z, epsilon and DiffAugment
parameters, each drawn per sample of the global batch from (seed, step, purpose).

The trainer names the purposes ("d0/z", "d0/eps", "g/aug/fake/...", see Trainer.train_step);
the step's fixed ones (z of every update, epsilon when the penalty uses it) are declared to
GlobalNoise, which draws them several steps per pass (training/noise.py). Copies to the device
are non_blocking: a blocking host-to-GPU copy waits for the stream, a sync every draw.
"""

from __future__ import annotations

import torch

from gandist.data.stream import BatchStream
from gandist.objectives.augment import Params, draw_params
from gandist.training.noise import GlobalNoise


class StepInputs:
    def __init__(
        self,
        stream: BatchStream,
        *,
        seed: int,
        global_batch: int,
        rank: int,
        world_size: int,
        n_critic: int,
        z_dim: int,
        needs_eps: bool,
        augment: tuple[str, ...],
        device: torch.device,
        dtype: torch.dtype,
        channels_last: bool,
    ) -> None:
        self.stream = stream
        self.z_dim = z_dim
        self.needs_eps = needs_eps
        self.augment = augment
        self.device, self.dtype, self.channels_last = device, dtype, channels_last
        z_of = {f"d{k}/z": z_dim for k in range(n_critic)} | {"g/z": z_dim}
        eps_of = [f"d{k}/eps" for k in range(n_critic)] if needs_eps else []
        self.noise = GlobalNoise(seed, global_batch, rank, world_size, z_of, eps_of)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch of this rank's share, in the training dtype and memory layout."""
        x, y = next(self.stream)
        x = x.to(self.device, dtype=self.dtype, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(self.device, non_blocking=True)
        if y.is_floating_point():
            y = y.to(self.dtype)
        return x, y

    def z(self, step: int, purpose: str) -> torch.Tensor:
        z = self.noise.normal(step, purpose, self.z_dim)
        return z.to(self.device, dtype=self.dtype, non_blocking=True)

    def eps(self, step: int, purpose: str) -> torch.Tensor | None:
        """Per-sample interpolation weights, drawn only for penalties that use them."""
        if not self.needs_eps:
            return None
        eps = self.noise.uniform(step, purpose)
        return eps.to(self.device, self.dtype, non_blocking=True)

    def aug(self, step: int, purpose: str) -> Params | None:
        """DiffAugment's per-sample parameters (train.augment), drawn like eps: per sample of the
        global batch, one stream per parameter; None when augmentation is off."""
        if not self.augment:
            return None

        def uniform(name: str) -> torch.Tensor:
            u = self.noise.uniform(step, f"{purpose}/{name}")
            return u.to(self.device, self.dtype, non_blocking=True)

        return draw_params(self.augment, uniform)
