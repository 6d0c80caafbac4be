"""PacGAN packing (gandist/models/packing.py): the pack layout, packed critics for every arch and
condition that supports it, the batch rules, and penalties per pack (training/critic_view.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gandist.config import ConfigError, ModelConfig, from_dict
from gandist.data.base import DatasetInfo
from gandist.models import build_discriminator
from gandist.models.packing import check_pack, check_pack_batch, group, pack, ungroup
from gandist.objectives.augment import augment, draw_params
from gandist.objectives.penalties import gradient_penalty, interpolate, r1_penalty
from gandist.training.critic_view import penalty_inputs

K = 4  # labels


def image_info(channels: int = 3, label_type: str = "none", size: int = 16) -> DatasetInfo:
    return DatasetInfo("image", channels, size, label_type, 0 if label_type == "none" else K)


POINTS = DatasetInfo("points", 0, 0, "none", 0, point_dim=2)


def cfg(**kw) -> ModelConfig:
    base = dict(
        arch="dcgan", d_width=4, d_hidden=[8, 8], embed_dim=3, d_norm="none", z_dim=4, pack=2
    )
    base.update(kw)
    return ModelConfig(**base)


def critic(c: ModelConfig, info: DatasetInfo) -> nn.Module:
    torch.manual_seed(0)
    return build_discriminator(c, info).double()


def batch(n: int, info: DatasetInfo, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *info.sample_shape, generator=g, dtype=torch.float64) * 2 - 1


def labels(n: int, label_type: str) -> torch.Tensor | None:
    g = torch.Generator().manual_seed(2)
    if label_type == "class":
        return torch.randint(0, K, (n,), generator=g)
    if label_type == "multi":
        return (torch.rand(n, K, generator=g) > 0.5).double()
    return None


# ---------------------------------------------------------------- the pack layout


def test_a_pack_is_consecutive_samples_along_channels() -> None:
    x = torch.arange(6 * 2 * 3 * 3, dtype=torch.float32).view(6, 2, 3, 3)
    p = pack(x, 3)
    assert p.shape == (2, 6, 3, 3)
    assert torch.equal(p[1], torch.cat([x[3], x[4], x[5]], dim=0))
    feats = torch.arange(12.0).view(6, 2)
    assert torch.equal(pack(feats, 2), torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11.0]]))
    assert pack(x, 1) is x


def test_pack_keeps_channels_last() -> None:
    x = torch.rand(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    p = pack(x, 2)
    assert p.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(p, pack(x.contiguous(), 2))


def test_group_is_a_view_and_ungroup_inverts_it() -> None:
    x = torch.rand(6, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    g = group(x, 3)
    assert g.shape == (2, 3, 3, 4, 4) and g.data_ptr() == x.data_ptr()
    assert torch.equal(ungroup(g), x)


def test_a_batch_that_is_not_whole_packs_is_refused() -> None:
    with pytest.raises(ValueError, match="not whole packs"):
        pack(torch.zeros(5, 2), 2)


# ---------------------------------------------------------------- packed critics


@pytest.mark.parametrize(
    ("arch", "info"), [("dcgan", image_info()), ("mlp", image_info()), ("toy", POINTS)]
)
def test_packed_critic_takes_k_times_the_features_and_scores_each_pack(arch, info) -> None:
    d = critic(cfg(arch=arch, pack=3), info)
    first = next(m for m in d.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    per_sample = info.channels if arch == "dcgan" else int(torch.tensor(info.sample_shape).prod())
    assert (first.in_channels if arch == "dcgan" else first.in_features) == 3 * per_sample
    x = batch(6, info)
    adv, aux = d(x, None)
    assert adv.shape == (2,) and aux is None
    # pack j's score depends on pack j's samples only
    y = x.clone()
    y[4] += 1.0
    adv2, _ = d(y, None)
    assert adv2[0] == adv[0] and adv2[1] != adv[1]


def test_packed_dcgan_critic_is_the_plain_critic_on_the_channel_concatenation() -> None:
    info = image_info(channels=1)
    d = critic(cfg(pack=2), info)
    x = batch(4, info)
    manual = d.head(d.blocks(torch.cat([x[0::2], x[1::2]], dim=1)).flatten(1), None)[0]
    assert torch.equal(d(x, None)[0], manual)


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
@pytest.mark.parametrize("label_type", ["class", "multi"])
def test_concat_condition_packs_each_sample_with_its_label(arch, label_type) -> None:
    info = image_info(label_type=label_type)
    d = critic(cfg(arch=arch, condition="concat"), info)
    x, y = batch(4, info), labels(4, label_type)
    adv, _ = d(x, y)
    assert adv.shape == (2,)
    y2 = y.clone()
    y2[3] = (y[3] + 1) % K if label_type == "class" else 1 - y[3]
    adv2, _ = d(x, y2)  # a label belongs to its sample's pack
    assert adv2[0] == adv[0] and adv2[1] != adv[1]
    if arch == "dcgan":
        first = next(m for m in d.modules() if isinstance(m, nn.Conv2d))
        assert first.in_channels == 2 * (3 + 1)  # (RGB + label map) per member


@pytest.mark.parametrize("label_type", ["class", "multi"])
def test_acgan_packed_critic_classifies_every_member(label_type) -> None:
    info = image_info(label_type=label_type)
    d = critic(cfg(condition="acgan"), info)
    adv, aux = d(batch(6, info), None)
    assert adv.shape == (3,) and aux.shape == (6, K)
    assert d.head.aux.out_features == 2 * K


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_twin_classifier_classifies_every_member_after_the_classifier(arch) -> None:
    """model.aux_twin (TAC-GAN): the twin head unpacks like the classifier; its K logits per
    sample follow the classifier's, and changing the twin's weights moves only them."""
    info = image_info(label_type="class")
    d = critic(cfg(arch=arch, condition="acgan", aux_twin=True), info)
    x = batch(6, info)
    adv, aux = d(x, None)
    assert adv.shape == (3,) and aux.shape == (6, 2 * K)
    with torch.no_grad():
        d.head.twin.bias.add_(1.0)
    _, moved = d(x, None)
    assert torch.equal(moved[:, :K], aux[:, :K]) and torch.allclose(moved[:, K:], aux[:, K:] + 1)
    with pytest.raises(ConfigError, match="model.aux_twin.*model.condition: acgan"):
        from_dict({"model": {"aux_twin": True, "condition": "concat"}})
    with pytest.raises(ConfigError, match="loss.twin_weight.*>= 0"):
        from_dict({"model": {"aux_twin": True, "condition": "acgan"}, "loss": {"twin_weight": -1}})


def test_projection_critic_cannot_pack() -> None:
    with pytest.raises(ValueError, match=r"model.pack=2 cannot .*model.condition=project"):
        build_discriminator(cfg(condition="project"), image_info(label_type="class"))
    with pytest.raises(ConfigError, match="model.pack"):
        from_dict({"model": {"pack": 2, "condition": "project"}})
    check_pack(cfg(condition="project", pack=1))  # unpacked: fine


def test_aux_project_needs_acgan_and_cannot_pack() -> None:
    """model.aux_project is a projection term on an ACGAN critic: it packs no more than the
    projection critic does, and on another condition it is a config error naming the key."""
    with pytest.raises(ValueError, match=r"model.pack=2 cannot .*model.aux_project"):
        build_discriminator(
            cfg(condition="acgan", aux_project=True), image_info(label_type="multi")
        )
    with pytest.raises(ConfigError, match="model.pack"):
        from_dict({"model": {"pack": 2, "condition": "acgan", "aux_project": True}})
    for condition in ("none", "concat", "project"):
        with pytest.raises(ConfigError, match="model.aux_project.*model.condition: acgan"):
            from_dict({"model": {"aux_project": True, "condition": condition}})
    from_dict({"model": {"aux_project": True, "condition": "acgan"}})  # fine


# ---------------------------------------------------------------- the batch rules


def test_every_process_gets_whole_packs() -> None:
    check_pack_batch(4, 64, 2)
    check_pack_batch(1, 63, 1)
    with pytest.raises(ValueError) as err:
        check_pack_batch(4, 24, 4)  # 6 per process
    msg = str(err.value)
    assert "model.pack=4" in msg and "train.batch_size=24" in msg and "multiple of" in msg
    assert "16" in msg  # the multiple to pick: pack x processes
    with pytest.raises(ConfigError, match="train.batch_size.*model.pack=3"):
        from_dict({"model": {"pack": 3}, "train": {"batch_size": 64}})
    with pytest.raises(ConfigError, match="model.pack.*>= 1"):
        from_dict({"model": {"pack": 0}})


# ---------------------------------------------------------------- penalties per pack


def manual_grad(d: nn.Module, x: torch.Tensor, transform=lambda t: t) -> torch.Tensor:
    leaf = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(d(transform(leaf), None)[0].sum(), leaf)
    return g


def test_gp_on_packed_interpolates_is_per_pack() -> None:
    info = image_info(channels=1)
    d = critic(cfg(pack=2), info)
    real, fake = batch(6, info, 1), batch(6, info, 2)
    eps = torch.rand(6, dtype=torch.float64)
    c, r, f, e = penalty_inputs(d, real, fake, eps, pack=2)
    gp, _ = gradient_penalty(c, interpolate(r, f, e), None)
    x_hat = eps.view(-1, 1, 1, 1) * real + (1 - eps.view(-1, 1, 1, 1)) * fake  # per sample
    norms = manual_grad(d, x_hat).reshape(3, -1).norm(dim=1)  # ... then per pack
    assert torch.allclose(gp, ((norms - 1) ** 2).mean(), rtol=1e-12, atol=0)


def test_r1_on_packed_reals_is_per_pack() -> None:
    d = critic(cfg(arch="toy", pack=2), POINTS)
    real = batch(8, POINTS)
    c, r, _, _ = penalty_inputs(d, real, real, None, pack=2)
    r1, _ = r1_penalty(c, r, None)
    sq = manual_grad(d, real).reshape(4, -1).pow(2).sum(dim=1)
    assert torch.allclose(r1, sq.mean(), rtol=1e-12, atol=0)


def test_penalty_with_augmentation_differentiates_through_the_real_batch_augmentation() -> None:
    info = image_info(channels=3)
    d = critic(cfg(pack=2), info)
    policy = ("translation", "cutout", "color")
    g = torch.Generator().manual_seed(5)
    params = draw_params(policy, lambda _: torch.rand(4, generator=g, dtype=torch.float64))
    real, fake = batch(4, info, 1), batch(4, info, 2)
    eps = torch.rand(4, dtype=torch.float64)
    c, r, f, e = penalty_inputs(d, real, fake, eps, pack=2, policy=policy, params=params)
    gp, _ = gradient_penalty(c, interpolate(r, f, e), None)
    x_hat = eps.view(-1, 1, 1, 1) * real + (1 - eps.view(-1, 1, 1, 1)) * fake
    g_manual = manual_grad(d, x_hat, lambda t: augment(t, policy, params))
    norms = g_manual.reshape(2, -1).norm(dim=1)
    assert torch.allclose(gp, ((norms - 1) ** 2).mean(), rtol=1e-12, atol=0)


def test_without_techniques_the_penalty_inputs_pass_through() -> None:
    d = critic(cfg(arch="toy", pack=1), POINTS)
    real = batch(4, POINTS)
    assert penalty_inputs(d, real, real, None) == (d, real, real, None)
