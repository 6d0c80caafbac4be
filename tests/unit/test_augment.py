"""DiffAugment (gandist/objectives/augment.py): each op on constructed images, gradients through
every op, identity when off, and per-sample parameters that do not depend on the rank split."""

from __future__ import annotations

import pytest
import torch

from gandist.objectives.augment import (
    OPS,
    augment,
    aux_policy,
    brightness,
    contrast,
    cut,
    draw_params,
    param_names,
    parse_policy,
    random_cutout,
    random_translation,
    saturation,
    translate,
)
from gandist.training.noise import GlobalNoise

ALL = ("translation", "cutout", "color")


def images(b: int = 4, c: int = 3, s: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, s, s, generator=g, dtype=torch.float64) * 2 - 1


def params_for(policy, b: int, seed: int = 0, rank: int = 0, world: int = 1, purpose="d0/aug"):
    noise = GlobalNoise(seed, b, rank, world)
    return draw_params(policy, lambda name: noise.uniform(3, f"{purpose}/{name}").double())


# ---------------------------------------------------------------- the policy string


def test_policy_parsing() -> None:
    assert parse_policy("") == ()
    assert parse_policy(" translation, cutout ,color") == ALL
    assert parse_policy("color,translation") == ("color", "translation")  # order kept


@pytest.mark.parametrize(
    ("text", "needle"), [("colour", "did you mean 'color'"), ("flip", "known")]
)
def test_unknown_op_names_the_key_and_the_ops(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match="train.augment") as err:
        parse_policy(text)
    assert needle in str(err.value) and "translation, cutout, color" in str(err.value)


def test_repeated_op_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_policy("color,color")


def test_config_validates_the_policy() -> None:
    from gandist.config import ConfigError, from_dict

    assert from_dict({"train": {"augment": "translation,color"}}).train.augment
    with pytest.raises(ConfigError, match="train.augment.*did you mean 'cutout'"):
        from_dict({"train": {"augment": "cutuot"}})


def test_aux_view_is_a_subset_in_the_policys_order() -> None:
    """train.augment_aux: "same" or the same ops -> None (one view, no second forward); a
    subset keeps train.augment's order (color before translation changes the image)."""
    assert aux_policy("same", ALL) is None
    assert aux_policy(" same ", ()) is None
    assert aux_policy("cutout,translation,color", ALL) is None
    assert aux_policy("", ALL) == ()
    assert aux_policy("cutout,translation", ("color", "translation", "cutout")) == (
        "translation",
        "cutout",
    )


@pytest.mark.parametrize(
    ("text", "policy", "needle"),
    [
        ("color", ("translation", "cutout"), r"color not in train.augment \(translation,cutout\)"),
        ("translation", (), r"translation not in train.augment \(empty\)"),
        ("cutuot", ALL, "train.augment_aux: unknown augmentation 'cutuot'; did you mean 'cutout'"),
    ],
)
def test_aux_view_outside_the_policy_names_both_keys(text, policy, needle) -> None:
    with pytest.raises(ValueError, match=needle) as err:
        aux_policy(text, policy)
    assert "train.augment_aux" in str(err.value)


def test_config_validates_the_aux_view() -> None:
    from gandist.config import ConfigError, from_dict

    acgan = {"model": {"condition": "acgan"}}
    cfg = from_dict({**acgan, "train": {"augment": "translation,cutout", "augment_aux": ""}})
    assert cfg.train.augment_aux == ""
    assert from_dict({}).train.augment_aux == "same"  # the default: one view
    with pytest.raises(ConfigError, match="train.augment_aux.*color not in train.augment"):
        from_dict({**acgan, "train": {"augment": "translation", "augment_aux": "color"}})
    with pytest.raises(ConfigError, match="train.augment_aux.*model.condition: acgan"):
        from_dict(
            {
                "model": {"condition": "concat"},
                "train": {"augment": "translation", "augment_aux": ""},
            }
        )
    # the same ops as train.augment is one view: fine for any condition
    from_dict({"train": {"augment": "translation", "augment_aux": "translation"}})


# ---------------------------------------------------------------- off, shapes, gradients


def test_off_is_the_identity() -> None:
    x = images()
    assert augment(x, (), None) is x
    assert augment(x, parse_policy(""), {}) is x


def test_parameters_are_one_uniform_per_sample_per_name() -> None:
    p = params_for(ALL, 8)
    assert sorted(p) == sorted(param_names(ALL))
    assert len(p) == sum(len(v) for v in OPS.values())
    assert all(v.shape == (8,) and ((v >= 0) & (v < 1)).all() for v in p.values())
    # independent streams: no two parameters share draws
    values = [tuple(v.tolist()) for v in p.values()]
    assert len(set(values)) == len(values)


@pytest.mark.parametrize("policy", [("translation",), ("cutout",), ("color",), ALL])
def test_every_op_is_differentiable(policy) -> None:
    x = images().requires_grad_(True)
    out = augment(x, policy, params_for(policy, 4))
    assert out.shape == x.shape and out.dtype == x.dtype
    w = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * w).sum(), x)
    assert grad.abs().sum() > 0
    # and the gradient is the true one: the ops are linear in x given their parameters
    # (cutout, translation) or affine (color), so gradcheck in float64
    p = params_for(policy, 2)
    torch.autograd.gradcheck(lambda t: augment(t, policy, p), images(2, 2, 8).requires_grad_())


