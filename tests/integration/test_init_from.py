"""train.init_from: a new run starts from another run's G, D and EMA (run dir, checkpoint dir) or
G alone (.safetensors), with a fresh step, optimizer and data position; mismatches name the
layer, both shapes and the setting to change; the run's own checkpoint wins on resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gandist.training.trainer import Trainer
from tests.integration.tiny_runs import tiny_trainer, train_tiny


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step DCGAN run with an EMA (decay 0.5, so EMA, G and a fresh init all differ)."""
    return train_tiny("dcgan", tmp_path_factory.mktemp("source")).run_dir


def new_trainer(out: Path, *extra: str) -> Trainer:
    return tiny_trainer("dcgan", out, "train.run_name=ft", *extra)


def same(module: torch.nn.Module, file: Path) -> bool:
    theirs = load_file(str(file))
    ours = module.state_dict()
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_run_dir_gives_g_d_and_ema_and_nothing_else(source: Path, tmp_path: Path, capsys) -> None:
    ck = source / "checkpoints" / "step_2"
    t = new_trainer(tmp_path, f"train.init_from={source}")
    assert same(t.parts.G_plain, ck / "generator.safetensors")
    assert same(t.parts.D_plain, ck / "discriminator.safetensors")
    assert t.ema is not None and same(t.ema.module, ck / "ema_generator.safetensors")
    # Not taken: step, optimizer state, data position, W&B run.
    assert t.step == 0 and t.resumed_from is None
    assert not t.parts.opt_g.state and not t.parts.opt_d.state
    assert t.stream.state_dict()["epoch"] == 0 and t.stream.state_dict()["position"] == 0
    assert t.init_from is not None and t.init_from.loaded_ema
    assert f"initialised G, D, EMA from {ck} (step 2)" in t.init_from.message

    # The first EMA update averages with the source's EMA instead of restarting from G.
    ema_before = {k: v.clone() for k, v in t.ema.module.state_dict().items()}
    t.train_step()
    g_now = t.parts.G_plain.state_dict()
    for name, value in t.ema.module.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.5 * ema_before[name] + 0.5 * g_now[name])

    result = t.fit()  # the new run counts its own steps: 2, not 2 + 2
    assert result.step == 2 and result.checkpoint.name == "step_2"
    assert "initialised G, D, EMA from" in capsys.readouterr().out


def test_checkpoint_dir_works_like_the_run_dir(source: Path, tmp_path: Path) -> None:
    ck = source / "checkpoints" / "step_2"
    t = new_trainer(tmp_path, f"train.init_from={ck}", "train.ema=false")
    assert same(t.parts.G_plain, ck / "generator.safetensors")
    assert same(t.parts.D_plain, ck / "discriminator.safetensors")
    assert t.ema is None and "its EMA is not used (train.ema=false)" in t.init_from.message


def test_safetensors_file_is_the_generator_only(source: Path, tmp_path: Path) -> None:
    file = source / "checkpoints" / "step_2" / "ema_generator.safetensors"
    t = new_trainer(tmp_path / "a", f"train.init_from={file}")
    fresh = new_trainer(tmp_path / "b")
    assert same(t.parts.G_plain, file)
    d_fresh, d_new = fresh.parts.D_plain.state_dict(), t.parts.D_plain.state_dict()
    assert all(torch.equal(d_new[k], d_fresh[k]) for k in d_fresh)  # D: the seed's fresh init
    assert "D starts fresh" in t.init_from.message and not t.init_from.loaded_ema
    # The EMA starts as a copy of the loaded G.
    assert same(t.ema.module, file)


def test_shape_mismatch_names_layer_shapes_and_setting(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError) as err:
        new_trainer(tmp_path, f"train.init_from={source}", "model.g_width=8")
    text = str(err.value)
    assert text.startswith("train.init_from: ") and "generator.safetensors" in text
    # 32 px DCGAN: fc maps z (8) to g_width * 4 channels x 4 x 4.
    assert "layer 'fc.weight' has shape (256, 8) in the file but (512, 8) in this run's" in text
    assert "model.g_width=4 (this run: 8)" in text and "config.yaml" in text

    # PacGAN: D's first layer takes k samples; G fits, D must say which setting differs.
    with pytest.raises(ValueError) as err:
        new_trainer(tmp_path, f"train.init_from={source}", "model.pack=2")
    text = str(err.value)
    assert "discriminator.safetensors" in text and "model.pack=1 (this run: 2)" in text

    # A bare file has no config to compare: the generic fix, and the wrong-network case.
    d_file = source / "checkpoints" / "step_2" / "discriminator.safetensors"
    with pytest.raises(ValueError, match=r"is missing from the file.*Fix: build the new run"):
        new_trainer(tmp_path, f"train.init_from={d_file}")


def test_missing_source_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"train\.init_from: .*nope does not exist"):
        new_trainer(tmp_path, f"train.init_from={tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"train\.init_from: .*no checkpoint found"):
        new_trainer(tmp_path, f"train.init_from={tmp_path / 'empty'}")


def test_resume_wins_over_init_from(source: Path, tmp_path: Path) -> None:
    """A preempted fine-tuning run restarted with the same command continues where it was."""
    args = (f"train.init_from={source}", "train.resume=auto")
    first = new_trainer(tmp_path, *args).fit()
    own = first.checkpoint
    assert own is not None and own.name == "step_2"

    t = new_trainer(tmp_path, *args, "train.steps=3")
    assert t.resumed_from == own and t.step == 2
    assert t.init_from is not None and t.init_from.source is None
    assert "ignored: the run resumes from its own checkpoint" in t.init_from.message
    assert same(t.parts.G_plain, own / "generator.safetensors")
    assert not same(t.parts.G_plain, source / "checkpoints" / "step_2" / "generator.safetensors")
    assert t.fit().step == 3
