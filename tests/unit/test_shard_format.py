"""The shard format contract: image and label codecs, keys, and the manifest with its errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gandist.data.shards import format as sf


def _image(channels: int, size: int = 12, seed: int = 0) -> torch.Tensor:
    """A (C, H, W) tensor in [-1, 1] on the uint8 grid, so png/npy must return it exactly."""
    g = torch.Generator().manual_seed(seed)
    arr = torch.randint(0, 256, (channels, size, size), generator=g).float()
    return arr / 127.5 - 1.0


def _smooth(channels: int, size: int = 16) -> torch.Tensor:
    """A gradient: JPEG keeps it close, unlike noise."""
    ramp = torch.linspace(-1, 1, size)
    img = (ramp.view(1, -1) + ramp.view(-1, 1)).clamp(-1, 1) * 0.8
    return img.expand(channels, size, size).clone()


# ---------------------------------------------------------------- images


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("fmt", ["png", "npy"])
def test_lossless_round_trip(fmt: str, channels: int) -> None:
    x = _image(channels)
    data = sf.encode_image(sf.tensor_to_uint8(x), fmt)
    y = sf.decode_image(data, fmt, channels)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert torch.allclose(y, x, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_jpg_round_trip_is_close(channels: int) -> None:
    x = _smooth(channels)
    data = sf.encode_image(sf.tensor_to_uint8(x), "jpg")
    assert data[:2] == b"\xff\xd8"  # a JPEG
    y = sf.decode_image(data, "jpg", channels)
    assert y.shape == x.shape
    assert (y - x).abs().mean() < 0.03


def test_quantization_within_half_a_step() -> None:
    x = torch.rand(3, 8, 8) * 2 - 1
    back = sf.uint8_to_tensor(sf.tensor_to_uint8(x))
    assert (back - x).abs().max() <= 1 / 127.5 / 2 + 1e-6
    arr = sf.tensor_to_uint8(x)
    assert arr.shape == (8, 8, 3) and arr.dtype == np.uint8


def test_unknown_image_format() -> None:
    with pytest.raises(ValueError, match="--format"):
        sf.encode_image(np.zeros((4, 4, 1), np.uint8), "gif")


# ---------------------------------------------------------------- labels and keys


def test_class_label_round_trip() -> None:
    members = sf.encode_label(torch.tensor(7), "class")
    assert members == {"cls": b"7"}
    y = sf.decode_label(members, "class", 10)
    assert y.dtype == torch.long and int(y) == 7


def test_multi_label_round_trip() -> None:
    y = torch.zeros(24)
    y[[0, 5, 23]] = 1.0
    members = sf.encode_label(y, "multi")
    assert json.loads(members["json"]) == {"labels": [0, 5, 23]}
    back = sf.decode_label(members, "multi", 24)
    assert back.dtype == torch.float32 and torch.equal(back, y)


def test_no_label() -> None:
    assert sf.encode_label(torch.tensor(0), "none") == {}
    assert int(sf.decode_label({}, "none", 0)) == 0


def test_sanitize_key() -> None:
    assert sf.sanitize_key("cats/a.b c.d") == "cats/a_b_c_d"
    assert "." not in sf.sanitize_key("x.y.z")


def test_sha256_file(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"gandist" * 1000)
    assert sf.sha256_file(p, chunk=100) == hashlib.sha256(b"gandist" * 1000).hexdigest()


# ---------------------------------------------------------------- manifest


def _manifest() -> sf.Manifest:
    return sf.Manifest(
        source="shapes",
        image_size=32,
        channels=3,
        image_format="png",
        label_type="multi",
        label_names=["a", "b", "c"],
        shards=[sf.ShardEntry("data-000000.tar", 10, "ab" * 32, 2048),
                sf.ShardEntry("data-000001.tar", 4, "cd" * 32, 1024)],
        gandist_version="0.1.0",
        skipped={"corrupt": 2},
    )  # fmt: skip


def test_manifest_round_trip(tmp_path: Path) -> None:
    m = _manifest()
    path = sf.write_manifest(tmp_path, m)
    assert path == tmp_path / sf.MANIFEST and not list(tmp_path.glob(".*tmp*"))
    raw = json.loads(path.read_text())
    assert raw["num_samples"] == 14 and raw["format"] == sf.FORMAT_NAME
    back = sf.read_manifest(tmp_path)
    assert back == m and back.num_samples == 14 and back.num_labels == 3
    info = back.info()
    assert (info.channels, info.image_size, info.label_type, info.num_labels) == (3, 32, "multi", 3)
    assert info.label_names == ("a", "b", "c") and info.source == "shapes"


def _write_raw(directory: Path, **changes: object) -> None:
    raw = json.loads(_manifest().to_json())
    raw.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del raw[key]
    (directory / sf.MANIFEST).write_text(json.dumps(raw))


def test_manifest_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="gandist shard"):
        sf.read_manifest(tmp_path)


def test_manifest_not_json(tmp_path: Path) -> None:
    (tmp_path / sf.MANIFEST).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        sf.read_manifest(tmp_path)


def test_manifest_wrong_format(tmp_path: Path) -> None:
    _write_raw(tmp_path, format="something-else")
    with pytest.raises(ValueError, match="not a gandist shard manifest"):
        sf.read_manifest(tmp_path)


def test_manifest_newer_version(tmp_path: Path) -> None:
    _write_raw(tmp_path, version=sf.FORMAT_VERSION + 1)
    with pytest.raises(ValueError, match="newer than this gandist"):
        sf.read_manifest(tmp_path)


@pytest.mark.parametrize(
    "changes", [{"shards": None}, {"image_size": None}, {"shards": [{"name": "x"}]}]
)
def test_manifest_malformed_field(tmp_path: Path, changes: dict) -> None:
    _write_raw(tmp_path, **changes)
    with pytest.raises(ValueError, match="missing or has a malformed field"):
        sf.read_manifest(tmp_path)


@pytest.mark.parametrize("changes", [{"image_format": "gif"}, {"channels": 4}])
def test_manifest_unsupported_image(tmp_path: Path, changes: dict) -> None:
    _write_raw(tmp_path, **changes)
    with pytest.raises(ValueError, match="unsupported image_format/channels"):
        sf.read_manifest(tmp_path)
