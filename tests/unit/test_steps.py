"""gandist.training.steps in one process: what a D step and a G step may and may not touch.

Real networks (DCGAN, width 8, 28x28) prepared by a real `Accelerator(cpu=True)`, as the trainer
does; one Accelerator for the module because accelerate keeps global state.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from accelerate import Accelerator
from torch import Tensor, nn

from gandist.config import LossConfig, ModelConfig
from gandist.data.base import DatasetInfo
from gandist.models import build_discriminator, build_generator
from gandist.objectives.augment import augment, param_names
from gandist.objectives.losses import LOSSES, AdversarialLoss
from gandist.objectives.mode_seeking import mode_seeking_loss, paired_conditions
from gandist.training.steps import GANParts, discriminator_step, generator_step

B, Z_DIM, CLASSES = 6, 8, 3


@pytest.fixture(scope="module")
def acc() -> Accelerator:
    return Accelerator(cpu=True)


def make_parts(
    acc: Accelerator,
    *,
    adversarial: str = "ns",
    penalty: str = "none",
    condition: str = "none",
    lr: float = 2e-4,
    dtype: torch.dtype = torch.float64,
    aux_twin: bool = False,
    augment: tuple[str, ...] = (),
    augment_aux: tuple[str, ...] | None = None,
    **loss_kw: float | bool,
) -> GANParts:
    """G and D (no BatchNorm) with Adam, prepared by `acc` and wrapped like Trainer does."""
    labels = "class" if condition != "none" else "none"
    info = DatasetInfo("image", 1, 28, labels, CLASSES if condition != "none" else 0)
    cfg = ModelConfig(
        arch="dcgan",
        z_dim=Z_DIM,
        g_width=8,
        d_width=8,
        g_norm="layer",
        d_norm="none",
        condition=condition,
        embed_dim=4,
        aux_twin=aux_twin,
    )
    torch.manual_seed(0)
    G, D = build_generator(cfg, info).to(dtype), build_discriminator(cfg, info).to(dtype)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    G, D, opt_g, opt_d = acc.prepare(G, D, opt_g, opt_d)
    loss_cfg = LossConfig(adversarial=adversarial, penalty=penalty, **loss_kw)
    loss = LOSSES.get(adversarial)
    return GANParts(
        acc,
        G,
        D,
        opt_g,
        opt_d,
        loss,
        loss_cfg,
        labels,
        augment=augment,
        augment_aux=augment_aux,
        twin=aux_twin,
    )


def batch(dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(real, y, z, eps) from a fixed seed."""
    g = torch.Generator().manual_seed(1)
    real = torch.rand(B, 1, 28, 28, generator=g, dtype=torch.float64).mul(2).sub(1).to(dtype)
    y = torch.randint(0, CLASSES, (B,), generator=g)
    z = torch.randn(B, Z_DIM, generator=g, dtype=torch.float64).to(dtype)
    return real, y, z, torch.rand(B, generator=g, dtype=torch.float64).to(dtype)


