"""G's label input: a class's vector starts at unit expected norm (the energy of a one-hot
label), far below z's, whatever embed_dim is. PyTorch's N(0, 1) embedding rows (norm
sqrt(embed_dim)) made the digits ACGAN ignore z and draw one image per label
(docs/experiments.md, "ACGAN on digits: one image per label")."""

from __future__ import annotations

import pytest
import torch

from gandist.config import ModelConfig
from gandist.data.base import DatasetInfo
from gandist.models import build_discriminator, build_generator

NUM_CLASSES = 10


def info(label_type: str = "class") -> DatasetInfo:
    return DatasetInfo(
        kind="image",
        channels=1,
        image_size=32,
        label_type=label_type,
        num_labels=NUM_CLASSES,
        source="test",
    )


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
@pytest.mark.parametrize("init", ["normal", "default"])
@pytest.mark.parametrize("embed_dim", [10, 50, 200])
@pytest.mark.parametrize("condition", ["concat", "project", "acgan"])
def test_generator_class_vectors_start_at_unit_norm(
    arch: str, init: str, embed_dim: int, condition: str
) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        arch=arch,
        g_width=8,
        d_width=8,
        z_dim=100,
        embed_dim=embed_dim,
        condition=condition,
        g_hidden=[32],
        d_hidden=[32],
        init=init,
    )
    G = build_generator(cfg, info())
    rows = G.label.embed.weight.detach()
    assert rows.shape == (NUM_CLASSES, embed_dim)
    norms = rows.norm(dim=1)
    assert 0.75 < float(norms.mean()) < 1.25  # not sqrt(embed_dim)
    # z (norm about sqrt(z_dim) = 10) carries most of G's input energy
    assert float(norms.max()) < 0.25 * cfg.z_dim**0.5


def test_discriminator_encoders_and_label_sets_keep_pytorch_init() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="dcgan", g_width=8, d_width=8, embed_dim=50, condition="project")
    D = build_discriminator(cfg, info())
    # the projection embedding is D's: untouched (PyTorch's N(0, 1) rows)
    assert float(D.head.project.embed.weight.detach().std()) == pytest.approx(1.0, abs=0.1)
    # multi-hot label sets go through a bias-free Linear with PyTorch's init, as the labs had
    G = build_generator(
        ModelConfig(arch="dcgan", g_width=8, embed_dim=200, condition="concat"), info("multi")
    )
    bound = NUM_CLASSES**-0.5  # kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert float(G.label.embed.weight.detach().abs().max()) <= bound


def test_generator_uses_z_at_init() -> None:
    """At init, samples of one class vary with z about as much as samples across classes do:
    the label is an input next to z, not a lookup table in place of it."""
    torch.manual_seed(0)
    cfg = ModelConfig(arch="dcgan", g_width=16, embed_dim=50, condition="acgan")
    G = build_generator(cfg, info()).eval()
    z = torch.randn(500, cfg.z_dim)
    y = torch.arange(500) % NUM_CLASSES
    with torch.no_grad():
        h = G.fc(torch.cat([z, G.label(y)], dim=1))
    within = sum(h[y == k].var(dim=0).mean() for k in range(NUM_CLASSES)) / NUM_CLASSES
    assert float(within / h.var(dim=0).mean()) > 0.9  # N(0, 1) rows: 0.70


@pytest.mark.parametrize("condition", ["concat", "project", "acgan"])
def test_a_conditional_model_on_one_class_is_refused(condition: str) -> None:
    """A folder holding one subfolder (`images/` beside a labels file, the usual multi-label
    layout) is one class: the conditional recipes trained on it without a word, the label
    carrying nothing (d/loss_aux 0 at every step)."""
    from gandist.models.conditioning import check_condition

    one = DatasetInfo(
        kind="image", channels=3, image_size=32, label_type="class", num_labels=1,
        label_names=("img",), source="folder:scenes",
    )  # fmt: skip
    with pytest.raises(
        ValueError, match=r"needs at least 2 classes.*'folder:scenes' has one \('img'\).*--labels"
    ):
        check_condition(ModelConfig(condition=condition), one)
    check_condition(ModelConfig(condition="none"), one)
