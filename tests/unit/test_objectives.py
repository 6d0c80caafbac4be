"""Losses against hand-computed values; gradient penalties against per-sample manual gradients,
the .sum()/.mean() and batch-norm traps, and the AMP GradScaler recipe."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gandist.config import ModelConfig
from gandist.data.base import DatasetInfo
from gandist.models import build_discriminator
from gandist.objectives import (
    LOSSES,
    aux_loss,
    capped_aux_loss,
    clip_weights_,
    gradient_penalty,
    interpolate,
    r1_penalty,
    wasserstein_estimate,
)

REAL = torch.tensor([1.0, -2.0])
FAKE = torch.tensor([0.5, 3.0])


def sp(x: float) -> float:
    """softplus by hand: log(1 + e^x)."""
    return math.log1p(math.exp(x))


# ---------------------------------------------------------------- adversarial losses

EXPECTED = {
    # name: (d(REAL, FAKE), g(FAKE))
    "ns": ((sp(-1) + sp(2)) / 2 + (sp(0.5) + sp(3)) / 2, (sp(-0.5) + sp(-3)) / 2),
    "minimax": ((sp(-1) + sp(2)) / 2 + (sp(0.5) + sp(3)) / 2, -(sp(0.5) + sp(3)) / 2),
    "wasserstein": ((0.5 + 3) / 2 - (1 - 2) / 2, -(0.5 + 3) / 2),
    "hinge": ((0 + 3) / 2 + (1.5 + 4) / 2, -(0.5 + 3) / 2),
    "lsgan": (0.5 * ((0 + 9) / 2 + (0.25 + 9) / 2), 0.5 * (0.25 + 4) / 2),
}


def test_registry_has_all_losses():
    assert LOSSES.names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loss_hand_values(name):
    loss = LOSSES.get(name)
    d_exp, g_exp = EXPECTED[name]
    assert loss.d(REAL, FAKE).item() == pytest.approx(d_exp, rel=1e-6)
    assert loss.g(FAKE).item() == pytest.approx(g_exp, rel=1e-6)
    assert loss.d(REAL, FAKE).dim() == 0 and loss.g(FAKE).dim() == 0


def test_ns_matches_bce_on_probabilities():
    """For moderate logits the softplus form equals BCE on sigmoid outputs (targets 1 / 0)."""
    real, fake = torch.randn(16), torch.randn(16)
    ones, zeros = torch.ones(16), torch.zeros(16)
    d_ref = F.binary_cross_entropy(torch.sigmoid(real), ones) + F.binary_cross_entropy(
        torch.sigmoid(fake), zeros
    )
    g_ref = F.binary_cross_entropy(torch.sigmoid(fake), ones)
    assert LOSSES.get("ns").d(real, fake).item() == pytest.approx(d_ref.item(), rel=1e-5)
    assert LOSSES.get("ns").g(fake).item() == pytest.approx(g_ref.item(), rel=1e-5)
    minimax_ref = torch.log(1 - torch.sigmoid(fake)).mean()
    assert LOSSES.get("minimax").g(fake).item() == pytest.approx(minimax_ref.item(), rel=1e-5)


@pytest.mark.parametrize("name", ["ns", "minimax"])
def test_bce_losses_stable_for_large_logits(name):
    loss = LOSSES.get(name)
    real = torch.tensor([1000.0, -1000.0], requires_grad=True)
    fake = torch.tensor([-1000.0, 1000.0], requires_grad=True)
    d, g = loss.d(real, fake), loss.g(fake)
    assert torch.isfinite(d) and torch.isfinite(g)
    assert d.item() == pytest.approx(1000.0)  # softplus(1000) / 2 from each term
    (d + g).backward()
    assert torch.isfinite(real.grad).all() and torch.isfinite(fake.grad).all()
    # The naive minimax form log(1 - sigmoid(x)) is -inf here: the reason for softplus.
    assert torch.isinf(torch.log(1 - torch.sigmoid(fake.detach()))).any()


def test_loss_is_per_sample_mean():
    """Doubling the batch with copies leaves every loss unchanged (DDP averaging relies on it)."""
    for name in EXPECTED:
        loss = LOSSES.get(name)
        assert loss.d(REAL.repeat(3), FAKE.repeat(3)).item() == pytest.approx(
            loss.d(REAL, FAKE).item(), rel=1e-6
        )
        assert loss.g(FAKE.repeat(3)).item() == pytest.approx(loss.g(FAKE).item(), rel=1e-6)


def test_unknown_loss_suggests():
    with pytest.raises(KeyError, match="hinge"):
        LOSSES.get("hnge")


def test_wasserstein_estimate():
    est = wasserstein_estimate(REAL.clone().requires_grad_(True), FAKE)
    assert est.item() == pytest.approx((1 - 2) / 2 - (0.5 + 3) / 2)
    assert not est.requires_grad


def test_aux_loss_class_is_cross_entropy_on_logits():
    torch.manual_seed(0)
    logits, y = 3 * torch.randn(6, 4), torch.randint(0, 4, (6,))
    got = aux_loss(logits, y, "class")
    assert got.item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    manual = -(logits.log_softmax(1)[torch.arange(6), y]).mean()
    assert got.item() == pytest.approx(manual.item(), rel=1e-6)
    # softmax-then-CE (a double softmax) gives a different, squashed value: we do not do that.
    wrong = F.cross_entropy(logits.softmax(1), y)
    assert abs(wrong.item() - got.item()) > 0.1


def test_aux_loss_multi_is_bce_with_logits():
    logits = torch.tensor([[2.0, -1.0, 0.0]])
    y = torch.tensor([[1.0, 0.0, 1.0]])
    manual = (sp(-2.0) + sp(-1.0) + sp(0.0)) / 3
    assert aux_loss(logits, y, "multi").item() == pytest.approx(manual, rel=1e-6)
    with pytest.raises(ValueError):
        aux_loss(logits, y, "none")


def test_capped_aux_loss_lets_go_of_what_the_classifier_already_reads():
    """loss.aux_g_confidence p: each label's BCE counts only above -log p, so labels read with
    probability >= p give G no loss and no gradient; the others keep the plain gradient."""
    logits = torch.tensor([[4.0, -4.0, 0.0], [-4.0, 4.0, 1.0]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # first two of row 0 read well (p 0.98)
    p = 0.9
    capped = capped_aux_loss(logits, y, "multi", p)
    per = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    assert capped.item() == pytest.approx((per - math.log(1 / p)).clamp_min(0).mean().item())
    (grad,) = torch.autograd.grad(capped, logits)
    plain = F.binary_cross_entropy_with_logits(logits, y)
    (grad_plain,) = torch.autograd.grad(plain, logits)
    readable = torch.tensor([[True, True, False], [False, False, False]])
    assert (grad[readable] == 0).all() and (grad_plain[readable] != 0).all()
    assert torch.equal(grad[~readable], grad_plain[~readable])
    # class labels: per sample, on the cross-entropy
    cls = torch.tensor([[6.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    yc = torch.tensor([0, 1])
    ce = F.cross_entropy(cls, yc, reduction="none")  # row 0 p ~0.995, row 1 p ~0.45
    want = (ce[1] - math.log(1 / p)) / 2
    assert capped_aux_loss(cls, yc, "class", p).item() == pytest.approx(want.item())
    with pytest.raises(ValueError):
        capped_aux_loss(cls, yc, "none", p)


def test_aux_g_confidence_is_a_probability_for_an_acgan_critic():
    from gandist.config import ConfigError, from_dict

    assert from_dict({"model": {"condition": "acgan"}, "loss": {"aux_g_confidence": 0.9}})
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match=r"loss.aux_g_confidence.*probability in \[0, 1\)"):
            from_dict({"model": {"condition": "acgan"}, "loss": {"aux_g_confidence": bad}})
    with pytest.raises(ConfigError, match=r"loss.aux_g_confidence.*model.condition: acgan"):
        from_dict({"model": {"condition": "project"}, "loss": {"aux_g_confidence": 0.9}})


# ---------------------------------------------------------------- penalties: test critics


class LinearCritic(nn.Module):
    """D(x) = w . flatten(x) + b: grad_x D = w for every sample."""

    def __init__(self, w: Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor(0.3, dtype=w.dtype))

    def forward(self, x: Tensor, y: Tensor | None = None):
        return x.flatten(1) @ self.w + self.b, None


class QuadraticCritic(nn.Module):
    """D(x) = 0.5 * sum_j a_j x_j^2: grad_x D = a * x differs per sample."""

    def __init__(self, a: Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a.clone())

    def forward(self, x: Tensor, y: Tensor | None = None):
        return 0.5 * (self.a * x.flatten(1) ** 2).sum(1), None


def mlp_critic(dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="toy", d_hidden=[32, 32], d_norm="none", init="default")
    info = DatasetInfo(
        kind="points", channels=0, image_size=0, label_type="none", num_labels=0, point_dim=4
    )
    return build_discriminator(cfg, info).to(dtype)


def test_interpolate():
    real, fake = torch.ones(3, 2, 4, 4), torch.zeros(3, 2, 4, 4, requires_grad=True)
    eps = torch.tensor([0.0, 0.25, 1.0])
    x_hat = interpolate(real, fake, eps)
    assert x_hat.shape == real.shape and x_hat.requires_grad and x_hat.is_leaf
    assert torch.equal(x_hat[:, 0, 0, 0], eps)  # eps * 1 + (1 - eps) * 0, one eps per sample
    assert (x_hat[1] == 0.25).all()
    with pytest.raises(ValueError, match="eps"):
        interpolate(real, fake, torch.rand(3, 1))


def test_gp_linear_critic_exact():
    w = torch.tensor([3.0, 4.0, 0.0, 12.0], dtype=torch.float64)  # ||w|| = 13
    critic = LinearCritic(w)
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    pen, norm = gradient_penalty(critic, x, None)
    assert pen.item() == pytest.approx((13.0 - 1.0) ** 2, rel=1e-12)
    assert norm.item() == pytest.approx(13.0, rel=1e-12)
    assert not norm.requires_grad and pen.requires_grad


def test_gp_per_sample_norms():
    torch.manual_seed(0)
    a = torch.tensor([0.5, 1.0, 2.0, -1.5], dtype=torch.float64)
    critic = QuadraticCritic(a)
    x = torch.randn(6, 4, dtype=torch.float64) * torch.arange(1, 7).view(6, 1)
    pen, norm = gradient_penalty(critic, x.clone().requires_grad_(True), None)
    grads = a * x  # manual per-sample gradients
    per_sample = grads.norm(dim=1)
    assert per_sample.std() > 1  # the samples really differ
    assert pen.item() == pytest.approx(((per_sample - 1) ** 2).mean().item(), rel=1e-12)
    assert norm.item() == pytest.approx(per_sample.mean().item(), rel=1e-12)
    batch_norm_variant = (grads.norm() - 1) ** 2  # one norm over the whole batch: wrong
    assert abs(batch_norm_variant.item() - pen.item()) > 1.0


def test_gp_independent_of_batch_size():
    """1 sample vs 8 copies: same penalty. With .mean() instead of .sum() it would not be."""
    critic = mlp_critic(torch.float64)
    x1 = torch.randn(1, 4, dtype=torch.float64)
    x8 = x1.repeat(8, 1)
    p1, _ = gradient_penalty(critic, x1.clone().requires_grad_(True), None)
    p8, _ = gradient_penalty(critic, x8.clone().requires_grad_(True), None)
    assert p8.item() == pytest.approx(p1.item(), rel=1e-12)

    def mean_variant(x: Tensor) -> float:  # the trap: grads shrink by 1/batch
        x = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x, None)[0].mean(), x, create_graph=True)
        return ((g.flatten(1).norm(dim=1) - 1) ** 2).mean().item()

    assert mean_variant(x1) == pytest.approx(p1.item(), rel=1e-12)
    assert abs(mean_variant(x8) - p1.item()) > 1e-3 * p1.item()


def test_gp_local_means_average_to_global():
    """Two equal halves (two DDP ranks) average to the full-batch penalty and parameter grads."""
    critic = mlp_critic(torch.float64)
    x = torch.randn(8, 4, dtype=torch.float64)
    full, _ = gradient_penalty(critic, x.clone().requires_grad_(True), None)
    params = list(critic.parameters())
    # allow_unused: the output bias does not move input gradients, so the penalty ignores it.
    full_grads = torch.autograd.grad(full, params, allow_unused=True)
    halves = [gradient_penalty(critic, h.clone().requires_grad_(True), None)[0] for h in x.chunk(2)]
    half_grads = [torch.autograd.grad(h, params, allow_unused=True) for h in halves]
    assert ((halves[0] + halves[1]) / 2).item() == pytest.approx(full.item(), rel=1e-12)
    for gf, g0, g1 in zip(full_grads, *half_grads, strict=True):
        if gf is not None:
            torch.testing.assert_close((g0 + g1) / 2, gf, rtol=1e-10, atol=1e-12)


def test_gp_one_sided():
    x = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    small = LinearCritic(torch.tensor([0.3, 0.4, 0.0, 0.0], dtype=torch.float64))  # ||w|| = 0.5
    big = LinearCritic(torch.tensor([3.0, 4.0, 0.0, 0.0], dtype=torch.float64))  # ||w|| = 5
    assert gradient_penalty(small, x, None, one_sided=True)[0].item() == 0.0
    assert gradient_penalty(small, x, None)[0].item() == pytest.approx(0.25)
    assert gradient_penalty(big, x, None, one_sided=True)[0].item() == pytest.approx(16.0)
    assert gradient_penalty(big, x, None)[0].item() == pytest.approx(16.0)


def test_gp_trains_critic_params():
    """create_graph=True: the penalty back-propagates into the critic's weights."""
    w = torch.tensor([3.0, 4.0, 0.0, 0.0], dtype=torch.float64)
    critic = LinearCritic(w)
    pen, _ = gradient_penalty(
        critic, torch.randn(3, 4, dtype=torch.float64, requires_grad=True), None
    )
    pen.backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    torch.testing.assert_close(critic.w.grad, 2 * (5 - 1) * w / 5)


