"""Config loading: every shipped recipe validates; each kind of mistake gets a precise error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gandist.config import (
    Config,
    ConfigError,
    dump_yaml,
    from_dict,
    load_config,
    parse_override,
)

CONFIGS = sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml"))
REQUIRED = {
    "dcgan_digits",
    "gan_mlp_digits",
    "wgan_digits",
    "wgan_gp_digits",
    "lsgan_digits",
    "cgan_digits",
    "acgan_digits",
    "cdcgan_shapes",
    "toy2d_gan",
    "toy2d_wgan",
    "toy2d_wgan_gp",
}


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_required_recipes_ship() -> None:
    assert {p.stem for p in CONFIGS} >= REQUIRED


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_recipe_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name == path.stem
    # the resolved dump loads back to the same config
    again = from_dict(yaml.safe_load(dump_yaml(cfg)))
    assert again == cfg


def test_recipe_hyperparameters_match_the_labs() -> None:
    wgan = load_config(CONFIGS[0].parent / "wgan_digits.yaml")
    assert (wgan.optim.d.name, wgan.optim.d.lr, wgan.loss.clip_value, wgan.train.n_critic) == (
        "rmsprop",
        5e-5,
        0.01,
        5,
    )
    gp = load_config(CONFIGS[0].parent / "wgan_gp_digits.yaml")
    assert (
        gp.loss.gp_weight == 10.0 and gp.optim.d.betas == [0.0, 0.9] and gp.model.d_norm != "batch"
    )


def test_unknown_key_names_file_and_suggests(tmp_path: Path) -> None:
    p = write(tmp_path, "train:\n  n_crtic: 5\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "train.n_crtic" in msg and "train.n_critic" in msg


def test_unknown_section_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'optim'"):
        load_config(write(tmp_path, "optimizer:\n  g: {lr: 1.0e-4}\n"))


def test_bad_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.batch_size: expected an integer"):
        load_config(write(tmp_path, "train:\n  batch_size: sixty-four\n"))
    with pytest.raises(ConfigError, match=r"optim\.g\.betas: expected a list"):
        load_config(write(tmp_path, "optim:\n  g: {betas: 0.5}\n"))
    with pytest.raises(ConfigError, match=r"train\.ema: expected true/false"):
        load_config(write(tmp_path, "train:\n  ema: 1\n"))


def test_bad_enum_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "loss:\n  adversarial: wasserstien\n"))
    assert "loss.adversarial" in str(e.value) and "did you mean 'wasserstein'" in str(e.value)


def test_gradient_penalty_with_batchnorm_critic_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a critic without BatchNorm"):
        load_config(write(tmp_path, "loss: {penalty: gp}\nmodel: {d_norm: batch}\n"))
    with pytest.raises(ConfigError, match="model.d_norm"):
        load_config(write(tmp_path, "loss: {penalty: r1}\nmodel: {d_norm: batch}\n"))


def test_sum_pooling_needs_a_conv_critic(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.d_pool.*model\.arch=mlp"):
        load_config(write(tmp_path, "model: {arch: mlp, d_pool: sum}\n"))
    assert load_config(write(tmp_path, "model: {arch: dcgan, d_pool: sum}\n")).model.d_pool == "sum"


@pytest.mark.parametrize(
    ("model", "why"),
    [
        ("{arch: mlp, condition: concat}", "arch=mlp"),
        ("{condition: none}", "condition=none"),
        ("{condition: project, g_norm: spectral}", "g_norm=spectral"),
    ],
)
def test_conditional_norm_needs_a_conditional_dcgan_with_a_norm(
    tmp_path: Path, model: str, why: str
) -> None:
    text = f"model: {model[:-1]}, g_cond_norm: true}}\ndata: {{source: digits}}\n"
    with pytest.raises(ConfigError, match=rf"model\.g_cond_norm.*{why}"):
        load_config(write(tmp_path, text))


def test_overrides_apply_and_keep_numbers(tmp_path: Path) -> None:
    p = CONFIGS[0].parent / "wgan_gp_digits.yaml"
    cfg = load_config(
        p,
        [
            "optim.d.lr=1e-4",
            "train.n_critic=3",
            "model.d_norm=instance",
            "optim.g.betas=[0.5, 0.99]",
            "data.source=shapes",
        ],
    )
    assert cfg.optim.d.lr == 1e-4 and isinstance(cfg.optim.d.lr, float)
    assert cfg.train.n_critic == 3 and cfg.model.d_norm == "instance"
    assert cfg.optim.g.betas == [0.5, 0.99] and cfg.data.source == "shapes"


def test_override_errors_name_the_override(tmp_path: Path) -> None:
    p = CONFIGS[0].parent / "dcgan_digits.yaml"
    with pytest.raises(
        ConfigError, match=r"with overrides train\.stpes=3.*did you mean 'train\.steps'"
    ):
        load_config(p, ["train.stpes=3"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(p, ["train.steps"])
    with pytest.raises(ConfigError, match="must be > 0"):
        load_config(p, ["train.steps=0"])


def test_parse_override_nesting() -> None:
    assert parse_override("a.b.c=1e-3") == {"a": {"b": {"c": 1e-3}}}
    assert parse_override("train.resume=auto") == {"train": {"resume": "auto"}}


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train: [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_defaults_are_a_valid_config() -> None:
    assert from_dict({}) == Config()


def test_yaml_booleans_map_onto_choices(tmp_path: Path) -> None:
    """`no` and `off` are booleans in YAML 1.1; as choice values they mean the words."""
    cfg = load_config(write(tmp_path, "train:\n  precision: no\ndata:\n  shards: off\n"))
    assert cfg.train.precision == "no" and cfg.data.shards == "off"
    p = CONFIGS[0].parent / "dcgan_digits.yaml"
    cfg = load_config(p, ["train.precision=no", "data.shards=off"])
    assert cfg.train.precision == "no" and cfg.data.shards == "off"
    with pytest.raises(ConfigError, match="loss.adversarial"):
        load_config(p, ["loss.adversarial=off"])  # no such choice: still an error


def test_a_yaml_boolean_word_for_a_string_says_how_to_quote_it() -> None:
    """`train.run_name=no` reaches the config as False (YAML 1.1); the error names the quoting,
    and the quoted word is taken as written."""
    p = CONFIGS[0].parent / "dcgan_digits.yaml"
    with pytest.raises(ConfigError, match=r"train\.run_name: expected a string.*quote the word"):
        load_config(p, ["train.run_name=no"])
    assert load_config(p, ['train.run_name="no"']).train.run_name == "no"


# ---------------------------------------------------------------- mistakes users make (walked)


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    """YAML keeps the last of two equal keys without a word: `pack: 4` would win unseen."""
    path = write(tmp_path, "model:\n  pack: 2\n  z_dim: 10\n  pack: 4\n")
    with pytest.raises(
        ConfigError, match=r"'pack' is given twice in one section \(lines 2 and 4\)"
    ):
        load_config(path)
    once = write(tmp_path, "model:\n  pack: 2\nloss:\n  gp_weight: 2\n")
    assert load_config(once).model.pack == 2
    # a YAML merge key's values may be overridden: not a duplicate
    text = "optim:\n  g: &adam {lr: 0.001, betas: [0.5, 0.9]}\n  d:\n    <<: *adam\n    lr: 0.004\n"
    cfg = load_config(write(tmp_path, text))
    assert (cfg.optim.d.lr, cfg.optim.d.betas) == (0.004, [0.5, 0.9])


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("loss.adversarial=wgan-gp", "wasserstein, with loss.penalty: gp"),
        ("loss.adversarial=vanilla", "ns (non-saturating) or minimax"),
        ("loss.aux_twin=true", "did you mean 'model.aux_twin'"),
        ("model.aux_weight=3", "did you mean 'loss.aux_weight'"),
        ("optim.g.betas=0.5", "optim.g.betas=[0.5,0.999]"),
        ("train.augment=[translation,cutout]", '"translation,cutout"'),
        ("optim.d.lr='0.0001'", "write the number without quotes"),
        ("optim.g.betas=[1.5,0.9]", "Adam's betas are each in [0, 1)"),
        ("data.source=digit", "unknown source 'digit'; did you mean 'digits'"),
        ("data.source=mnist", "torchvision:<Name>"),
    ],
)
def test_errors_say_what_to_write(tmp_path: Path, override: str, says: str) -> None:
    path = write(tmp_path, "name: x\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, [override])
    assert says in str(e.value)


def test_sources_of_the_registry_and_shards_pass(tmp_path: Path) -> None:
    from gandist.data.sources.registry import SOURCES

    path = write(tmp_path, "name: x\n")
    for source in ("shards:/data/x", "folder:/no/such/dir", "toy2d:ring8", "torchvision:MNIST"):
        assert load_config(path, [f"data.source={source}", "model.arch=mlp"]).data.source == source
    SOURCES.register("my_scans")(lambda arg, cfg: None)  # a user's own source, registered
    try:
        assert load_config(path, ["data.source=my_scans:/x"]).data.source == "my_scans:/x"
    finally:
        SOURCES._items.pop("my_scans")


def test_a_batch_that_does_not_split_over_dist_world_size_is_a_config_error() -> None:
    """The launch scripts check a config with the world they start (dist.world_size): a batch
    that does not split failed only inside every worker (exit 1, retried by torchrun and the
    cluster); now it is exit 2 before any node starts."""
    recipe = CONFIGS[0].parent / "dcgan_digits.yaml"
    with pytest.raises(
        ConfigError,
        match=r"train.batch_size: 15 is the global batch .* "
        r"dist.world_size=2 processes: use a multiple of 2 \(e.g. 14 or 16\)",
    ):
        load_config(recipe, ["train.batch_size=15", "dist.world_size=2"])
    with pytest.raises(ConfigError, match=r"model.pack: needs whole groups of 4 .* = 16"):
        load_config(recipe, ["train.batch_size=24", "model.pack=4", "dist.world_size=4"])
    with pytest.raises(ConfigError, match=r"loss.mode_seeking: needs whole groups of 2"):
        load_config(recipe, ["train.batch_size=6", "loss.mode_seeking=1", "dist.world_size=6"])
    load_config(recipe, ["train.batch_size=15"])  # no world given: checked at start-up
    load_config(recipe, ["train.batch_size=32", "model.pack=4", "dist.world_size=8"])
