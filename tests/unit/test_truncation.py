"""The truncation trick (models/truncation.py) and where it is configured (eval.truncation,
`gandist sample --truncation`): scaled noise, no wrapper at psi = 1, errors that name the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from gandist.config import ConfigError, ModelConfig, load_config
from gandist.data.base import DatasetInfo
from gandist.models import build_generator
from gandist.models.truncation import Truncated, truncated

REPO = Path(__file__).resolve().parents[2]


POINTS = DatasetInfo(
    kind="points", channels=0, image_size=0, label_type="none", num_labels=0, source="t"
)


def toy_generator() -> torch.nn.Module:
    return build_generator(ModelConfig(arch="toy", z_dim=4, g_hidden=[16]), POINTS).eval()


def test_truncated_generator_scales_the_noise() -> None:
    G = toy_generator()
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    T = truncated(G, 0.6)
    assert isinstance(T, Truncated) and T.z_dim == G.z_dim and "psi=0.6" in repr(T)
    assert list(T.parameters()) == list(G.parameters())  # dtype/device lookups see G's
    with torch.no_grad():
        torch.testing.assert_close(T(z), G(0.6 * z))
        assert not torch.allclose(T(z), G(z))
        # psi -> 0: every sample is G's output at the mean noise
        out = truncated(G, 1e-6)(z)
        torch.testing.assert_close(out, G(torch.zeros(1, 4)).expand_as(out), atol=1e-4, rtol=0)


def test_no_truncation_is_the_generator_itself() -> None:
    G = toy_generator()
    assert truncated(G, 1.0) is G


@pytest.mark.parametrize("psi", [0.0, -0.5, 1.01])
def test_out_of_range_psi_is_refused(psi: float) -> None:
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        truncated(toy_generator(), psi)


def test_eval_truncation_key_is_checked() -> None:
    cfg = load_config(REPO / "configs/dcgan_digits.yaml", ["eval.truncation=0.7"])
    assert cfg.eval.truncation == 0.7
    assert load_config(REPO / "configs/dcgan_digits.yaml").eval.truncation == 1.0
    with pytest.raises(ConfigError, match=r"eval.truncation.*\(0, 1\]"):
        load_config(REPO / "configs/dcgan_digits.yaml", ["eval.truncation=0"])


def test_training_scorer_uses_eval_truncation() -> None:
    """The in-training scores (eval.json, eval/*) follow eval.truncation like `gandist eval`."""
    from accelerate import Accelerator

    from gandist.evaluation.toy_metrics import evaluate_modes
    from gandist.training.samples import Scorer

    G = toy_generator()
    # one mode at G's typical output, 3 std out = the median distance of G's samples from it
    with torch.no_grad():
        centre = G(torch.zeros(1, 4))
        spread = (G(torch.randn(4000, 4)) - centre).norm(dim=1).median().item()
    modes, std = centre.tolist(), spread / 3
    info = dataclasses.replace(POINTS, extras={"modes": modes, "std": std})
    acc = Accelerator(cpu=True)
    cfg = load_config(REPO / "configs/toy2d_ring8.yaml", ["eval.truncation=0.3"])
    got = Scorer(cfg, info, acc)(G, print)
    n, seed = cfg.eval.n_samples, cfg.train.seed
    assert got == evaluate_modes(Truncated(G, 0.3), info.extras, n, seed, acc.device)
    plain = evaluate_modes(G, info.extras, n, seed, acc.device)
    assert plain is not None and got is not None
    assert plain["high_quality_share"] < 0.6 < 0.9 < got["high_quality_share"]  # precision up
