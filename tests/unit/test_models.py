"""Model construction: shapes for every arch x resolution x condition, init, norms, errors,
and the lab architectures' parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from gandist.config import ModelConfig
from gandist.data.base import DatasetInfo
from gandist.models import (
    DISCRIMINATORS,
    GENERATORS,
    build_discriminator,
    build_generator,
    count_parameters,
    has_batchnorm,
    init_weights,
)
from gandist.models.conditioning import LabelAffine

K = 5  # label vocabulary in these tests
B = 3


def image_info(size: int = 32, channels: int = 3, label_type: str = "none") -> DatasetInfo:
    return DatasetInfo(
        kind="image",
        channels=channels,
        image_size=size,
        label_type=label_type,
        num_labels=0 if label_type == "none" else K,
        source="test",
    )


def points_info(label_type: str = "none", dim: int = 2) -> DatasetInfo:
    return DatasetInfo(
        kind="points",
        channels=0,
        image_size=0,
        label_type=label_type,
        num_labels=0 if label_type == "none" else K,
        point_dim=dim,
        source="test",
    )


def small_cfg(**kw) -> ModelConfig:
    base = dict(g_width=8, d_width=8, z_dim=16, embed_dim=6, g_hidden=[16, 32], d_hidden=[32, 16])
    base.update(kw)
    return ModelConfig(**base)


def labels(label_type: str, n: int = B) -> torch.Tensor | None:
    if label_type == "class":
        return torch.randint(0, K, (n,))
    if label_type == "multi":
        return (torch.rand(n, K) > 0.5).float()
    return None


def run_pair(cfg: ModelConfig, info: DatasetInfo, n: int = B):
    g, d = build_generator(cfg, info), build_discriminator(cfg, info)
    y = labels(info.label_type, n) if cfg.condition != "none" else None
    x = g(torch.randn(n, g.z_dim), y)
    adv, aux = d(x, y)
    return g, d, x, adv, aux


CONDITIONS = [("none", "none")] + [
    (c, lt) for c in ("concat", "project", "acgan") for lt in ("class", "multi")
]


def check_outputs(cfg, info, x, adv, aux, d):
    assert x.shape == (B, *info.sample_shape)
    assert adv.shape == (B,)
    assert torch.isfinite(adv).all()
    if cfg.condition == "acgan":
        assert d.has_aux and aux is not None and aux.shape == (B, K)
    else:
        assert not d.has_aux and aux is None


@pytest.mark.parametrize("size", [28, 32, 64, 128])
@pytest.mark.parametrize(("condition", "label_type"), CONDITIONS)
def test_dcgan_shapes(size, condition, label_type):
    cfg = small_cfg(arch="dcgan", condition=condition)
    info = image_info(size, channels=3, label_type=label_type)
    g, d, x, adv, aux = run_pair(cfg, info)
    check_outputs(cfg, info, x, adv, aux, d)
    assert g.z_dim == cfg.z_dim


@pytest.mark.parametrize("label_type", ["class", "multi"])
@pytest.mark.parametrize("g_norm", ["batch", "layer"])
def test_dcgan_conditional_norm(label_type, g_norm):
    """model.g_cond_norm: G starts as the plain-norm G (zero label maps), and once trained the
    label reaches G through its norms even where the first layer ignores it."""
    info = image_info(32, channels=3, label_type=label_type)
    torch.manual_seed(0)
    plain = build_generator(small_cfg(condition="project", g_norm=g_norm), info)
    torch.manual_seed(0)
    cond = build_generator(small_cfg(condition="project", g_norm=g_norm, g_cond_norm=True), info)
    affines = [m for m in cond.modules() if isinstance(m, LabelAffine)]
    norms = [m for m in cond.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    assert len(affines) == len(norms) >= 2
    own = {k: v for k, v in cond.state_dict().items() if ".gain." not in k and ".shift." not in k}
    assert len(own) == len(plain.state_dict()) < len(cond.state_dict())
    # the same layers in the same order (the label maps shift the Sequential's indices)
    cond.load_state_dict(dict(zip(own, plain.state_dict().values(), strict=True)), strict=False)
    z, y = torch.randn(B, cond.z_dim), labels(label_type)
    torch.testing.assert_close(cond(z, y), plain(z, y))
    with torch.no_grad():
        cond.fc.weight[:, cond.z_dim :] = 0  # the first layer no longer sees the label
        plain.fc.weight[:, cond.z_dim :] = 0
        for m in affines:
            m.gain.weight.normal_(0, 0.5)
            m.shift.weight.normal_(0, 0.5)
    y2 = labels(label_type)
    assert not torch.equal(y, y2)
    torch.testing.assert_close(plain(z, y), plain(z, y2))
    assert (cond(z, y) - cond(z, y2)).abs().max() > 1e-3


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize(("condition", "label_type"), CONDITIONS)
def test_dcgan_sum_pooled_critic(size, condition, label_type):
    """model.d_pool=sum: the head reads the last map summed over positions (SNGAN), so its
    width is the last conv's channels whatever the size, and the logits are that sum's."""
    cfg = small_cfg(arch="dcgan", condition=condition, d_pool="sum", d_norm="spectral")
    info = image_info(size, channels=3, label_type=label_type)
    g, d, x, adv, aux = run_pair(cfg, info)
    check_outputs(cfg, info, x, adv, aux, d)
    last_conv = [m for m in d.blocks.modules() if isinstance(m, nn.Conv2d)][-1]
    assert d.head.linear.in_features == last_conv.out_channels
    y = labels(label_type)
    d.eval()  # spectral norm's power iteration would move the weights between the two calls
    with torch.no_grad():
        x_in = torch.cat([x, d.label_map(y)], dim=1) if d.label_map is not None else x
        fmap = d.blocks(x_in)
        assert fmap.shape[-1] > 1  # a real map is pooled, not a 1 x 1 one
        want_adv, want_aux = d.head(fmap.sum(dim=(2, 3)), y)
        got_adv, got_aux = d(x, y)
    torch.testing.assert_close(got_adv, want_adv)
    if want_aux is not None:
        torch.testing.assert_close(got_aux, want_aux)
    flat = build_discriminator(small_cfg(arch="dcgan", condition=condition), info)
    assert flat.head.linear.in_features == last_conv.out_channels * fmap.shape[-1] ** 2


@pytest.mark.parametrize("size", [28, 32, 64, 128])
@pytest.mark.parametrize(
    ("upsample", "kernel"), [("transposed", 5), ("upsample_conv", 4), ("upsample_conv", 5)]
)
def test_dcgan_upsampling_modes_and_kernels(size, upsample, kernel):
    cfg = small_cfg(arch="dcgan", g_upsample=upsample, kernel=kernel, d_norm="layer")
    info = image_info(size, channels=1)
    _, d, x, adv, aux = run_pair(cfg, info)
    check_outputs(cfg, info, x, adv, aux, d)


def test_dcgan_channel_layout_matches_lab():
    """64 px, width 64, kernel 5: G 512->256->128->64->3 transposed convs, D 64..512 convs."""
    cfg = ModelConfig(arch="dcgan", kernel=5)
    g = build_generator(cfg, image_info(64))
    convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (512, 256),
        (256, 128),
        (128, 64),
        (64, 3),
    ]
    assert all(
        c.kernel_size == (5, 5) and c.padding == (2, 2) and c.output_padding == (1, 1)
        for c in convs
    )
    d = build_discriminator(cfg, image_info(64))
    widths = [m.out_channels for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [64, 128, 256, 512]
    assert d.head.linear.in_features == 512 * 4 * 4  # == the lab's final 4x4 conv


def test_concat_critic_gets_label_channel():
    cfg = small_cfg(arch="dcgan", condition="concat")
    d = build_discriminator(cfg, image_info(64, channels=3, label_type="multi"))
    first = next(m for m in d.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 4  # RGB + the label map, iCLEVR-style


def test_labels_change_outputs():
    """Conditioning is live: same z, different labels -> different G output and D score."""
    for condition in ("concat", "project"):
        cfg = small_cfg(arch="dcgan", condition=condition, g_norm="none", d_norm="none")
        info = image_info(32, label_type="class")
        g, d = build_generator(cfg, info).eval(), build_discriminator(cfg, info).eval()
        z = torch.randn(1, cfg.z_dim).repeat(2, 1)
        y = torch.tensor([0, 1])
        x = g(z, y)
        assert not torch.allclose(x[0], x[1])
        adv, _ = d(x[:1].repeat(2, 1, 1, 1), y)
        assert not torch.allclose(adv[0], adv[1])


@pytest.mark.parametrize(("condition", "label_type"), CONDITIONS)
@pytest.mark.parametrize("kind", ["image", "points"])
def test_mlp_shapes(kind, condition, label_type):
    cfg = small_cfg(arch="mlp", condition=condition, d_norm="none")
    info = image_info(28, 1, label_type) if kind == "image" else points_info(label_type)
    _, d, x, adv, aux = run_pair(cfg, info)
    check_outputs(cfg, info, x, adv, aux, d)


@pytest.mark.parametrize(("condition", "label_type"), CONDITIONS)
def test_toy_shapes(condition, label_type):
    cfg = small_cfg(arch="toy", condition=condition, g_norm="none", d_norm="none")
    info = points_info(label_type, dim=3)
    _, d, x, adv, aux = run_pair(cfg, info)
    check_outputs(cfg, info, x, adv, aux, d)


def test_batch_of_one_keeps_batch_dim():
    cfg = small_cfg(arch="mlp", g_norm="none", d_norm="none")
    g, d = build_generator(cfg, points_info()), build_discriminator(cfg, points_info())
    adv, _ = d(g(torch.randn(1, cfg.z_dim), None), None)
    assert adv.shape == (1,)


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_images_in_tanh_range(arch):
    cfg = small_cfg(arch=arch, init="default")
    g = build_generator(cfg, image_info(32))
    x = g(100 * torch.randn(16, cfg.z_dim), None)
    assert x.abs().max() <= 1.0
    assert x.abs().max() > 0.5  # saturates for huge z: the range comes from Tanh, not luck


def test_points_output_is_linear():
    cfg = small_cfg(arch="toy", g_norm="none", init="default")
    g = build_generator(cfg, points_info())
    x = g(1000 * torch.randn(16, cfg.z_dim), None)
    assert x.abs().max() > 1.0
    assert not any(isinstance(m, nn.Tanh) for m in g.modules())


def test_no_sigmoid_in_discriminators():
    for arch, info in (
        ("dcgan", image_info(32)),
        ("mlp", image_info(28, 1)),
        ("toy", points_info()),
    ):
        d = build_discriminator(small_cfg(arch=arch), info)
        assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())


def test_normal_init_statistics():
    torch.manual_seed(0)
    cfg = ModelConfig(arch="dcgan", init="normal")  # full width: enough weights for a std
    g, d = build_generator(cfg, image_info(64)), build_discriminator(cfg, image_info(64))
    w = g.fc.weight
    assert w.std().item() == pytest.approx(0.02, rel=0.02)
    assert abs(w.mean().item()) < 1e-3
    conv = [m for m in d.modules() if isinstance(m, nn.Conv2d)][2]
    assert conv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    bn_w = torch.cat([m.weight for m in bns])
    assert bn_w.mean().item() == pytest.approx(1.0, abs=0.005)
    assert bn_w.std().item() == pytest.approx(0.02, rel=0.1)
    assert all((m.bias == 0).all() for m in bns)
    assert (g.fc.bias == 0).all()


def test_default_init_is_pytorch_init():
    cfg = ModelConfig(arch="dcgan", init="default")
    g = build_generator(cfg, image_info(64))
    # nn.Linear's kaiming-uniform bound is 1/sqrt(fan_in); std of U(-b, b) is b/sqrt(3).
    assert g.fc.weight.std().item() == pytest.approx(1 / (100**0.5 * 3**0.5), rel=0.05)


def test_spectral_norm_critic():
    torch.manual_seed(0)
    cfg = small_cfg(arch="dcgan", d_norm="spectral", d_width=16, init="normal", condition="project")
    info = image_info(32, label_type="class")
    d = build_discriminator(cfg, info)
    layers = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert not has_batchnorm(d)
    assert not any(isinstance(m, (nn.GroupNorm, nn.InstanceNorm2d)) for m in d.modules())
    # init reached the original weights
    original = layers[1].parametrizations.weight.original
    assert original.std().item() == pytest.approx(0.02, rel=0.1)
    x, y = torch.randn(4, 3, 32, 32), labels("class", 4)
    adv, _ = d(x, y)
    adv.sum().backward()
    assert all(p.grad is not None for p in d.parameters() if p.requires_grad)
    # right after init the power iteration was refreshed: sigma_max(W / sigma) ~= 1
    for m in layers:
        w = m.weight.detach()
        mat = w.flatten(1) if not isinstance(m, nn.Linear) else w
        assert torch.linalg.matrix_norm(mat, ord=2).item() == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_aux_spectral_false_frees_only_the_classifier(arch):
    """model.aux_spectral=false: the ACGAN classifier and its twin keep a plain weight, every
    other layer of the critic stays spectrally normalised, and a classifier gradient reaches
    the free weight."""
    torch.manual_seed(0)
    kw = {"d_width": 16} if arch == "dcgan" else {"d_hidden": [32]}
    info = image_info(32, label_type="multi")
    for free in (False, True):
        cfg = small_cfg(
            arch=arch,
            d_norm="spectral",
            condition="acgan",
            aux_twin=True,
            aux_spectral=not free,
            **kw,
        )
        d = build_discriminator(cfg, info)
        heads = {d.head.aux, d.head.twin}
        for m in d.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                assert parametrize.is_parametrized(m, "weight") == (not free or m not in heads)
        _, aux = d(torch.randn(4, 3, 32, 32), labels("multi", 4))
        aux.sum().backward()
        grad = d.head.aux.weight.grad if free else d.head.aux.parametrizations.weight.original.grad
        assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_aux_project_adds_a_label_term_that_starts_at_zero(arch):
    """model.aux_project: the ACGAN critic's real/fake logit gains <embed(y), h>. At init the
    term is zero (the critic scores as the plain ACGAN one, whatever y); once the embedding has
    learnt, the logit depends on the labels, and only the logit: the classifier's output does
    not. The embedding is a label encoder, left out of spectral norm like the projection
    critic's."""
    kw = {"d_width": 16} if arch == "dcgan" else {"d_hidden": [32]}
    info = image_info(32, label_type="multi")
    base = dict(arch=arch, d_norm="spectral", condition="acgan", **kw)
    torch.manual_seed(0)
    plain = build_discriminator(small_cfg(**base), info)
    torch.manual_seed(0)
    d = build_discriminator(small_cfg(aux_project=True, **base), info)
    assert not parametrize.is_parametrized(d.head.project.embed, "weight")
    missing, unexpected = d.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("head.project.") for k in missing) and missing
    plain.eval(), d.eval()  # eval: no power-iteration step in forward, so both see one sigma
    x, y1, y2 = torch.randn(4, 3, 32, 32), labels("multi", 4), 1 - labels("multi", 4)
    adv_plain, aux_plain = plain(x, y1)
    adv1, aux1 = d(x, y1)
    assert torch.allclose(adv1, adv_plain) and torch.allclose(aux1, aux_plain)
    with torch.no_grad():
        d.head.project.embed.weight.normal_()
    adv1, aux1 = d(x, y1)
    adv2, aux2 = d(x, y2)
    assert not torch.allclose(adv1, adv2) and torch.equal(aux1, aux2)
    assert torch.allclose(aux1, aux_plain)
    adv1.sum().backward()
    assert d.head.project.embed.weight.grad.abs().sum() > 0