def test_gp_needs_grad_input():
    with pytest.raises(ValueError, match="require grad"):
        gradient_penalty(mlp_critic(), torch.randn(2, 4), None)


@pytest.mark.parametrize("d_norm", ["layer", "spectral", "instance"])
def test_gp_through_dcgan_critic(d_norm):
    cfg = ModelConfig(arch="dcgan", d_width=8, d_norm=d_norm, condition="project")
    info = DatasetInfo(kind="image", channels=1, image_size=28, label_type="class", num_labels=3)
    critic = build_discriminator(cfg, info)
    real, fake = torch.rand(4, 1, 28, 28) * 2 - 1, torch.rand(4, 1, 28, 28) * 2 - 1
    y = torch.tensor([0, 1, 2, 0])
    pen, norm = gradient_penalty(critic, interpolate(real, fake, torch.rand(4)), y)
    pen.backward()
    assert torch.isfinite(pen) and norm.item() > 0
    assert all(torch.isfinite(p.grad).all() for p in critic.parameters() if p.grad is not None)


def amp_scaler() -> torch.amp.GradScaler:
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    assert scaler.is_enabled() and scaler.get_scale() == 2.0**16
    return scaler


@pytest.mark.parametrize("penalty", ["gp", "r1"])
def test_penalty_with_grad_scaler_matches_fp32(penalty):
    critic = mlp_critic()
    x = torch.randn(8, 4)

    def run(scaler):
        xx = x.clone().requires_grad_(True)
        if penalty == "gp":
            return gradient_penalty(critic, xx, None, scaler=scaler)
        return r1_penalty(critic, x, None, scaler=scaler)

    ref, ref_norm = run(None)
    scaler = amp_scaler()
    got, got_norm = run(scaler)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    assert got_norm.item() == pytest.approx(ref_norm.item(), rel=1e-6)

    # Parameter gradients follow the AMP recipe too: scaled backward, then unscale.
    params = list(critic.parameters())
    ref_grads = torch.autograd.grad(ref, params, allow_unused=True)
    got_grads = torch.autograd.grad(scaler.scale(got), params, allow_unused=True)
    for r, g in zip(ref_grads, got_grads, strict=True):
        if r is not None:
            torch.testing.assert_close(g / scaler.get_scale(), r, rtol=1e-5, atol=1e-8)

    # The trap: grads of the scaled output used as-is. Orders of magnitude off.
    xx = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(scaler.scale(critic(xx, None)[0].sum()), xx, create_graph=True)
    n = g.flatten(1).norm(dim=1)
    wrong = ((n - 1) ** 2).mean() if penalty == "gp" else (n**2).mean()
    assert wrong.item() / ref.item() > 1e6


