"""Checkpoints: atomic finalisation, the `latest` pointer, pruning, safetensors-only loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from gandist.training import checkpoint as ckpt


@pytest.fixture(scope="module")
def acc() -> Accelerator:
    return Accelerator(cpu=True)


def save(acc: Accelerator, run: Path, step: int, keep: int = 3, hook=None) -> Path:
    net = torch.nn.Linear(3, 2)
    return ckpt.save_checkpoint(
        acc, run, step, {"generator": net}, {"step": step}, "a: 1\n", keep, before_rename=hook
    )


def test_save_writes_everything_and_points_latest(acc: Accelerator, tmp_path: Path) -> None:
    final = save(acc, tmp_path, 5)
    assert final == tmp_path / "checkpoints" / "step_5"
    for name in (
        "generator.safetensors",
        "trainer_state.json",
        "config.yaml",
        "random_states_0.pkl",
    ):
        assert (final / name).is_file(), name
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_5"
    assert json.loads((final / "trainer_state.json").read_text()) == {"step": 5}
    assert ckpt.latest_checkpoint(tmp_path) == final
    assert ckpt.resolve_checkpoint(tmp_path) == final and ckpt.resolve_checkpoint(final) == final
    # the names users point at: `checkpoints/latest` (a file) and the `checkpoints/` folder
    assert ckpt.resolve_checkpoint(tmp_path / "checkpoints" / "latest") == final
    assert ckpt.resolve_checkpoint(tmp_path / "checkpoints") == final


def test_crash_before_rename_keeps_previous_latest(acc: Accelerator, tmp_path: Path) -> None:
    good = save(acc, tmp_path, 1)

    def die(tmp: Path) -> None:
        raise KeyboardInterrupt("killed mid-checkpoint")

    with pytest.raises(KeyboardInterrupt):
        save(acc, tmp_path, 2, hook=die)
    assert (tmp_path / "checkpoints" / ".tmp_step_2").is_dir()  # the half-written one
    assert ckpt.latest_checkpoint(tmp_path) == good
    save(acc, tmp_path, 3)  # the next save cleans the stale temporary
    assert not (tmp_path / "checkpoints" / ".tmp_step_2").exists()


def test_latest_falls_back_when_pointer_is_stale(acc: Accelerator, tmp_path: Path) -> None:
    save(acc, tmp_path, 1)
    second = save(acc, tmp_path, 2)
    (tmp_path / "checkpoints" / "latest").write_text("step_99\n")
    assert ckpt.latest_checkpoint(tmp_path) == second


def test_prune_keeps_newest(acc: Accelerator, tmp_path: Path) -> None:
    for s in (10, 20, 30, 40):
        save(acc, tmp_path, s, keep=2)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["step_30", "step_40"]


def test_exports_load_into_a_fresh_module(acc: Accelerator, tmp_path: Path) -> None:
    final = save(acc, tmp_path, 1)
    net = torch.nn.Linear(3, 2)
    ckpt.load_module_weights(net, final / "generator.safetensors")
    ref = torch.nn.Linear(3, 2)
    ckpt.load_module_weights(ref, final / "generator.safetensors")
    assert torch.equal(net.weight, ref.weight)


def test_missing_checkpoint_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint found"):
        ckpt.resolve_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a gandist checkpoint"):
        ckpt.read_trainer_state(tmp_path)


def test_checkpoints_directory_is_fsynced_after_the_renames(
    acc: Accelerator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename lives in the directory: without flushing `checkpoints/` a power cut can undo it
    (and leave `latest` naming a directory that is not there)."""
    import os

    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "fsync", fsync)
    monkeypatch.setattr(ckpt.os, "replace", replace)
    save(acc, tmp_path, 3)
    root = str((tmp_path / "checkpoints").resolve())
    renames = [i for i, e in enumerate(events) if e[0] == "replace"]
    assert [events[i][1] for i in renames] == [f"{root}/step_3", f"{root}/latest"]
    for i in renames:  # each rename is followed by an fsync of the checkpoints directory
        assert ("fsync", root) in events[i + 1 :], events[i:]
    assert events[-1] == ("fsync", root)


def test_a_checkpoint_without_the_runs_ema_is_refused_by_key(tmp_path: Path) -> None:
    ckpt.check_resumable(tmp_path, ema=False)  # plain run, plain checkpoint
    with pytest.raises(ValueError, match=r"no EMA generator.*train.ema=false"):
        ckpt.check_resumable(tmp_path, ema=True)
    (tmp_path / "ema_generator.safetensors").write_bytes(b"")
    ckpt.check_resumable(tmp_path, ema=True)


def test_a_checkpoint_of_another_optimizer_kind_is_refused_by_key(tmp_path: Path) -> None:
    ckpt.check_resumable(tmp_path, ema=False, optimizers={"d": "rmsprop"})  # no config.yaml
    (tmp_path / "config.yaml").write_text(
        "optim:\n  g:\n    name: adam\n    lr: 0.0001\n  d:\n    name: adam\n"
    )
    ckpt.check_resumable(tmp_path, ema=False, optimizers={"g": "adam", "d": "adam"})
    with pytest.raises(
        ValueError,
        match=r"optim.d.name=adam, this run has optim.d.name=rmsprop; resume with "
        r"optim.d.name=adam, or start a new run from its weights with train.init_from",
    ):
        ckpt.check_resumable(tmp_path, ema=False, optimizers={"g": "adam", "d": "rmsprop"})
