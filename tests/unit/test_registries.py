"""Extension points are one place: registering a model or a loss is all it takes for a config to
name it and for the trainer to train with it (no choice list to edit in config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.nn.functional as F

from gandist.config import ConfigError, load_config
from gandist.models import DISCRIMINATORS, GENERATORS, build_toy_discriminator, build_toy_generator
from gandist.objectives.losses import LOSSES, AdversarialLoss
from tests.recipe_driver import REPO, recipe_config, train

TOY = REPO / "configs" / "toy2d_gan.yaml"


@pytest.fixture
def scratch_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test vanish after it."""
    for registry in (LOSSES, GENERATORS, DISCRIMINATORS):
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
