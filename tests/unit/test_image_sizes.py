"""DCGAN at every supported square size (16..256 px whose halving chain ends at 3-7 px): G and D
shapes for each, errors that list the sizes (model build and config load), and a real training
step at a few of the new sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gandist.config import DCGAN_IMAGE_SIZES, ConfigError, ModelConfig, dcgan_layout, load_config
from gandist.data.base import DatasetInfo
from gandist.models import build_discriminator, build_generator

REPO = Path(__file__).resolve().parents[2]
ISSUE_SIZES = (16, 24, 28, 32, 48, 56, 64, 96, 112, 128, 192, 256)


def info(size: int, channels: int = 3, label_type: str = "none") -> DatasetInfo:
    return DatasetInfo(
        kind="image",
        channels=channels,
        image_size=size,
        label_type=label_type,
        num_labels=0 if label_type == "none" else 4,
        source="test",
    )


def test_supported_sizes_follow_the_halving_rule() -> None:
    assert set(ISSUE_SIZES) <= set(DCGAN_IMAGE_SIZES)
    for size in range(1, 600):
        side, blocks = size, 0
        while side > 7 and side % 2 == 0:
            side, blocks = side // 2, blocks + 1
        ok = 16 <= size <= 256 and 3 <= side <= 7
        assert (size in DCGAN_IMAGE_SIZES) == ok, size
        assert dcgan_layout(size) == ((blocks, side) if ok else None), size
    # The lab layouts are unchanged: 28 px = 2 blocks from 7 px, 64 px = 4 blocks from 4 px.
    assert dcgan_layout(28) == (2, 7) and dcgan_layout(32) == (3, 4)
    assert dcgan_layout(64) == (4, 4) and dcgan_layout(128) == (5, 4)


@pytest.mark.parametrize("size", DCGAN_IMAGE_SIZES)
def test_generator_and_discriminator_shapes(size: int) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="dcgan", g_width=4, d_width=4, z_dim=8, kernel=4)
    g, d = build_generator(cfg, info(size)), build_discriminator(cfg, info(size))
    x = g(torch.randn(2, 8))
    assert x.shape == (2, 3, size, size)
    adv, aux = d(x)
    assert adv.shape == (2,) and aux is None and torch.isfinite(adv).all()


@pytest.mark.parametrize("size", [20, 24, 48, 96, 224])
@pytest.mark.parametrize(("kernel", "upsample"), [(5, "transposed"), (4, "upsample_conv")])
def test_other_kernels_and_upsampling_at_new_sizes(size: int, kernel: int, upsample: str) -> None:
    cfg = ModelConfig(
        arch="dcgan",
        g_width=4,
        d_width=4,
        z_dim=8,
        kernel=kernel,
        g_upsample=upsample,
        condition="project",
        embed_dim=4,
    )
    g = build_generator(cfg, info(size, 1, "class"))
    d = build_discriminator(cfg, info(size, 1, "class"))
    y = torch.tensor([0, 3])
    x = g(torch.randn(2, 8), y)
    assert x.shape == (2, 1, size, size)
    assert d(x, y)[0].shape == (2,)


@pytest.mark.parametrize("size", [12, 36, 100, 257, 512])
def test_unsupported_size_lists_the_supported_ones(size: int) -> None:
    listed = ", ".join(map(str, DCGAN_IMAGE_SIZES))
    for build in (build_generator, build_discriminator):
        with pytest.raises(ValueError, match=rf"{listed}; got {size} \(set data.image_size"):
            build(ModelConfig(arch="dcgan"), info(size))


def test_config_load_rejects_an_unsupported_dcgan_size() -> None:
    recipe = REPO / "configs" / "dcgan_digits.yaml"
    with pytest.raises(ConfigError, match=r"dcgan_digits.yaml.*data\.image_size.*16, 20, 24"):
        load_config(recipe, ["data.image_size=36"])
    assert load_config(recipe, ["data.image_size=48"]).data.image_size == 48
    # Only DCGAN's layout constrains the size; an MLP takes any.
    mlp = load_config(REPO / "configs" / "gan_mlp_digits.yaml", ["data.image_size=36"])
    assert mlp.data.image_size == 36


@pytest.mark.parametrize("size", [24, 48, 20])
def test_a_real_training_step_at_a_new_size(tmp_path: Path, size: int) -> None:
    from gandist.training.trainer import Trainer

    cfg = load_config(
        REPO / "configs" / "dcgan_digits.yaml",
        [
            f"data.image_size={size}",
            "data.shards=off",
            "data.workers=0",
            "tracking.wandb=disabled",
            f"train.output_dir={tmp_path}",
            "train.batch_size=8",
            "model.g_width=4",
            "model.d_width=4",
            "model.z_dim=8",
        ],
    )
    t = Trainer(cfg)
    x, _ = t.inputs.batch()
    assert x.shape == (8, 1, size, size)
    before = [p.detach().clone() for p in t.parts.G_plain.parameters()]
    metrics = t.train_step()
    assert torch.isfinite(metrics["d/loss"]) and torch.isfinite(metrics["g/loss"])
    after = list(t.parts.G_plain.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert t.parts.G_plain(torch.randn(2, 8)).shape == (2, 1, size, size)
