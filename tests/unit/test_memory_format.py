"""train.channels_last: convolutional G and D and their batches use NHWC; MLPs are untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gandist.config import load_config
from gandist.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]


def trainer(tmp_path: Path, config: str, *overrides: str) -> Trainer:
    cfg = load_config(
        REPO / "configs" / config,
        [
            "data.shards=off",
            "data.workers=0",
            "tracking.wandb=disabled",
            f"train.output_dir={tmp_path}",
            "model.g_width=8",
            "model.d_width=8",
            *overrides,
        ],
    )
    return Trainer(cfg)


def conv_weights(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in module.parameters() if p.dim() == 4]


@pytest.mark.parametrize("on", [True, False])
def test_channels_last_switch(tmp_path: Path, on: bool) -> None:
    t = trainer(
        tmp_path, "dcgan_digits.yaml", "data.channels=3", f"train.channels_last={str(on).lower()}"
    )
    weights = conv_weights(t.parts.G_plain) + conv_weights(t.parts.D_plain)
    assert weights
    nhwc = [w.is_contiguous(memory_format=torch.channels_last) for w in weights]
    nchw = [w.is_contiguous() for w in weights]  # (some shapes are both, e.g. 1 input channel)
    assert (all(nhwc) and not all(nchw)) if on else (all(nchw) and not all(nhwc))
    x, _ = t.inputs.batch()
    assert x.is_contiguous(memory_format=torch.channels_last) == on
    metrics = t.train_step()  # a full D and G update in that layout
    assert torch.isfinite(metrics["d/loss"]) and torch.isfinite(metrics["g/loss"])
