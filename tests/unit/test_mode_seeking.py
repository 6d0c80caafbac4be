"""Mode seeking (MSGAN): the regulariser's value, its gradient, the paired conditions, the batch
check, and a generator step that uses it."""

from __future__ import annotations

import pytest
import torch

from gandist.config import ConfigError, from_dict
from gandist.objectives.mode_seeking import (
    EPS,
    check_pair_batch,
    mode_seeking_loss,
    paired_conditions,
)


def test_value_is_the_mean_over_pairs_of_inverse_distance_ratios() -> None:
    z = torch.tensor([[0.0, 0.0], [2.0, 2.0], [0.0, 0.0], [1.0, -1.0]])
    fake = torch.tensor([[[0.0, 0.0]], [[1.0, 1.0]], [[3.0, 3.0]], [[3.0, 3.0]]])
    # pair 0: images 1 apart for noise 2 apart -> ratio 0.5; pair 1: identical images -> 1/EPS
    expected = (1 / (0.5 + EPS) + 1 / EPS) / 2
    assert mode_seeking_loss(fake, z).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="odd"):
        mode_seeking_loss(fake[:3], z[:3])


def test_gradient_pushes_the_images_of_a_pair_apart() -> None:
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    fake = torch.randn(8, 3, 5, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    before = (fake[0::2] - fake[1::2]).abs().mean().item()
    loss = mode_seeking_loss(fake, z)
    loss.backward()
    with torch.no_grad():
        moved = fake - 0.1 * fake.grad
    assert (moved[0::2] - moved[1::2]).abs().mean().item() > before
    assert mode_seeking_loss(moved, z).item() < loss.item()


def test_paired_conditions_copy_each_first_condition_and_leave_the_input() -> None:
    y = torch.tensor([3, 5, 7, 1])
    assert paired_conditions(y).tolist() == [3, 3, 7, 7]
    assert y.tolist() == [3, 5, 7, 1]
    multi = torch.eye(4)
    assert torch.equal(paired_conditions(multi), multi[[0, 0, 2, 2]])


def test_every_rank_needs_whole_pairs() -> None:
    check_pair_batch(1.0, 64, 2)
    check_pair_batch(0.0, 63, 1)  # off: any batch
    per_process = r"train.batch_size=24 over 8 process\(es\) is 3 per"
    with pytest.raises(ValueError, match=per_process) as err:
        check_pair_batch(1.0, 24, 8)
    assert "loss.mode_seeking" in str(err.value)
    with pytest.raises(ValueError, match="e.g. 16 or 24"):
        check_pair_batch(1.0, 18, 4)


def test_config_refuses_a_negative_weight() -> None:
    with pytest.raises(ConfigError, match=r"loss.mode_seeking.*>= 0"):
        from_dict({"loss": {"mode_seeking": -1.0}})
    assert from_dict({"loss": {"mode_seeking": 1.0}}).loss.mode_seeking == 1.0