def test_disabled_scaler_is_ignored():
    critic = mlp_critic()
    x = torch.randn(4, 4, requires_grad=True)
    off = torch.amp.GradScaler("cpu", enabled=False)
    assert gradient_penalty(critic, x, None, scaler=off)[0].item() == pytest.approx(
        gradient_penalty(critic, x, None)[0].item(), rel=1e-7
    )


def test_gp_under_bf16_autocast_close_to_fp32():
    critic = mlp_critic()
    x = torch.randn(16, 4)
    ref, _ = gradient_penalty(critic, x.clone().requires_grad_(True), None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = gradient_penalty(critic, x.clone().requires_grad_(True), None)
    assert got.dtype == torch.float32  # norms are taken in float32
    assert got.item() == pytest.approx(ref.item(), rel=2e-2)


def test_r1_quadratic_manual():
    torch.manual_seed(1)
    a = torch.tensor([0.5, -2.0, 1.0, 3.0], dtype=torch.float64)
    critic = QuadraticCritic(a)
    real = torch.randn(5, 4, dtype=torch.float64)
    pen, norm = r1_penalty(critic, real, None)
    sq = ((a * real) ** 2).sum(1)  # ||grad_x D(x_i)||^2 by hand
    assert pen.item() == pytest.approx(sq.mean().item(), rel=1e-12)
    assert norm.item() == pytest.approx(sq.sqrt().mean().item(), rel=1e-12)
    assert not real.requires_grad  # the data tensor is left alone
    pen.backward()
    # d/da_j mean_i (a_j x_ij)^2 summed over j = mean_i 2 a_j x_ij^2
    torch.testing.assert_close(critic.a.grad, (2 * a * real**2).mean(0))


def test_clip_weights_bounds_and_idempotent():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(10).add_(torch.randn_like(p))
    inside = {n: p.abs() <= 0.01 for n, p in net.named_parameters()}
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    clip_weights_(net, 0.01)
    for name, p in net.named_parameters():
        assert p.abs().max().item() <= 0.01
        assert torch.equal(p[inside[name]], before[name][inside[name]])  # in-range untouched
    once = [p.detach().clone() for p in net.parameters()]
    clip_weights_(net, 0.01)
    assert all(torch.equal(a, b) for a, b in zip(once, net.parameters(), strict=True))
    assert all(p.abs().max() == 0.01 for p in net.parameters())  # every tensor was clipped
    with pytest.raises(ValueError):
        clip_weights_(net, 0.0)
