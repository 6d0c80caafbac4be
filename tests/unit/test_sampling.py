"""`gandist sample`'s labels and counts, and the count flags of sample / eval / sefa."""

from __future__ import annotations

import pytest
import torch

from gandist.cli import parse
from gandist.data.base import DatasetInfo
from gandist.sampling import class_rows, default_count, parse_labels


def info(label_type: str, k: int) -> DatasetInfo:
    return DatasetInfo(
        kind="image",
        channels=1,
        image_size=8,
        label_type=label_type,
        num_labels=k,
        label_names=tuple(str(i) for i in range(k)),
        source="test",
    )


def test_class_models_get_the_count_asked_for_sorted_by_class() -> None:
    y, per = parse_labels(None, info("class", 10), 5)  # gave 10 samples (one per class)
    assert y.tolist() == [0, 2, 4, 6, 8] and per == 0
    y, per = parse_labels(None, info("class", 10), 64)  # gave 60
    assert len(y) == 64 and y.tolist() == sorted(y.tolist()) and per == 0
    counts = torch.bincount(y)
    assert len(counts) == 10 and counts.min() >= 6 and counts.max() <= 7
    y, per = parse_labels(None, info("class", 3), 12)
    assert y.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and per == 4  # one row per class
    y, _ = parse_labels("2", info("class", 3), 7)
    assert y.tolist() == [2] * 7


def test_the_default_count_fills_one_row_per_class() -> None:
    assert default_count(info("class", 10)) == 60
    assert default_count(info("class", 3)) == 63
    assert default_count(info("class", 100)) == 100
    assert default_count(info("multi", 24)) == default_count(info("none", 0)) == 64
    assert class_rows(60, 10)[1] == 6


@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "runs/x", "--n", "0"],
        ["sample", "runs/x", "--n", "-3"],
        ["eval", "runs/x", "--n", "0"],
        ["sefa", "runs/x", "--k", "0"],
        ["sefa", "runs/x", "--steps", "0"],
    ],
)
def test_counts_below_one_are_refused_by_flag(
    argv: list[str], capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as e:
        parse(argv)
    assert e.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_eval_without_n_keeps_the_runs_setting() -> None:
    assert parse(["eval", "runs/x"]).n is None  # `--n 0` was taken as "not given"
    assert parse(["eval", "runs/x", "--n", "100"]).n == 100
    assert parse(["sample", "runs/x"]).n is None


def test_a_label_name_wins_over_an_index_it_looks_like() -> None:
    """Class folders named 1..5 (or 0, 1, 10, 2, ... sorted): `--labels 1` drew folder "2"
    (index 1) without a word, while `--labels 5` (out of index range) drew folder "5"."""
    ratings = DatasetInfo(
        kind="image", channels=1, image_size=8, label_type="class", num_labels=5,
        label_names=("1", "2", "3", "4", "5"), source="test",
    )  # fmt: skip
    for name in ratings.label_names:
        y, _ = parse_labels(name, ratings, 2)
        assert ratings.label_names[int(y[0])] == name
    sorted_names = DatasetInfo(
        kind="image", channels=1, image_size=8, label_type="multi", num_labels=12,
        label_names=tuple(sorted(str(i) for i in range(12))), source="test",
    )  # fmt: skip
    y, _ = parse_labels("2,10", sorted_names, 1)
    assert sorted(sorted_names.label_names[i] for i in y[0].nonzero().flatten()) == ["10", "2"]
    y, _ = parse_labels("0", info("class", 3), 1)  # names equal to indices: as before
    assert y.tolist() == [0]


def test_out_without_a_file_type_is_refused_before_sampling(tmp_path) -> None:
    """A directory or a name without a suffix failed after sampling, naming an internal
    temporary file's '.partial' as the unknown extension."""
    from pathlib import Path

    from gandist.sampling import check_out

    for out in (tmp_path, tmp_path / "grid"):
        with pytest.raises(ValueError, match=r"--out .*: give a file name, e\.g\. .*\.png"):
            check_out(Path(out))
    check_out(tmp_path / "grid.png")
    check_out(tmp_path / "x.npy")