def snapshot(module: nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def bit_identical(a: list[Tensor], b: list[Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_generator_step_changes_g_not_d(acc: Accelerator) -> None:
    """After a D step (Adam has state, D has grads), a G step leaves D's parameters and D's
    existing grads bit-identical (nothing added to them) while G's parameters move."""
    parts = make_parts(acc)
    real, y, z, eps = batch()
    discriminator_step(parts, real, y, z, eps)
    d_params, g_params = snapshot(parts.D_plain), snapshot(parts.G_plain)
    d_grads = [p.grad.clone() for p in parts.D_plain.parameters()]
    generator_step(parts, y, z)
    assert bit_identical(snapshot(parts.D_plain), d_params)
    assert bit_identical([p.grad for p in parts.D_plain.parameters()], d_grads)
    assert not bit_identical(snapshot(parts.G_plain), g_params)


def test_generator_step_leaves_no_d_grads(acc: Accelerator) -> None:
    """With D's grads cleared, a G step leaves them None: no gradient reaches the frozen D."""
    parts = make_parts(acc)
    real, y, z, eps = batch()
    discriminator_step(parts, real, y, z, eps)
    parts.opt_d.zero_grad(set_to_none=True)
    generator_step(parts, y, z)
    assert all(p.grad is None for p in parts.D_plain.parameters())
    assert all(p.grad is not None for p in parts.G_plain.parameters())


def test_discriminator_step_leaves_g_alone(acc: Accelerator) -> None:
    """A D step (with the gradient penalty) runs G under no_grad: G's parameters are unchanged
    and no G grads appear, while D's parameters move."""
    parts = make_parts(acc, adversarial="wasserstein", penalty="gp")
    g_params, d_params = snapshot(parts.G_plain), snapshot(parts.D_plain)
    discriminator_step(parts, *batch())
    assert bit_identical(snapshot(parts.G_plain), g_params)
    assert all(p.grad is None for p in parts.G_plain.parameters())
    assert not bit_identical(snapshot(parts.D_plain), d_params)


def test_d_requires_grad_restored_when_generator_step_raises(acc: Accelerator) -> None:
    """D is frozen during the G step and unfrozen afterwards even when the step raises (here,
    inside the generator loss); the error propagates."""
    parts = make_parts(acc)
    seen: list[bool] = []

    def failing_g(fake: Tensor) -> Tensor:
        seen.extend(p.requires_grad for p in parts.D_plain.parameters())
        raise RuntimeError("boom in the generator loss")

    parts = dataclasses.replace(parts, loss=AdversarialLoss("boom", parts.loss.d, failing_g))
    _, y, z, _ = batch()
    with pytest.raises(RuntimeError, match="boom"):
        generator_step(parts, y, z)
    assert seen and not any(seen)  # frozen while the loss ran
    assert all(p.requires_grad for p in parts.D_plain.parameters())  # restored


def test_clip_step_bounds_every_d_parameter(acc: Accelerator) -> None:
    """penalty="clip": after a D step with a large learning rate every D parameter lies in
    [-c, c], though the initial weights (N(0, 0.02)) and the update exceed c."""
    c = 0.01
    parts = make_parts(acc, adversarial="wasserstein", penalty="clip", lr=0.05, clip_value=c)
    assert max(p.abs().max().item() for p in parts.D_plain.parameters()) > c
    discriminator_step(parts, *batch())
    params = list(parts.D_plain.parameters())
    assert max(p.abs().max().item() for p in params) <= c
    assert any(p.abs().max().item() == c for p in params)  # clipping did act


@pytest.mark.parametrize(
    ("penalty", "weight_key", "weight"), [("gp", "gp_weight", 10.0), ("r1", "r1_gamma", 4.0)]
)
def test_penalty_step_logs_penalty_and_grad_norm(
    acc: Accelerator, penalty: str, weight_key: str, weight: float
) -> None:
    """A D step with a gradient penalty logs the penalty and the mean input-gradient norm, and
    the logged total loss is the adversarial loss plus the weighted penalty (lambda for GP,
    gamma/2 for R1)."""
    parts = make_parts(acc, adversarial="wasserstein", penalty=penalty, **{weight_key: weight})
    m = discriminator_step(parts, *batch())
    pen, norm = m[f"d/{penalty}"], m[f"d/{penalty}_grad_norm"]
    assert torch.isfinite(pen) and pen.item() > 0
    assert torch.isfinite(norm) and norm.item() > 0
    factor = weight if penalty == "gp" else 0.5 * weight
    expected = m["d/loss_adv"] + factor * pen
    assert m["d/loss"].item() == pytest.approx(expected.item(), rel=1e-12, abs=1e-12)
    other = "r1" if penalty == "gp" else "gp"
    assert f"d/{other}" not in m


def test_no_penalty_logs_no_penalty(acc: Accelerator) -> None:
    """Without a penalty the D step logs none and the total loss is the adversarial loss."""
    m = discriminator_step(make_parts(acc), *batch())
    assert not any(k.startswith(("d/gp", "d/r1")) for k in m)
    assert torch.equal(m["d/loss"], m["d/loss_adv"])


def test_acgan_logs_aux_losses(acc: Accelerator) -> None:
    """ACGAN: the D step logs d/loss_aux and the G step g/loss_aux (class cross-entropy, about
    log(3) at init), each added to the adversarial loss with loss.aux_weight."""
    parts = make_parts(acc, condition="acgan", aux_weight=0.5)
    real, y, z, eps = batch()
    md = discriminator_step(parts, real, y, z, eps)
    mg = generator_step(parts, y, z)
    for m, side in ((md, "d"), (mg, "g")):
        aux = m[f"{side}/loss_aux"]
        assert torch.isfinite(aux) and aux.item() > 0
        expected = m[f"{side}/loss_adv"] + 0.5 * aux
        assert m[f"{side}/loss"].item() == pytest.approx(expected.item(), rel=1e-12)


def test_acgan_aux_fake_false_trains_the_classifier_on_real_images_only(acc: Accelerator) -> None:
    """loss.aux_fake=false: D's aux loss is the real batch's cross-entropy alone (the fakes'
    term is dropped), so it equals the classifier's loss on the reals before the update; G's
    step keeps its aux term."""
    parts = make_parts(acc, condition="acgan", aux_fake=False)
    real, y, z, eps = batch()
    with torch.no_grad():
        _, real_aux = parts.D(real, y)
    expected = torch.nn.functional.cross_entropy(real_aux, y.long())
    md = discriminator_step(parts, real, y, z, eps)
    assert md["d/loss_aux"].item() == pytest.approx(expected.item(), rel=1e-12)
    both = make_parts(acc, condition="acgan")  # the same nets and batch, both terms
    assert discriminator_step(both, real, y, z, eps)["d/loss_aux"].item() > expected.item() * 1.5
    assert torch.isfinite(generator_step(parts, y, z)["g/loss_aux"])


def test_twin_classifier_learns_the_fakes_labels_and_g_maximises_its_loss(
    acc: Accelerator,
) -> None:
    """model.aux_twin (TAC-GAN): D's head returns the classifier's then the twin's logits; the D
    step adds the twin's cross-entropy on the fakes (d/loss_twin) to the classifier's on the
    reals, the G step subtracts it from the classifier's on the fakes; the twin's terms weigh
    loss.twin_weight x loss.aux_weight."""
    parts = make_parts(
        acc, condition="acgan", aux_weight=0.5, aux_fake=False, aux_twin=True, twin_weight=0.25
    )
    real, y, z, eps = batch()
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        _, real_aux = parts.D(real, y)
        _, fake_aux = parts.D(parts.G(z, y), y)
    assert real_aux.shape == (B, 2 * CLASSES)
    twin_before = [p.detach().clone() for p in parts.D_plain.head.twin.parameters()]
    md = discriminator_step(parts, real, y, z, eps)
    assert md["d/loss_aux"].item() == pytest.approx(ce(real_aux[:, :CLASSES], y).item(), rel=1e-12)
    assert md["d/loss_twin"].item() == pytest.approx(ce(fake_aux[:, CLASSES:], y).item(), rel=1e-12)
    d_total = md["d/loss_adv"] + 0.5 * (md["d/loss_aux"] + 0.25 * md["d/loss_twin"])
    assert md["d/loss"].item() == pytest.approx(d_total.item(), rel=1e-12)
    assert not bit_identical(twin_before, snapshot(parts.D_plain.head.twin))
    with torch.no_grad():
        _, fake_aux = parts.D(parts.G(z, y), y)  # D after its step: what G's step sees
    mg = generator_step(parts, y, z)
    assert mg["g/loss_aux"].item() == pytest.approx(ce(fake_aux[:, :CLASSES], y).item(), rel=1e-12)
    assert mg["g/loss_twin"].item() == pytest.approx(ce(fake_aux[:, CLASSES:], y).item(), rel=1e-12)
    g_total = mg["g/loss_adv"] + 0.5 * (mg["g/loss_aux"] - 0.25 * mg["g/loss_twin"])
    assert mg["g/loss"].item() == pytest.approx(g_total.item(), rel=1e-12)
    plain = make_parts(acc, condition="acgan")
    assert "d/loss_twin" not in discriminator_step(plain, real, y, z, eps)
    assert "g/loss_twin" not in generator_step(plain, y, z)


@pytest.mark.parametrize("view", [(), ("translation",)])
def test_classifier_view_of_its_own(acc: Accelerator, view: tuple[str, ...]) -> None:
    """train.augment_aux: the real/fake terms judge the translation+cutout views, the
    classifier's terms (D's on the reals and, with aux_fake, the fakes; G's on its fakes) the
    view without cutout, from the same draws; "same" (None) puts both on the full view."""
    policy = ("translation", "cutout")
    real, y, z, eps = batch()
    g = torch.Generator().manual_seed(2)
    names = param_names(policy)
    draws = [{k: torch.rand(B, generator=g, dtype=torch.float64) for k in names} for _ in "rfg"]
    aug_real, aug_fake, aug_g = draws
    ce = torch.nn.functional.cross_entropy

    def expected(parts: GANParts, aux_view: tuple[str, ...]) -> dict[str, float]:
        with torch.no_grad():
            fake = parts.G(z, y)
            real_out, _ = parts.D(augment(real, policy, aug_real), y)
            fake_out, _ = parts.D(augment(fake, policy, aug_fake), y)
            _, real_aux = parts.D(augment(real, aux_view, aug_real), y)
            _, fake_aux = parts.D(augment(fake, aux_view, aug_fake), y)
        return {
            "d/loss_adv": parts.loss.d(real_out, fake_out).item(),
            "d/loss_aux": (ce(real_aux, y) + ce(fake_aux, y)).item(),
        }

    for aux_view, kw in ((view, {"augment_aux": view}), (policy, {})):
        parts = make_parts(acc, condition="acgan", augment=policy, **kw)
        want = expected(parts, aux_view)
        md = discriminator_step(parts, real, y, z, eps, aug=(aug_real, aug_fake))
        for key, value in want.items():
            assert md[key].item() == pytest.approx(value, rel=1e-12), (aux_view, key)
        with torch.no_grad():  # D after its step, as G's step sees it
            fake = parts.G(z, y)
            fake_out, _ = parts.D(augment(fake, policy, aug_g), y)
            _, fake_aux = parts.D(augment(fake, aux_view, aug_g), y)
        mg = generator_step(parts, y, z, aug=aug_g)
        assert mg["g/loss_adv"].item() == pytest.approx(parts.loss.g(fake_out).item(), rel=1e-12)
        assert mg["g/loss_aux"].item() == pytest.approx(ce(fake_aux, y).item(), rel=1e-12)
    # the views differ, so the test can tell them apart
    one = make_parts(acc, condition="acgan", augment=policy)
    with torch.no_grad():
        _, full = one.D(augment(real, policy, aug_real), y)
        _, own = one.D(augment(real, view, aug_real), y)
    assert not torch.allclose(full, own)


def test_unconditional_logs_no_aux_loss(acc: Accelerator) -> None:
    """An unconditional model has no aux head, so no aux loss is logged."""
    parts = make_parts(acc)
    real, y, z, eps = batch()
    assert "d/loss_aux" not in discriminator_step(parts, real, y, z, eps)
    assert "g/loss_aux" not in generator_step(parts, y, z)


@pytest.mark.parametrize(
    ("dtype", "loss_dtype"), [(torch.float64, torch.float64), (torch.bfloat16, torch.float32)]
)
def test_losses_are_computed_in_at_least_float32(
    acc: Accelerator, dtype: torch.dtype, loss_dtype: torch.dtype
) -> None:
    """Low-precision logits are upcast to float32 for the loss, but float64 logits are never
    downcast: a float32 loss in a float64 run (`train.dtype=float64`, used to verify 1 vs N
    processes) carried ~1e-7 relative error into the gradients, and 1-vs-2-process runs drifted
    apart by up to 8e-10 in 3 steps."""
    parts = make_parts(acc, condition="acgan", dtype=dtype)
    real, y, z, eps = batch(dtype)
    md = discriminator_step(parts, real, y, z, eps)
    mg = generator_step(parts, y, z)
    for key in ("d/loss", "d/loss_adv", "d/loss_aux", "g/loss", "g/loss_adv", "g/loss_aux"):
        assert {**md, **mg}[key].dtype == loss_dtype, key


def test_mode_seeking_adds_its_term_with_paired_conditions(acc: Accelerator) -> None:
    """loss.mode_seeking: G's loss gains weight x the MSGAN term of its own images, whose pairs
    were generated with the condition of the pair's first sample; D's step is unchanged."""
    parts = make_parts(acc, condition="acgan", mode_seeking=2.0)
    real, y, z, eps = batch()
    with torch.no_grad():
        paired = paired_conditions(y)
        expected = mode_seeking_loss(parts.G(z, paired), z)
        _, fake_aux = parts.D(parts.G(z, paired), paired)
        aux = torch.nn.functional.cross_entropy(fake_aux, paired.long())
    assert "g/mode_seeking" not in discriminator_step(parts, real, y, z, eps)
    parts = make_parts(acc, condition="acgan", mode_seeking=2.0)  # fresh, as above
    mg = generator_step(parts, y, z)
    assert mg["g/mode_seeking"].item() == pytest.approx(expected.item(), rel=1e-12)
    assert mg["g/loss_aux"].item() == pytest.approx(aux.item(), rel=1e-12)
    total = mg["g/loss_adv"] + mg["g/loss_aux"] + 2.0 * mg["g/mode_seeking"]
    assert mg["g/loss"].item() == pytest.approx(total.item(), rel=1e-12)
    assert "g/mode_seeking" not in generator_step(make_parts(acc, condition="acgan"), y, z)
