"""Discriminator rejection sampling (models/rejection.py): the acceptance rule, a sampler that
keeps what the critic likes, samples that do not depend on how a set is batched, calibration
that leaves the run's networks alone, and the config key's errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gandist.config import ConfigError, from_dict
from gandist.models.rejection import (
    RejectionSampler,
    acceptance_score,
    calibrate,
    check_rejection,
    critic_logits,
)


class LineG(nn.Module):
    """z (B, 1) -> points (B, 1) = z: the sampler's candidates are its noise."""

    def __init__(self) -> None:
        super().__init__()
        self.z_dim = 1
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return z * self.w


class SignCritic(nn.Module):
    """Logit 8 x (sum of a pack's coordinates): positive points look real."""

    def __init__(self, pack: int = 1) -> None:
        super().__init__()
        self.pack = pack
        self.lin = nn.Linear(pack, 1, bias=False)
        nn.init.constant_(self.lin.weight, 8.0)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        return self.lin(x.reshape(-1, self.pack)).squeeze(-1), None


class NetCritic(nn.Module):
    """Any net (B, 1) -> (B, 1) as a critic: (logits (B,), no aux logits)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        return self.net(x).squeeze(-1), None


def test_check_rejection_range() -> None:
    assert check_rejection(0.0) == 0.0 and check_rejection(0.5) == 0.5
    for bad in (-0.1, 1.0, 2.0):
        with pytest.raises(ValueError, match=r"--rejection: must be in \[0, 1\)"):
            check_rejection(bad, "--rejection")


def test_acceptance_score_rises_with_the_logit_and_is_finite_at_the_max() -> None:
    logits = torch.tensor([-20.0, -3.0, -1.0, 0.0, 0.5, 2.0])
    f = acceptance_score(logits, max_logit=0.5)
    assert torch.isfinite(f).all()
    assert (f[1:5] > f[:4]).all()  # rising up to the max
    assert f[-1] == f[-2]  # above the burn-in's max: scored as the max
    # far below the max, F(x) is D(x) - D_max (the exact rejection sampler's log-acceptance)
    assert f[0].item() == pytest.approx(-20.5, abs=1e-6)


def test_sampler_keeps_what_the_critic_finds_real() -> None:
    torch.manual_seed(0)
    G, D = LineG(), SignCritic()
    z = torch.randn(4000, 1)
    plain = G(z)
    drs = RejectionSampler(G, D, pack=1, quantile=0.5, seed=0, burn_in=4000)
    kept = drs(z)
    assert kept.shape == plain.shape
    assert (plain > 0).float().mean() == pytest.approx(0.5, abs=0.03)
    assert (kept > 0).float().mean() > 0.9  # the critic's "fake" half is mostly rejected
    assert 0.3 < drs.acceptance < 0.7
    assert "quantile=0.5" in repr(drs)


def test_a_higher_quantile_rejects_more() -> None:
    G, D = LineG(), SignCritic()
    z = torch.randn(2000, 1, generator=torch.Generator().manual_seed(1))
    shares = []
    for q in (0.0, 0.5, 0.9):
        drs = RejectionSampler(G, D, pack=1, quantile=q, seed=0, burn_in=2000)
        shares.append((drs(z) > 0).float().mean().item())
    assert 0.5 < shares[0] < shares[1] < shares[2]


def test_a_sample_does_not_depend_on_how_the_set_is_batched() -> None:
    """Row i's retries and coin come from (seed, z_i): any split over batches or processes
    draws the same samples."""
    G, D = LineG(), SignCritic()
    z = torch.randn(50, 1, generator=torch.Generator().manual_seed(2))
    drs = RejectionSampler(G, D, pack=1, quantile=0.5, seed=3, burn_in=1000)
    whole = drs(z)
    parts = torch.cat([drs(z[:7]), drs(z[7:31]), drs(z[31:])])
    torch.testing.assert_close(whole, parts, rtol=0, atol=0)
    other_seed = RejectionSampler(G, D, pack=1, quantile=0.5, seed=4, burn_in=1000)(z)
    assert not torch.equal(whole, other_seed)


def test_packed_critics_score_each_sample_as_copies_of_itself() -> None:
    D = SignCritic(pack=2)
    x = torch.tensor([[1.0], [-2.0], [0.5]])
    torch.testing.assert_close(critic_logits(D, x, None, pack=2), 16.0 * x.squeeze(-1))


def test_calibration_trains_a_copy_and_leaves_the_run_alone() -> None:
    G = LineG().train()
    D = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1))

    critic = NetCritic(D)
    before = [p.detach().clone() for p in critic.parameters()]
    real = (torch.full((256, 1), 2.0) + 0.1 * torch.randn(256, 1), None)  # G draws N(0, 1)
    with torch.no_grad():  # callers may hold no_grad (gandist sample does)
        tuned = calibrate(critic, G, real, pack=1, steps=300, seed=0, batch_size=64, lr=1e-2)
    assert all(torch.equal(a, b) for a, b in zip(before, critic.parameters(), strict=True))
    assert G.training and critic.training  # modes as they were
    assert not tuned.training and not any(p.requires_grad for p in tuned.parameters())
    logit = tuned(torch.tensor([[2.0], [-1.0]]))[0]
    assert logit[0] > 2.0 and logit[1] < 0.0  # real-looking vs not


def test_eval_rejection_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match="eval.rejection"):
        from_dict({"eval": {"rejection": 1.0}})
    with pytest.raises(ConfigError, match="eval.rejection_steps"):
        from_dict({"eval": {"rejection_steps": -1}})
    assert from_dict({"eval": {"rejection": 0.5}}).eval.rejection == 0.5


def test_calibration_does_not_depend_on_the_global_random_state() -> None:
    """A dropout critic draws its masks from the calibration's seed, so two processes (or two
    runs) calibrate the same copy whatever ran before; the caller's random state is restored."""

    torch.manual_seed(0)
    critic = NetCritic(nn.Sequential(nn.Linear(1, 32), nn.Dropout(0.4), nn.Linear(32, 1)))
    real = (torch.randn(128, 1) + 2.0, None)
    tuned = []
    for state in (1, 2):
        torch.manual_seed(state)
        tuned.append(calibrate(critic, LineG(), real, pack=1, steps=20, seed=0, batch_size=16))
        after = torch.rand(())
        torch.manual_seed(state)
        assert torch.equal(after, torch.rand(()))  # as if calibration had drawn nothing
    for a, b in zip(tuned[0].parameters(), tuned[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_networks_in_bfloat16_calibrate_and_sample() -> None:
    """train.dtype=bfloat16 casts G and D; real data stays float32 until it reaches D."""
    G = LineG().to(torch.bfloat16)
    D = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1)).to(torch.bfloat16)

    tuned = calibrate(NetCritic(D), G, (torch.randn(64, 1) + 2, None), pack=1, steps=3, seed=0)
    drs = RejectionSampler(G, tuned, pack=1, quantile=0.5, seed=0, burn_in=300)
    out = drs(torch.randn(20, 1, dtype=torch.bfloat16))
    assert out.shape == (20, 1) and out.dtype == torch.bfloat16
