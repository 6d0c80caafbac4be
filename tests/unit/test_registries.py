"""Extension points are one place: registering a model or a loss is all it takes for a config to
name it and for the trainer to train with it (no choice list to edit in config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.nn.functional as F

from gandist.config import ConfigError, load_config
from gandist.models import DISCRIMINATORS, GENERATORS, build_toy_discriminator, build_toy_generator
from gandist.objectives.losses import LOSSES, AdversarialLoss
from gandist.objectives.penalties import PENALTIES, Penalty, r1_penalty
from tests.recipe_driver import REPO, recipe_config, train

TOY = REPO / "configs" / "toy2d_gan.yaml"


@pytest.fixture
def scratch_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test vanish after it."""
    for registry in (LOSSES, GENERATORS, DISCRIMINATORS, PENALTIES):
        monkeypatch.setattr(registry, "_items", dict(registry._items))


def test_unregistered_names_are_refused_with_the_registered_ones() -> None:
    with pytest.raises(ConfigError, match=r"loss.adversarial: 'softhinge' is not one of .*hinge"):
        load_config(TOY, ["loss.adversarial=softhinge"])
    with pytest.raises(ConfigError, match=r"model.arch: 'tiny' is not one of .*toy"):
        load_config(TOY, ["model.arch=tiny"])


def test_one_registration_makes_a_loss_and_a_model_trainable(
    scratch_registries: None, tmp_path: Path
) -> None:
    LOSSES.register("softhinge")(
        AdversarialLoss(
            "softhinge",
            lambda real, fake: F.softplus(1 - real).mean() + F.softplus(1 + fake).mean(),
            lambda fake: -fake.mean(),
        )
    )
    GENERATORS.register("tiny")(build_toy_generator)
    DISCRIMINATORS.register("tiny")(build_toy_discriminator)
    cfg = recipe_config(
        TOY,
        tmp_path / "data",
        tmp_path,
        "loss.adversarial=softhinge",
        "model.arch=tiny",
        "train.steps=2",
    )
    assert (cfg.loss.adversarial, cfg.model.arch) == ("softhinge", "tiny")
    assert train(cfg).step == 2


def test_one_registration_makes_a_penalty_trainable(
    scratch_registries: None, tmp_path: Path
) -> None:
    """A penalty is a loss term (and/or an after-step action): the D step needs no edit."""
    calls = []

    def fake_r1(D, real, fake, eps, y, lc, scaler):  # noqa: ANN001
        calls.append(real.shape[0])
        r1, _ = r1_penalty(D, real, y, scaler=scaler)
        return 0.1 * r1, {"d/fake_r1": r1.detach()}

    PENALTIES.register("fake_r1")(Penalty(term=fake_r1))
    cfg = recipe_config(TOY, tmp_path / "data", tmp_path, "loss.penalty=fake_r1", "train.steps=2")
    assert train(cfg).step == 2 and len(calls) == 2