def test_reinit_refreshes_spectral_norm_estimate():
    """init_weights on an already spectral-normalised net inits the original weights and
    re-runs the power iteration, so sigma(W) ~= 1 from the very first (eval) forward."""
    torch.manual_seed(0)
    cfg = small_cfg(arch="toy", d_norm="spectral", d_hidden=[64, 64], init="default")
    d = build_discriminator(cfg, points_info())
    init_weights(d, "normal")
    d.eval()  # eval: no power iteration in forward, the stored u, v are used as they are
    for m in (m for m in d.modules() if isinstance(m, nn.Linear)):
        assert m.parametrizations.weight.original.std().item() == pytest.approx(0.02, rel=0.3)
        assert torch.linalg.matrix_norm(m.weight.detach(), ord=2).item() == pytest.approx(
            1.0, rel=0.05
        )


def test_spectral_norm_generator_transposed():
    cfg = small_cfg(arch="dcgan", g_norm="spectral")
    g = build_generator(cfg, image_info(32))
    assert all(
        parametrize.is_parametrized(m, "weight")
        for m in g.modules()
        if isinstance(m, nn.ConvTranspose2d)
    )
    assert g(torch.randn(2, cfg.z_dim), None).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("norm", ["batch", "instance", "layer", "spectral", "none"])
