"""Seeds: every user seed works, every purpose gets its own stream, and the per-step noise of a
sample does not depend on how the global batch is split over ranks (property-based)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gandist.config import ConfigError, load_config
from gandist.seeds import SEED_MAX, check_seed, derive_seed
from gandist.training.noise import GlobalNoise, normal_rows, sample_noise, uniform_rows
from tests.recipe_driver import REPO

seeds = st.integers(min_value=0, max_value=SEED_MAX)
parts = st.lists(
    st.one_of(st.integers(min_value=0, max_value=2**70), st.text(max_size=8)), max_size=4
)


@given(seeds, parts)
def test_derived_seeds_fit_every_consumer(seed: int, purpose: list) -> None:
    s = derive_seed(seed, *purpose)
    assert 0 <= s < 2**63
    torch.Generator().manual_seed(s)  # what overflowed for large seeds before
    assert derive_seed(seed, *purpose) == s  # a pure function


@given(seeds, parts, parts)
def test_distinct_purposes_get_distinct_seeds(seed: int, a: list, b: list) -> None:
    if a != b:
        assert derive_seed(seed, *a) != derive_seed(seed, *b)


def test_encoding_is_unambiguous() -> None:
    assert derive_seed(0, "a", 12) != derive_seed(0, "a1", 2)
    assert derive_seed(0, 1) != derive_seed(0, "1")
    assert derive_seed(1, 0) != derive_seed(0, 1)


@pytest.mark.parametrize("bad", [-1, SEED_MAX + 1, 1.5, "3", True])
def test_out_of_range_seeds_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"train.seed.*\[0, 2\^64 - 1\]"):
        check_seed(bad)


def test_config_names_the_seed_key() -> None:
    cfg = REPO / "configs" / "toy2d_gan.yaml"
    with pytest.raises(ConfigError, match="train.seed"):
        load_config(cfg, ["train.seed=-5"])
    with pytest.raises(ConfigError, match="data.seed"):
        load_config(cfg, [f"data.seed={2**64}"])
    assert load_config(cfg, [f"train.seed={SEED_MAX}"]).train.seed == SEED_MAX


@settings(max_examples=60, deadline=None)
@given(
    seed=seeds,
    step=st.integers(min_value=0, max_value=2**40),
    per_rank=st.integers(min_value=1, max_value=9),
    world=st.integers(min_value=1, max_value=8),
    dim=st.integers(min_value=1, max_value=11),
)
def test_noise_rows_do_not_depend_on_the_world_size(
    seed: int, step: int, per_rank: int, world: int, dim: int
) -> None:
    batch = per_rank * world
    one = GlobalNoise(seed, batch, 0, 1)
    split = [GlobalNoise(seed, batch, r, world) for r in range(world)]
    assert torch.equal(
        torch.cat([n.normal(step, "g/z", dim) for n in split]), one.normal(step, "g/z", dim)
    )
    assert torch.equal(
        torch.cat([n.uniform(step, "d0/eps") for n in split]), one.uniform(step, "d0/eps")
    )


@settings(max_examples=40, deadline=None)
@given(lo=st.integers(0, 500), n=st.integers(1, 40), cut=st.integers(0, 40), dim=st.integers(1, 9))
def test_any_range_of_rows_is_the_same_rows(lo: int, n: int, cut: int, dim: int) -> None:
    cut = min(cut, n)
    whole = normal_rows(7, lo, lo + n, dim)
    parts_ = [normal_rows(7, lo, lo + cut, dim), normal_rows(7, lo + cut, lo + n, dim)]
    assert torch.equal(torch.cat(parts_), whole)
    u = uniform_rows(7, lo, lo + n)
    assert torch.equal(
        torch.cat([uniform_rows(7, lo, lo + cut), uniform_rows(7, lo + cut, lo + n)]), u
    )


def test_noise_is_standard_normal_and_uniform() -> None:
    z = normal_rows(derive_seed(3, "x"), 0, 20000, 5)
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    assert abs(torch.corrcoef(z.T)[0, 1]) < 0.03  # columns independent
    u = uniform_rows(derive_seed(3, "y"), 0, 20000)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    # each decile holds about a tenth
    counts = torch.histc(u, bins=10, min=0, max=1)
    assert counts.min() > 1800 and counts.max() < 2200
    # 3-sigma tail mass of a normal
    tail = (z.abs() > 3).double().mean().item()
    assert abs(tail - math.erfc(3 / math.sqrt(2))) < 0.002


@given(
    seed=seeds,
    step=st.integers(min_value=0, max_value=2**40),
    per_rank=st.integers(min_value=1, max_value=9),
    world=st.integers(min_value=1, max_value=8),
    dims=st.lists(st.integers(min_value=1, max_value=11), min_size=1, max_size=4),
    n_uniform=st.integers(min_value=0, max_value=6),
)
def test_fused_step_draws_do_not_depend_on_the_world_size(
    seed: int, step: int, per_rank: int, world: int, dims: list[int], n_uniform: int
) -> None:
    """The trainer's declared purposes, drawn in one pass per step, split over ranks like one
    draw per purpose does."""
    batch = per_rank * world
    normals = {f"d{i}/z": d for i, d in enumerate(dims)}
    uniforms = [f"d{i}/eps" for i in range(n_uniform)]
    one = GlobalNoise(seed, batch, 0, 1, normals, uniforms)
    split = [GlobalNoise(seed, batch, r, world, normals, uniforms) for r in range(world)]
    for purpose, d in normals.items():
        whole = one.normal(step, purpose, d)
        assert whole.shape == (batch, d) and whole.is_contiguous()
        assert torch.equal(torch.cat([n.normal(step, purpose, d) for n in split]), whole)
    for purpose in uniforms:
        whole = one.uniform(step, purpose)
        assert whole.shape == (batch,)
        assert torch.equal(torch.cat([n.uniform(step, purpose) for n in split]), whole)


def test_fused_draws_equal_single_draws_and_differ_by_purpose_and_step() -> None:
    """Declaring a purpose only changes how it is drawn (one pass per step), never its numbers:
    so turning a penalty or augmentation on leaves z as it was."""
    normals = {"d0/z": 6, "g/z": 6}
    n = GlobalNoise(0, 4000, 0, 1, normals, ["d0/eps", "d1/eps"])
    alone = GlobalNoise(0, 4000, 0, 1)
    a, b = n.normal(3, "d0/z", 6), n.normal(3, "g/z", 6)
    assert torch.equal(a, alone.normal(3, "d0/z", 6)) and torch.equal(b, alone.normal(3, "g/z", 6))
    assert torch.equal(GlobalNoise(0, 4000, 0, 1, {"d0/z": 6}).normal(3, "d0/z", 6), a)
    assert torch.equal(n.uniform(3, "d1/eps"), alone.uniform(3, "d1/eps"))
    assert not torch.equal(a, b)
    assert abs(torch.corrcoef(torch.stack([a[:, 0], b[:, 0]]))[0, 1]) < 0.05
    assert torch.equal(n.normal(3, "d0/z", 6), a)  # the same step again: the same numbers
    assert not torch.equal(n.normal(4, "d0/z", 6), a)
    z = torch.cat([n.normal(s, "g/z", 6) for s in range(5)])
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    u = n.uniform(3, "d1/eps")
    assert not torch.equal(u, n.uniform(3, "d0/eps"))
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.02
    # a run resumed mid-pass (first request at step 21) draws what the first run drew there
    first = GlobalNoise(0, 64, 0, 1, normals, ["d0/eps"])
    seen = {s: first.normal(s, "g/z", 6) for s in range(40)}
    resumed = GlobalNoise(0, 64, 0, 1, normals, ["d0/eps"])
    assert all(torch.equal(resumed.normal(s, "g/z", 6), seen[s]) for s in range(21, 40))
    # another width than declared is drawn alone (a purpose's rows depend on its width)
    assert n.normal(3, "g/z", 5).shape == (4000, 5)


def test_purposes_and_steps_draw_different_noise() -> None:
    n = GlobalNoise(0, 8, 0, 1)
    assert not torch.equal(n.normal(1, "g/z", 4), n.normal(2, "g/z", 4))
    assert not torch.equal(n.normal(1, "g/z", 4), n.normal(1, "d0/z", 4))
    assert not torch.equal(sample_noise(0, "grid", 0, 8, 4), sample_noise(1, "grid", 0, 8, 4))


@pytest.mark.parametrize("seed", [12345, SEED_MAX])
def test_a_run_trains_with_any_seed(tmp_path, seed: int) -> None:
    """`gandist train configs/toy2d_gan.yaml train.seed=12345` died at step 1 (overflow)."""
    from tests.recipe_driver import recipe_config, train

    cfg = recipe_config(
        REPO / "configs" / "toy2d_gan.yaml",
        tmp_path / "data",
        tmp_path,
        f"train.seed={seed}",
        "train.steps=2",
    )
    assert train(cfg).step == 2
