"""Discriminator rejection sampling (DRS; Azadi et al. 2019, "Discriminator Rejection Sampling").

A trained critic still tells G's worst samples from real ones (the bridges between 2-D modes,
the in-between digits), so sampling can drop them: a non-saturating critic's logit D(x)
estimates log p_data(x) / p_G(x), and accepting x with probability exp(D(x) - D_max) draws
from p_data where the estimate is right. DRS softens that with a shift gamma:

    F(x) = D(x) - D_max - log(1 - exp(D(x) - D_max - eps)) - gamma,   accept w.p. sigmoid(F(x))

D_max and gamma come from a burn-in set of G's samples; gamma is the `quantile` of F there (0.5:
about half of the candidates are kept). Before that the critic is *calibrated*: trained on its
own for a few steps against the frozen G with the logistic loss, as the paper does, because the
critic at the end of training is near-indifferent (its logits barely spread) and, for WGAN and
LSGAN runs, not a logistic critic at all. The calibrated copy is what scores; the run's critic is
left as it was.

A packed critic (model.pack = k) scores k samples at once; each sample is scored as a pack of k
copies of itself, in calibration and sampling alike.

Every random draw of a sample (its retries' noise, its acceptance coin) comes from a generator
seeded by the run's seed and that sample's own z, so a sample does not depend on how the set is
split over batches or processes. It changes nothing in training; scores taken with it say so
(`rejection` in eval records), as truncated ones do.
"""

from __future__ import annotations

import copy
import zlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gandist.models.conditioning import random_labels
from gandist.seeds import derive_seed

MAX_TRIES = 64  # candidates per sample before the best-scored one is taken as it is
EPS = 1e-6


def check_rejection(quantile: float, where: str = "rejection") -> float:
    """quantile itself if it is in [0, 1), else a ValueError naming `where` and the range."""
    if not 0.0 <= quantile < 1.0:
        raise ValueError(
            f"{where}: must be in [0, 1) (0: off; 0.5 keeps about half of the candidates), "
            f"got {quantile}"
        )
    return quantile


def acceptance_score(logits: Tensor, max_logit: float) -> Tensor:
    """DRS's F(x) before the shift gamma; a logit above the burn-in's max scores as the max."""
    d = (logits.double() - max_logit).clamp(max=0.0)
    return d - torch.log1p(-torch.exp(d - EPS))


def critic_logits(D: nn.Module, x: Tensor, y: Tensor | None, pack: int) -> Tensor:
    """One logit per sample: packed critics score each sample as a pack of copies of itself."""
    if pack > 1:
        x = x.repeat_interleave(pack, 0)
        y = None if y is None else y.repeat_interleave(pack, 0)
    return D(x, y)[0].float()


def calibrate(
    D: nn.Module,
    G: nn.Module,
    real: tuple[Tensor, Tensor | None],
    *,
    pack: int,
    steps: int,
    seed: int,
    batch_size: int = 64,
    lr: float = 1e-4,
) -> nn.Module:
    """A copy of D trained `steps` steps with the logistic loss against the frozen G (in eval
    mode), on batches of `real` (images or points, and labels or None); returned in eval mode.
    D and G themselves are left as they were."""
    D = copy.deepcopy(D).train().requires_grad_(True)
    opt = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(derive_seed(seed, "rejection", "calibrate"))
    device, dtype = next(D.parameters()).device, next(D.parameters()).dtype
    g_dtype = next(G.parameters()).dtype
    x_real, y_real = real
    g_training = G.training
    G.eval()
    devices = [device] if device.type == "cuda" else []
    try:
        # the critic's own randomness (dropout) from the seed too, not from the global state
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            torch.manual_seed(derive_seed(seed, "rejection", "calibrate", "dropout"))
            for _ in range(steps):
                idx = torch.randint(len(x_real), (batch_size,), generator=gen)
                xr = x_real[idx].to(device, dtype)
                yr = None if y_real is None else y_real[idx].to(device)
                if yr is not None and yr.is_floating_point():
                    yr = yr.to(g_dtype)
                z = torch.randn(batch_size, G.z_dim, generator=gen).to(device, g_dtype)
                with torch.no_grad():
                    xf = G(z, yr).to(dtype)
                loss = F.softplus(-critic_logits(D, xr, yr, pack)).mean()
                loss = loss + F.softplus(critic_logits(D, xf, yr, pack)).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    finally:
        G.train(g_training)
    return D.eval().requires_grad_(False)


