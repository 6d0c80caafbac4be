"""train.init_from between conditional models whose label names differ: labels are taken by
position, and the run now says how they pair (it stayed silent: class folders "zero".."nine"
sort as eight, five, ..., so the source's "0" was drawn for "eight")."""

from __future__ import annotations

import json
from pathlib import Path

from gandist.config import Config
from gandist.data.base import DatasetInfo
from gandist.training.init_from import label_pairing

DIGITS = tuple(str(i) for i in range(10))
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def source(tmp_path: Path, names: tuple[str, ...]) -> Path:
    (tmp_path / "trainer_state.json").write_text(
        json.dumps({"step": 40, "data_info": {"label_names": list(names)}})
    )
    return tmp_path


def info(names: tuple[str, ...]) -> DatasetInfo:
    return DatasetInfo(
        kind="image", channels=1, image_size=32, label_type="class",
        num_labels=len(names), label_names=names, source="folder:x",
    )  # fmt: skip


def conditional() -> Config:
    cfg = Config()
    cfg.model.condition = "concat"
    return cfg


def test_differing_label_names_are_paired_by_position(tmp_path: Path) -> None:
    said = label_pairing(source(tmp_path, DIGITS), conditional(), info(tuple(sorted(WORDS))))
    assert "taken by position" in said and "'0' -> 'eight', '1' -> 'five'" in said
    assert "another order" not in said


def test_the_same_names_in_another_order_are_named_as_such(tmp_path: Path) -> None:
    said = label_pairing(source(tmp_path, WORDS), conditional(), info(tuple(sorted(WORDS))))
    assert "'zero' -> 'eight'" in said and "the same names in another order" in said


def test_nothing_is_said_when_the_labels_agree_or_do_not_matter(tmp_path: Path) -> None:
    ck = source(tmp_path, DIGITS)
    assert label_pairing(ck, conditional(), info(DIGITS)) == ""
    assert label_pairing(ck, Config(), info(WORDS)) == ""  # unconditional: labels unused
    assert label_pairing(None, conditional(), info(WORDS)) == ""  # a .safetensors file
