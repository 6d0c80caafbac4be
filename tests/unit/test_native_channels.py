"""Native channels mean what the images are: a folder of grey PNGs is a 1-channel data set,
read directly or written to shards, unless data.channels says otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from gandist.config import DataConfig
from gandist.data.shards.format import read_manifest
from gandist.data.shards.write import write_shards
from gandist.data.sources.pil import mode_channels
from gandist.data.sources.registry import load_source
from tests.wds_fixtures import digit, grey_digit_folder


def _load(source: str, **kw):
    return load_source(DataConfig(source=source, shards="off", **kw))


def test_grey_folder_is_one_channel(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = grey_digit_folder(tmp_path / "digits", per_class=3)
    src = _load(f"folder:{root}", image_size=16)
    assert src.info.channels == 1 and src.info.sample_shape == (1, 16, 16)  # RGB before
    assert src.info.label_names == tuple(str(i) for i in range(10))
    assert src.dataset[0][0].shape == (1, 16, 16)
    assert capsys.readouterr().err == ""  # not mixed: nothing to say
    rgb = _load(f"folder:{root}", image_size=16, channels=3)
    assert rgb.info.channels == 3 and rgb.dataset[0][0].shape == (3, 16, 16)


def test_grey_folder_shards_as_one_channel(tmp_path: Path) -> None:
    root = grey_digit_folder(tmp_path / "digits", per_class=2)
    report = write_shards(f"folder:{root}", tmp_path / "out", image_size=16, progress=False)
    m = read_manifest(tmp_path / "out")
    assert m.channels == 1 and m.num_samples == 20 and m.label_type == "class"
    assert not report.converted  # grey stays grey: no mode conversion counted


@pytest.mark.parametrize(("grey", "colour", "want"), [(3, 2, 1), (2, 3, 3), (2, 2, 3)])
def test_mixed_folder_follows_the_majority_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture, grey: int, colour: int, want: int
) -> None:
    for i in range(grey):
        digit(i)[0].save(tmp_path / f"g{i}.png")
    for i in range(colour):
        digit(i)[0].convert("RGB").save(tmp_path / f"c{i}.jpg")
    src = _load(f"folder:{tmp_path}", image_size=8)
    assert src.info.channels == want
    err = capsys.readouterr().err
    assert f"of {grey + colour} images {grey} are grayscale and {colour} colour" in err
    assert "the majority" in err and "data.channels" in err
    assert {src.dataset[i][0].shape[0] for i in range(len(src))} == {want}


def test_mode_channels() -> None:
    assert mode_channels(Image.new("L", (2, 2))) == 1
    assert mode_channels(Image.new("LA", (2, 2))) == 1
    assert mode_channels(Image.new("RGBA", (2, 2))) == 3
    grey_palette = Image.new("P", (2, 2))
    grey_palette.putpalette([v for i in range(256) for v in (i, i, i)])
    assert mode_channels(grey_palette) == 1
    grey_palette.putpalette([0, 0, 255] * 256)
    assert mode_channels(grey_palette) == 3