class RejectionSampler(nn.Module):
    """G followed by DRS: same call signature and `z_dim` as G; returns len(z) accepted samples.

    Sample i's first candidate is G(z_i, y_i); later ones draw their noise from a generator
    seeded by (seed, z_i). `accepted` / `tried` count candidates since construction.
    """

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        *,
        pack: int,
        quantile: float,
        seed: int,
        label_type: str = "none",
        num_labels: int = 0,
        burn_in: int = 10000,
        batch_size: int = 500,
    ) -> None:
        super().__init__()
        self.net, self.critic = G, D.eval()
        self.z_dim, self.pack, self.seed = G.z_dim, pack, seed
        self.quantile = check_rejection(quantile)
        self.accepted = self.tried = 0
        gen = torch.Generator().manual_seed(derive_seed(seed, "rejection", "burn-in"))
        logits = []
        for lo in range(0, burn_in, batch_size):
            n = min(batch_size, burn_in - lo)
            z = torch.randn(n, self.z_dim, generator=gen)
            y = None if label_type == "none" else random_labels(label_type, num_labels, n, gen)
            logits.append(self._candidates(z, y)[1])
        raw = torch.cat(logits)
        self.max_logit = float(raw.max())
        self.gamma = float(torch.quantile(acceptance_score(raw, self.max_logit), quantile))
        self.training = False

    def _device(self) -> torch.device:
        return next(self.critic.parameters()).device

    def train(self, mode: bool = True) -> RejectionSampler:
        """Only the wrapper's flag: G and the critic always sample in eval mode (below), and
        G's own mode, which a caller may restore after scoring, is left to G's owner."""
        self.training = mode
        return self

    @torch.no_grad()
    def _candidates(self, z: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        dev = self._device()
        y = None if y is None else y.to(dev)
        was_training = self.net.training
        self.net.eval()
        try:
            x = self.net(z.to(dev, next(self.net.parameters()).dtype), y)
        finally:
            self.net.train(was_training)
        return x, critic_logits(self.critic, x, y, self.pack).cpu()

    @torch.no_grad()
    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        n = len(z)
        cand_z = z.detach().float().cpu()  # one copy to the host, then per-row seeds
        gens = [
            torch.Generator().manual_seed(
                derive_seed(self.seed, "rejection", zlib.crc32(row.numpy().tobytes()))
            )
            for row in cand_z
        ]
        out: list[Tensor | None] = [None] * n
        best: list[tuple[float, Tensor] | None] = [None] * n
        pending = list(range(n))
        for attempt in range(MAX_TRIES):
            if not pending:
                break
            if attempt > 0:
                cand_z = torch.stack([torch.randn(self.z_dim, generator=gens[i]) for i in pending])
            ys = None if y is None else y[pending]
            x, logits = self._candidates(cand_z, ys)
            f = acceptance_score(logits, self.max_logit) - self.gamma
            coins = torch.stack([torch.rand((), generator=gens[i]) for i in pending])
            keep = coins.double() < torch.sigmoid(f)
            self.tried += len(pending)
            self.accepted += int(keep.sum())
            still = []
            for j, i in enumerate(pending):
                if keep[j]:
                    out[i] = x[j]
                    continue
                if best[i] is None or float(f[j]) > best[i][0]:
                    best[i] = (float(f[j]), x[j])
                still.append(i)
            pending = still
        for i in pending:  # MAX_TRIES rejections: the best-scored candidate
            out[i] = best[i][1]
        return torch.stack(out)  # type: ignore[arg-type]

    @property
    def acceptance(self) -> float:
        """Share of candidates accepted so far (1 before any sampling)."""
        return self.accepted / self.tried if self.tried else 1.0

    def extra_repr(self) -> str:
        return f"quantile={self.quantile}, gamma={self.gamma:.4f}, max_logit={self.max_logit:.4f}"
