"""Toy mode metrics distinguish full coverage, collapse and off-manifold samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gandist.data.sources.toy2d import ring8, ring8_modes
from gandist.evaluation.toy_metrics import mode_metrics

MODES = torch.tensor(np.asarray(ring8_modes()), dtype=torch.float64)


def test_true_samples_cover_every_mode() -> None:
    pts = torch.tensor(ring8(4000, np.random.default_rng(0)))
    m = mode_metrics(pts, MODES, 0.02)
    # P(|x - mode| <= 3 std) for a 2-D Gaussian is 1 - exp(-4.5) = 0.989
    assert m["modes_captured"] == 8 and abs(m["high_quality_share"] - 0.989) < 0.01
    assert m["reverse_kl"] < 0.01


def test_collapse_to_one_mode() -> None:
    pts = MODES[0] + 0.01 * torch.randn(1000, 2, dtype=torch.float64)
    m = mode_metrics(pts, MODES, 0.02)
    assert m["modes_captured"] == 1
    assert m["reverse_kl"] == pytest.approx(math.log(8))


def test_points_between_modes_are_not_high_quality() -> None:
    m = mode_metrics(torch.zeros(500, 2), MODES, 0.02)
    assert m["high_quality_share"] == 0 and m["modes_captured"] == 0
