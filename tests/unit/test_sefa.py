"""SeFa: the closed-form directions and the layer they are read from."""

from __future__ import annotations

import pytest
import torch

from gandist.config import ModelConfig
from gandist.data.base import DatasetInfo
from gandist.evaluation.sefa import latent_weight, sefa_directions, traverse
from gandist.models import build_generator

IMG = DatasetInfo(kind="image", channels=1, image_size=32, label_type="class", num_labels=10)


def test_directions_are_the_top_right_singular_vectors() -> None:
    A = torch.diag(torch.tensor([1.0, 5.0, 3.0], dtype=torch.float64))
    dirs, vals = sefa_directions(A, 2)
    assert torch.allclose(dirs.abs(), torch.tensor([[0, 1.0, 0], [0, 0, 1.0]], dtype=torch.float64))
    assert torch.allclose(vals, torch.tensor([25.0, 9.0], dtype=torch.float64))
    B = torch.randn(40, 10, dtype=torch.float64)
    d, _ = sefa_directions(B, 10)
    assert torch.allclose(d @ d.T, torch.eye(10, dtype=torch.float64), atol=1e-10)
    u, s, vh = torch.linalg.svd(B)
    assert torch.allclose((d[0] @ vh[0]).abs(), torch.tensor(1.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="--k must be in 1..10"):
        sefa_directions(B, 11)


@pytest.mark.parametrize(
    "arch,condition", [("dcgan", "none"), ("dcgan", "concat"), ("mlp", "concat"), ("mlp", "none")]
)
def test_latent_weight_is_the_first_layer_on_z(arch: str, condition: str) -> None:
    cfg = ModelConfig(
        arch=arch, z_dim=16, g_width=8, g_hidden=[32], condition=condition, embed_dim=4
    )
    G = build_generator(cfg, IMG)
    A = latent_weight(G)
    assert A.shape[1] == 16
    first = (
        G.fc
        if arch == "dcgan"
        else next(m for m in G.hidden.modules() if isinstance(m, torch.nn.Linear))
    )
    assert torch.equal(A, first.weight.detach()[:, :16].double())


def test_traversal_at_zero_is_the_plain_sample() -> None:
    G = build_generator(ModelConfig(arch="dcgan", z_dim=16, g_width=8), IMG).eval()
    z = torch.randn(3, 16)
    d, _ = sefa_directions(latent_weight(G), 1)
    frames = traverse(G, d[0], z, None, distance=2.0, steps=5)
    assert frames.shape == (5, 3, 1, 32, 32)
    assert torch.allclose(frames[2], G(z, None), atol=1e-6)
    assert not torch.allclose(frames[0], frames[4])
