"""Shards written by other tools (webdataset.ShardWriter): `gandist shard index`, indexing on
first use by the training stream, and data.image_size / data.channels applied at decode."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gandist.cli import build_parser, main
from gandist.config import DataConfig
from gandist.data import pipeline
from gandist.data.pipeline import locate_shards, open_stream
from gandist.data.shards.format import (
    MANIFEST,
    decode_image,
    read_manifest,
    sha256_file,
)
from gandist.data.shards.index import cache_path, expand_spec, index_shards, run_index_command
from gandist.data.shards.stream import ShardStream, resolve_shards
from tests.shard_fixtures import make_shards
from tests.wds_fixtures import digit, write_wds

SPEC_RANGE = "shard-{000000..000003}.tar"


def _cfg(source: str, root: Path, **kw) -> DataConfig:
    return DataConfig(source=source, root=str(root), workers=0, shuffle_buffer=1, **kw)


def _encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _stream(cfg: DataConfig, batch: int = 10, **kw) -> ShardStream:
    kw = {"is_writer": True, "barrier": lambda: None, **kw}
    return open_stream(cfg, batch, 0, 1, 0, **kw)  # type: ignore[return-value]


# ---------------------------------------------------------------- gandist shard index


def test_index_shardwriter_shards(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = write_wds(tmp_path / "wds")
    assert not (d / MANIFEST).exists()
    with pytest.raises(FileNotFoundError, match="no shard manifest"):
        resolve_shards(str(d))  # what failed before: a manifest was required
    assert main(["shard", "index", str(d)]) == 0
    out = capsys.readouterr().out
    assert "200 samples in 4 shards: 16px jpg, 1 channel, class labels (10)" in out
    m = read_manifest(d)
    assert m.indexed and m.label_type == "class" and m.label_names == [str(i) for i in range(10)]
    assert (m.image_size, m.channels, m.image_format) == (16, 1, "jpg")
    assert [s.num_samples for s in m.shards] == [50] * 4
    for s in m.shards:
        assert s.sha256 == sha256_file(d / s.name) and s.num_bytes == (d / s.name).stat().st_size
    urls, m2 = resolve_shards(str(d))
    stream = ShardStream(urls, m2, 20, shuffle_buffer=1)
    x, y = stream.first_samples(5)
    assert x.shape == (5, 1, 16, 16) and y.tolist() == [digit(i)[1] for i in range(5)]
    assert x.min() >= -1 and x.max() <= 1


def test_index_pipe_urls_equal_local(tmp_path: Path) -> None:
    d = write_wds(tmp_path / "wds")
    local, _ = index_shards(f"{d}/{SPEC_RANGE}")
    piped, _ = index_shards(f"pipe:cat {d}/{SPEC_RANGE}", workers=2)
    assert [(s.name, s.num_samples, s.sha256, s.num_bytes) for s in piped.shards] == [
        (s.name, s.num_samples, s.sha256, s.num_bytes) for s in local.shards
    ]
    with pytest.raises(ValueError, match="--out"):
        run_index_command(f"pipe:cat {d}/{SPEC_RANGE}", None, 1, False)
    text = run_index_command(f"pipe:cat {d}/{SPEC_RANGE}", str(tmp_path / "idx"), 1, False)
    assert text.endswith(str(tmp_path / "idx" / MANIFEST))
    urls, m = resolve_shards(f"pipe:cat {d}/{SPEC_RANGE}", str(tmp_path / "idx" / MANIFEST))
    assert len(urls) == 4 and m.num_samples == 200


def test_label_kinds(tmp_path: Path) -> None:
    def multi(i: int) -> dict:
        return {"png": digit(i)[0], "json": [i % 3, 4] if i % 2 else [i % 3]}

    run_index_command(
        str(write_wds(tmp_path / "multi", n=20, per_shard=10, sample=multi)), None, 1, False
    )
    urls, m = resolve_shards(str(tmp_path / "multi"))
    assert m.label_type == "multi" and m.num_labels == 5 and m.image_format == "png"
    _, y = ShardStream(urls, m, 4, shuffle_buffer=1).first_samples(2)
    assert y.tolist() == [[1, 0, 0, 0, 0], [0, 1, 0, 0, 1]]

    plain, notes = index_shards(
        str(write_wds(tmp_path / "none", n=6, per_shard=3, sample=lambda i: {"jpg": digit(i)[0]}))
    )
    assert plain.label_type == "none" and plain.num_labels == 0 and not notes

    def partial(i: int) -> dict:
        return {"jpg": digit(i)[0], **({"cls": 1} if i % 2 else {})}

    m, notes = index_shards(str(write_wds(tmp_path / "partial", n=6, per_shard=3, sample=partial)))
    assert m.label_type == "none" and "only 3 of 6 samples have a .cls" in notes[0]


def test_labels_under_a_named_field(tmp_path: Path) -> None:
    """`<key>.label.cls` / `<key>.labels.json` (webdataset: everything after the first dot is
    the field) hold labels as the plain `.cls` / `.json` do; they were read as unconditional."""

    def named_cls(i: int) -> dict:
        img, label = digit(i)
        return {"input.jpg": img, "label.cls": label, "caption.txt": "a digit"}

    d = write_wds(tmp_path / "cls", n=12, per_shard=6, sample=named_cls)
    m, notes = index_shards(str(d))
    assert (m.label_type, m.num_labels, m.label_member) == ("class", 10, "label.cls"), notes
    run_index_command(str(d), None, 1, False)
    urls, m = resolve_shards(str(d))
    assert m.label_member == "label.cls"  # written to and read from dataset.json
    x, y = ShardStream(urls, m, 4, shuffle_buffer=1).first_samples(3)
    assert y.tolist() == [digit(i)[1] for i in range(3)] and x.shape[0] == 3

    def named_multi(i: int) -> dict:
        # metadata json first in name order: the label list is found after it
        return {"png": digit(i)[0], "labels.json": [i % 3, 4], "meta.json": {"w": 16}}

    d = write_wds(tmp_path / "multi", n=6, per_shard=3, sample=named_multi)
    run_index_command(str(d), None, 1, False)
    urls, m = resolve_shards(str(d))
    assert (m.label_type, m.num_labels, m.label_member) == ("multi", 5, "labels.json")
    _, y = ShardStream(urls, m, 4, shuffle_buffer=1).first_samples(2)
    assert y.tolist() == [[1, 0, 0, 0, 1], [0, 1, 0, 0, 1]]

    # the plain names keep the manifest as gandist writes it
    plain, _ = index_shards(str(write_wds(tmp_path / "plain", n=4, per_shard=4)))
    assert (plain.label_type, plain.label_member) == ("class", "")

    def mixed(i: int) -> dict:
        return {"jpg": digit(i)[0], ("label.cls" if i % 2 else "cls"): 1}

    m, notes = index_shards(str(write_wds(tmp_path / "mixed", n=4, per_shard=4, sample=mixed)))
    assert m.label_type == "none"
    assert "labels are in members of different names (.cls (2), .label.cls (2))" in notes[0]

    def two(i: int) -> dict:
        return {"jpg": digit(i)[0], "cls": 1, "coarse.cls": 0}

    with pytest.raises(ValueError, match=r"sample00000' has 2 class labels \(.cls, .coarse.cls\)"):
        index_shards(str(write_wds(tmp_path / "two", n=2, per_shard=2, sample=two)))


def test_files_that_join_one_sample_are_named(tmp_path: Path) -> None:
    """A plain tar of frame.0000.png, frame.0001.png, ...: webdataset's key is the name up to the
    first dot, so they are one sample; the index says so and how to rename them."""

    d = tmp_path / "frames"
    d.mkdir()
    with tarfile.open(d / "frames.tar", "w") as tar:
        for i in range(5):
            data = _encoded(digit(i)[0], "PNG")
            info = tarfile.TarInfo(f"frame.{i:04d}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        data = _encoded(digit(5)[0], "PNG")
        info = tarfile.TarInfo("single.png")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    m, notes = index_shards(str(d))
    assert m.num_samples == 2
    assert notes == [
        "1 of 2 samples hold more than one image (e.g. 'frame': .0000.png, .0001.png, .0002.png, "
        "...); training uses the first of each. webdataset groups a tar's files into samples by "
        "the name up to the first dot, so files named like frame.0001.png all join one sample: "
        "rename them (frame_0001.png) if each is an image of its own"
    ]


def test_bad_samples_name_the_shard_and_key(tmp_path: Path) -> None:
    def named(i: int) -> dict:
        return {"jpg": digit(i)[0], "cls": "cat" if i == 4 else 1}

    d = write_wds(tmp_path / "names", n=6, per_shard=3, sample=named)
    with pytest.raises(ValueError, match=r"shard-000001\.tar: sample 'sample00004': .cls is 'cat'"):
        index_shards(str(d))

    def imageless(i: int) -> dict:
        return {"txt": "caption", "cls": 1} if i == 2 else {"jpg": digit(i)[0], "cls": 1}

    d = write_wds(tmp_path / "noimg", n=4, per_shard=4, sample=imageless)
    with pytest.raises(ValueError, match=r"sample 'sample00002' has no image \(members: cls, txt"):
        index_shards(str(d))
    with pytest.raises(FileNotFoundError, match=r"9 of 10 shard file\(s\) do not exist"):
        expand_spec(f"{d}/shard-{{000000..000009}}.tar")


def test_mixed_formats_sizes_and_modes_are_resized_and_converted(tmp_path: Path) -> None:
    def mixed(i: int) -> dict:
        img, label = digit(i)
        kinds = [
            {"png": img},
            {"jpeg": img},
            {"ppm": img.convert("RGB")},
            {"webp": _encoded(img.resize((24, 20)), "WEBP")},  # ShardWriter has no webp
            {"npy": np.asarray(img)[:, :, None]},
            {"left.png": img},  # webdataset keeps the extension after the first dot
        ]
        return {**kinds[i % len(kinds)], "cls": label}

    d = write_wds(tmp_path / "mixed", n=12, per_shard=6, sample=mixed)
    m, notes = index_shards(str(d))
    assert (m.image_size, m.channels) == (16, 1)
    assert m.image_sizes == {"16x16": 10, "24x20": 2}
    assert any("2 sizes" in n and "resizes" in n for n in notes)
    assert any("8 of 12 images are grayscale, 4 colour" in n for n in notes)  # ppm, webp: RGB
    run_index_command(str(d), None, 1, False)
    stream = _stream(_cfg(f"shards:{d}", tmp_path), batch=12)
    x, _ = next(stream)
    assert x.shape == (12, 1, 16, 16)


def test_decode_image_resizes_and_converts() -> None:
    buf = io.BytesIO()
    Image.new("L", (8, 6), 200).save(buf, format="PNG")
    x = decode_image(buf.getvalue(), "png", 3, 4)
    assert x.shape == (3, 4, 4) and torch.allclose(x, torch.full_like(x, 200 / 127.5 - 1))
    assert decode_image(buf.getvalue(), "png", 1).shape == (1, 6, 8)  # size 0: as stored
    arr = io.BytesIO()
    np.save(arr, np.full((8, 8, 3), 255, np.uint8))
    y = decode_image(arr.getvalue(), "npy", 1, 4)
    assert y.shape == (1, 4, 4) and torch.all(y == 1.0)


# ---------------------------------------------------------------- training: index on first use


def test_stream_indexes_foreign_shards_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = write_wds(tmp_path / "wds")
    stream = _stream(_cfg(f"shards:{d}", tmp_path, image_size=32, channels=3))
    err = capsys.readouterr().err
    assert f"indexing 4 shards once (as `gandist shard index` does) into {d / MANIFEST}" in err
    assert "resized to 32x32" in err and "data.channels=3" in err
    assert stream.info.sample_shape == (3, 32, 32) and stream.info.num_labels == 10
    x, y = next(stream)
    assert x.shape == (10, 3, 32, 32) and y.dtype == torch.int64
    assert (d / MANIFEST).is_file()
    again = _stream(_cfg(f"shards:{d}/{SPEC_RANGE}", tmp_path))
    assert "indexing" not in capsys.readouterr().err  # the manifest beside them is used
    assert again.info.sample_shape == (1, 16, 16)


def test_pipe_urls_and_read_only_dirs_index_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    d = write_wds(tmp_path / "wds")
    spec = f"pipe:cat {d}/{SPEC_RANGE}"
    root = tmp_path / "root"
    stream = _stream(_cfg(f"shards:{spec}", root))
    cached = cache_path(expand_spec(spec), root)
    assert cached.is_file() and not (d / MANIFEST).exists()
    assert str(cached) in capsys.readouterr().err
    assert stream.num_samples == 200 and next(stream)[0].shape == (10, 1, 16, 16)

    monkeypatch.setattr(pipeline, "_writable", lambda _: False)
    stream = _stream(_cfg(f"shards:{d}", root))
    assert cache_path(expand_spec(str(d)), root).is_file() and not (d / MANIFEST).exists()
    assert stream.num_samples == 200


def test_one_writer_indexes_the_others_wait(tmp_path: Path) -> None:
    d = write_wds(tmp_path / "wds", n=40, per_shard=10)
    cfg = _cfg(f"shards:{d}", tmp_path)
    turns: list[str] = []

    def barrier() -> None:  # the writer's turn happens while this rank waits
        assert not (d / MANIFEST).exists()  # a non-writer never indexes
        turns.append("wait")
        locate_shards(str(d), cfg, True, lambda: turns.append("writer"))

    urls, m = locate_shards(str(d), cfg, False, barrier)
    assert turns == ["wait", "writer"] and m.num_samples == 40 and len(urls) == 4
    (d / MANIFEST).unlink()
    with pytest.raises(FileNotFoundError, match="no manifest after the indexing"):
        locate_shards(str(d), cfg, False, lambda: None)  # nobody indexed: said, not hung


def test_stale_index_is_redone_and_gandist_manifests_are_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    d = write_wds(tmp_path / "wds", n=40, per_shard=10)
    _stream(_cfg(f"shards:{d}", tmp_path), batch=4)
    write_wds(tmp_path / "wds", n=36, per_shard=9)  # same names, different shards
    capsys.readouterr()
    stream = _stream(_cfg(f"shards:{d}", tmp_path), batch=4)
    assert "indexing" in capsys.readouterr().err and stream.num_samples == 36

    g = make_shards(tmp_path / "ours", [5, 5])
    with pytest.raises(ValueError, match="--force"):
        run_index_command(str(g), None, 1, False)
    assert not read_manifest(g).indexed
    assert _stream(_cfg(f"shards:{g}", tmp_path), batch=2).info.label_names == ("a", "b", "c")
    run_index_command(str(g), None, 1, True)
    assert read_manifest(g).indexed


def test_help_lists_shard_index_and_shard_still_takes_a_source(tmp_path: Path) -> None:
    text = build_parser().format_help()
    assert "shard index" in text
    args = build_parser().parse_args(["shard", "digits", str(tmp_path)])
    assert (args.source, args.out_dir) == ("digits", str(tmp_path))


def test_shards_written_class_by_class_are_named(tmp_path: Path) -> None:
    """Foreign shards cut from a class-sorted list give batches of one class: the index says so
    and what to do; shuffled ones get no such note."""
    sorted_dir = write_wds(tmp_path / "sorted", n=80, per_shard=20, sample=_by_class)
    _, notes = index_shards(str(sorted_dir), workers=1, progress=None)
    note = " ".join(notes)
    assert "4 of 4 shards hold a single class" in note and "data.shuffle_buffer" in note
    mixed = write_wds(tmp_path / "mixed", n=80, per_shard=20)
    _, notes = index_shards(str(mixed), workers=1, progress=None)
    assert not any("single class" in n for n in notes)


def _by_class(i: int) -> dict[str, object]:
    img, _ = digit(i)
    return {"jpg": img, "cls": i // 20}