def test_points_are_refused() -> None:
    with pytest.raises(ValueError, match="images"):
        augment(torch.zeros(4, 2), ("color",), params_for(("color",), 4))


# ---------------------------------------------------------------- each op on constructed images


def test_translate_moves_content_and_fills_zero() -> None:
    x = torch.zeros(2, 1, 5, 5)
    x[:, 0, 2, 2] = 1.0  # a dot in the centre
    out = translate(x, torch.tensor([1, -2]), torch.tensor([0, 2]))
    assert out[0, 0, 3, 2] == 1 and out[0].sum() == 1  # down by one
    assert out[1, 0, 0, 4] == 1 and out[1].sum() == 1  # up two, right two
    ones = torch.ones(1, 1, 4, 4)
    shifted = translate(ones, torch.tensor([1]), torch.tensor([-1]))
    assert shifted[0, 0, 0].sum() == 0 and shifted[0, 0, :, 3].sum() == 0  # vacated: zero
    assert shifted.sum() == 9
    assert torch.equal(translate(x, torch.zeros(2, dtype=torch.long), torch.zeros(2).long()), x)


def test_random_translation_range_is_an_eighth_of_the_side() -> None:
    x = torch.zeros(3, 1, 16, 16)
    x[:, 0, 8, 8] = 1.0
    u = torch.tensor([0.0, 0.5, 0.999999])  # extremes and the middle of 5 shifts (-2..2)
    out = random_translation(x, u, u)
    where = [tuple(torch.nonzero(o[0]).tolist()[0]) for o in out]
    assert where == [(6, 6), (8, 8), (10, 10)]
    # a draw rounded up to 1.0 (float32) still gives the largest shift, never more
    assert torch.equal(
        random_translation(x, torch.ones(3), torch.ones(3)), out[2:].expand(3, -1, -1, -1)
    )


def test_cut_zeroes_a_square_clipped_at_the_edges() -> None:
    x = torch.ones(2, 3, 8, 8)
    out = cut(x, torch.tensor([2, -2]), torch.tensor([1, 6]), 4, 4)
    assert out[0, :, 2:6, 1:5].abs().sum() == 0 and out[0].sum() == 3 * (64 - 16)
    assert out[1, :, 0:2, 6:8].abs().sum() == 0 and out[1].sum() == 3 * (64 - 4)  # overhang


def test_random_cutout_is_half_the_side() -> None:
    x = torch.ones(1, 1, 16, 16)
    out = random_cutout(x, torch.tensor([0.5]), torch.tensor([0.5]))
    assert out.sum() == 256 - 64  # an 8 x 8 square fully inside
    assert torch.equal(out[0, 0, 4:12, 4:12], torch.zeros(8, 8))  # centred at (8, 8)


def test_color_ops_on_constructed_images() -> None:
    x = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]]).view(2, 3, 1, 1).expand(2, 3, 2, 2)
    assert torch.allclose(
        brightness(x, torch.tensor([0.25, -0.5])) - x,
        torch.tensor([0.25, -0.5]).view(2, 1, 1, 1).expand_as(x),
    )
    grey = saturation(x, torch.zeros(2))  # factor 0: every pixel its channel mean
    assert torch.allclose(grey[0], torch.zeros(3, 2, 2)) and torch.allclose(grey[1], x[1])
    doubled = saturation(x, torch.full((2,), 2.0))
    assert torch.allclose(doubled[0, :, 0, 0], torch.tensor([2.0, 0.0, -2.0]))
    flat = contrast(x, torch.zeros(2))  # factor 0: every value the image mean
    assert torch.allclose(flat, x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x))
    assert torch.allclose(contrast(x, torch.ones(2)), x)


# ---------------------------------------------------------------- ranks and resume


@pytest.mark.parametrize("world", [2, 4])
def test_rank_slices_augment_each_sample_alike(world: int) -> None:
    """Rank r draws only its rows and augments its slice; stacked, the slices equal the
    1-process batch augmented at once."""
    b = 8
    x = images(b)
    whole = augment(x, ALL, params_for(ALL, b))
    per = b // world
    parts = [
        augment(x[r * per : (r + 1) * per], ALL, params_for(ALL, b, rank=r, world=world))
        for r in range(world)
    ]
    assert torch.equal(torch.cat(parts), whole)


def test_draws_depend_on_seed_step_and_purpose_only() -> None:
    a, b = params_for(ALL, 4), params_for(ALL, 4)  # e.g. a resumed run drawing step 3 again
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = params_for(ALL, 4, purpose="d0/aug/fake")
    assert not torch.equal(a["color/brightness"], other["color/brightness"])


def test_point_data_is_refused_at_start_up() -> None:
    from gandist.objectives.augment import check_data

    check_data(ALL, "image")
    check_data((), "points")
    with pytest.raises(ValueError, match='train.augment.*points.*train.augment: ""'):
        check_data(ALL, "points")