def test_dcgan_norms_and_dropout(norm):
    cfg = small_cfg(arch="dcgan", g_norm=norm, d_norm=norm, dropout=0.3)
    info = image_info(28, channels=1)
    _, d, x, adv, aux = run_pair(cfg, info)
    check_outputs(cfg, info, x, adv, aux, d)
    assert has_batchnorm(d) == (norm == "batch")
    assert any(isinstance(m, nn.Dropout2d) for m in d.modules())
    first_conv = next(m for m in d.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.bias is not None or parametrize.is_parametrized(first_conv, "weight")


def test_has_batchnorm():
    info = image_info(32)
    assert has_batchnorm(build_generator(small_cfg(g_norm="batch"), info))
    assert not has_batchnorm(build_discriminator(small_cfg(d_norm="layer"), info))
    assert not has_batchnorm(build_discriminator(small_cfg(d_norm="instance"), info))
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(build_discriminator(small_cfg(), info))
    assert has_batchnorm(sync)


def test_error_unsupported_resolution():
    # Every size is in tests/unit/test_image_sizes.py; 36 and 100 end their halving at 9 and 25.
    with pytest.raises(ValueError, match=r"28, 32, 40, 48.*got 36"):
        build_generator(small_cfg(arch="dcgan"), image_info(36))
    with pytest.raises(ValueError, match="28, 32, 40, 48"):
        build_discriminator(small_cfg(arch="dcgan"), image_info(100))


@pytest.mark.parametrize("condition", ["concat", "project", "acgan"])
def test_error_conditional_model_on_unlabeled_data(condition):
    for build in (build_generator, build_discriminator):
        with pytest.raises(ValueError, match=r"model\.condition.*no labels"):
            build(small_cfg(condition=condition), image_info(32))


def test_error_arch_and_data_kind_mismatch():
    with pytest.raises(ValueError, match="toy"):
        build_generator(small_cfg(arch="toy"), image_info(32))
    with pytest.raises(ValueError, match="toy"):
        build_discriminator(small_cfg(arch="toy"), image_info(32))
    with pytest.raises(ValueError, match="dcgan"):
        build_generator(small_cfg(arch="dcgan"), points_info())


def test_error_instance_norm_on_mlp():
    with pytest.raises(ValueError, match=r"model\.d_norm.*instance"):
        build_discriminator(small_cfg(arch="mlp", d_norm="instance"), points_info())


def test_registry_names_and_unknown_arch():
    assert GENERATORS.names() == DISCRIMINATORS.names() == ["dcgan", "mlp", "toy"]
    cfg = small_cfg()
    cfg.arch = "dcgna"
    with pytest.raises(KeyError, match="dcgan"):
        build_generator(cfg, image_info(32))


def dense(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def test_lab000_mlp_parameter_counts():
    """Anime faces lab: G 100-128-256-512-1024-12288 with BN(eps 0.8) after layers 2-4,
    D 12288-512-256-1, no norm."""
    cfg = ModelConfig(
        arch="mlp",
        z_dim=100,
        g_hidden=[128, 256, 512, 1024],
        g_norm="batch",
        norm_eps=0.8,
        d_hidden=[512, 256],
        d_norm="none",
    )
    info = image_info(64, channels=3)
    g, d = build_generator(cfg, info), build_discriminator(cfg, info)
    bn = 2  # weight + bias per feature
    expected_g = (
        dense(100, 128)
        + dense(128, 256)
        + bn * 256
        + dense(256, 512)
        + bn * 512
        + dense(512, 1024)
        + bn * 1024
        + dense(1024, 12288)
    )
    expected_d = dense(12288, 512) + dense(512, 256) + dense(256, 1)
    assert count_parameters(g) == expected_g == 13_301_632
    assert count_parameters(d) == expected_d
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm1d)]
    assert [m.num_features for m in bns] == [256, 512, 1024]
    assert all(m.eps == 0.8 for m in bns)
    acts = [m for m in g.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 4 and all(a.negative_slope == 0.2 for a in acts)


def test_lab001_toy_parameter_counts():
    """Points lab: G z=10 -> 128-256-512 -> 2 (ReLU), D 2-128-256-128-1 (LeakyReLU)."""
    cfg = ModelConfig(
        arch="toy",
        z_dim=10,
        g_hidden=[128, 256, 512],
        g_norm="none",
        d_hidden=[128, 256, 128],
        d_norm="none",
    )
    info = points_info()
    g, d = build_generator(cfg, info), build_discriminator(cfg, info)
    assert count_parameters(g) == dense(10, 128) + dense(128, 256) + dense(256, 512) + dense(512, 2)
    assert count_parameters(d) == (
        dense(2, 128) + dense(128, 256) + dense(256, 128) + dense(128, 1)
    )
    assert sum(isinstance(m, nn.ReLU) for m in g.modules()) == 3


def test_count_parameters_trainable_only():
    d = build_discriminator(small_cfg(arch="toy", d_norm="none"), points_info())
    total = count_parameters(d)
    d.head.requires_grad_(False)
    assert count_parameters(d, trainable_only=True) == total - count_parameters(d.head)
