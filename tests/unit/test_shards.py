"""`gandist shard`: round trips, manifest, determinism, parallel, resume, bad input, CLI.

Shards are read back with plain `tarfile` so the tests check the format, not a reader of it.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gandist.cli import main
from gandist.config import DataConfig
from gandist.data.shards.format import (
    MANIFEST,
    decode_image,
    decode_label,
    read_manifest,
    sha256_file,
)
from gandist.data.shards.report import ShardReport
from gandist.data.shards.write import parse_bytes, write_shards
from gandist.data.sources.registry import load_source

STEP = 2 / 255 + 1e-6  # 1/255 of the [0, 1] range, in gandist's [-1, 1] units


def shard(source: str, out: Path, **kw) -> ShardReport:
    return write_shards(source, out, progress=False, **kw)


def read_samples(out: Path) -> dict[str, dict[str, bytes]]:
    """key -> {extension: bytes}, over the manifest's shards in order; keys must not repeat."""
    samples: dict[str, dict[str, bytes]] = {}
    for entry in read_manifest(out).shards:
        with tarfile.open(out / entry.name) as tar:
            keys = set()
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                keys.add(key)
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()  # type: ignore[union-attr]
            assert len(keys) == entry.num_samples
    return samples


def shard_bytes_of(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("data-*.tar"))}


def rgb(size: int = 20, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def image_folder(root: Path, n: int = 6, size: int = 20) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rgb(size, i).save(root / f"img_{i}.png")
    return root


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["png", "npy"])
def test_digits_round_trip(tmp_path: Path, fmt: str) -> None:
    report = shard("digits", tmp_path, image_size=8, shard_size=700, image_format=fmt)
    src = load_source(DataConfig(source="digits", image_size=8))
    x, y = src.tensors  # type: ignore[misc]
    samples = read_samples(tmp_path)
    assert report.num_samples == len(samples) == len(x) == 1797 and report.num_shards == 3
    for key, members in samples.items():
        i = int(key)
        assert key == f"{i:08d}"
        assert set(members) == {fmt, "cls", "json"} and json.loads(members["json"]) == {}
        img = decode_image(members[fmt], fmt, 1)
        assert img.shape == (1, 8, 8) and (img - x[i]).abs().max() <= STEP
        assert int(decode_label(members, "class", 10)) == int(y[i])


def test_shapes_multi_hot_round_trip(tmp_path: Path) -> None:
    cfg = DataConfig(n_samples=40, seed=3)
    shard("shapes", tmp_path, image_size=32, shard_size=16, data_cfg=cfg)
    m = read_manifest(tmp_path)
    assert (m.label_type, m.num_labels, m.channels, m.image_size) == ("multi", 24, 3, 32)
    assert [s.num_samples for s in m.shards] == [16, 16, 8]
    x, y = load_source(DataConfig(source="shapes", image_size=32, n_samples=40, seed=3)).tensors  # type: ignore[misc]
    samples = read_samples(tmp_path)
    assert len(samples) == 40
    for key, members in samples.items():
        i = int(key)
        assert (decode_image(members["png"], "png", 3) - x[i]).abs().max() <= STEP
        assert torch.equal(decode_label(members, "multi", 24), y[i])


def test_folder_round_trip_with_classes(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    image_folder(root / "cat", 3)
    image_folder(root / "dog", 2, size=24)
    out = tmp_path / "out"
    report = shard(f"folder:{root}", out, image_size=16)
    assert report.skipped == {} and report.converted == {}
    m = read_manifest(out)
    assert (m.label_type, m.label_names, m.channels) == ("class", ["cat", "dog"], 3)
    src = load_source(DataConfig(source=f"folder:{root}", image_size=16))
    by_rel = {Path(f).relative_to(root).as_posix(): i for i, f in enumerate(src.dataset.files)}
    samples = read_samples(out)
    assert sorted(samples) == ["cat/img_0", "cat/img_1", "cat/img_2", "dog/img_0", "dog/img_1"]
    for members in samples.values():
        meta = json.loads(members["json"])
        x, y = src.dataset[by_rel[meta["source_path"]]]
        assert (decode_image(members["png"], "png", 3) - x).abs().max() <= STEP
        assert int(decode_label(members, "class", 2)) == int(y)


def test_points_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not images"):
        shard("toy2d:ring8", tmp_path)


# ---------------------------------------------------------------- manifest and determinism


def test_manifest_fields_and_checksums(tmp_path: Path) -> None:
    import gandist

    report = shard("digits", tmp_path, image_size=8, shard_size=1000, channels=3)
    m = read_manifest(tmp_path)
    assert report.manifest == tmp_path / MANIFEST
    assert (m.source, m.image_size, m.channels, m.image_format) == ("digits", 8, 3, "png")
    assert m.label_names == [str(i) for i in range(10)] and m.gandist_version == gandist.__version__
    assert m.num_samples == 1797 and [s.name for s in m.shards] == [
        "data-000000.tar",
        "data-000001.tar",
    ]
    for entry in m.shards:
        path = tmp_path / entry.name
        assert entry.sha256 == sha256_file(path) and entry.num_bytes == path.stat().st_size
    assert json.loads((tmp_path / MANIFEST).read_text())["num_samples"] == 1797


def test_default_shard_size_is_1000(tmp_path: Path) -> None:
    report = shard("digits", tmp_path, image_size=8)
    assert [s.num_samples for s in read_manifest(tmp_path).shards] == [1000, 797]
    assert report.num_shards == 2


def test_shards_are_byte_identical_across_runs(tmp_path: Path) -> None:
    cfg = DataConfig(n_samples=40)
    shard("shapes", tmp_path / "a", image_size=32, shard_size=15, data_cfg=cfg)
    shard("shapes", tmp_path / "b", image_size=32, shard_size=15, data_cfg=cfg)
    a, b = shard_bytes_of(tmp_path / "a"), shard_bytes_of(tmp_path / "b")
    assert len(a) == 3 and a == b
    assert read_manifest(tmp_path / "a") == read_manifest(tmp_path / "b")
    for name in a:  # fixed metadata in every member
        with tarfile.open(tmp_path / "a" / name) as tar:
            assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in tar.getmembers())


def test_parallel_workers_write_the_same_shards(tmp_path: Path) -> None:
    """Spawned workers rebuild the source themselves; shapes, because it loads fastest."""
    cfg = DataConfig(n_samples=40)
    shard("shapes", tmp_path / "one", image_size=32, shard_size=10, data_cfg=cfg, workers=1)
    report = shard(
        "shapes", tmp_path / "two", image_size=32, shard_size=10, data_cfg=cfg, workers=2
    )
    assert report.num_shards == 4
    assert shard_bytes_of(tmp_path / "one") == shard_bytes_of(tmp_path / "two")
    assert read_manifest(tmp_path / "one") == read_manifest(tmp_path / "two")


def test_parse_bytes() -> None:
    assert parse_bytes("256MB") == 256_000_000
    assert parse_bytes("1.5GB") == 1_500_000_000
    assert parse_bytes("64kb") == 64_000
    assert parse_bytes("512MiB") == 512 * 1024**2
    assert parse_bytes("2GiB") == 2 * 1024**3
    assert parse_bytes("4096") == 4096
    for bad in ("", "MB", "12XB", "-5MB", "0"):
        with pytest.raises(ValueError, match="shard-bytes"):
            parse_bytes(bad)


def test_shard_bytes_sets_the_count(tmp_path: Path) -> None:
    limit = 20_000
    cfg = DataConfig(n_samples=40)
    report = shard("shapes", tmp_path, image_size=32, shard_bytes=limit, data_cfg=cfg)
    m = read_manifest(tmp_path)
    counts = [s.num_samples for s in m.shards]
    assert report.num_shards > 2 and len(set(counts[:-1])) == 1  # one count, last one smaller
    for entry in m.shards[:-1]:
        assert limit / 2 < entry.num_bytes <= limit + 10240  # within a tar record of the target


def test_size_and_bytes_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        shard("digits", tmp_path, shard_size=10, shard_bytes=1000)


# ---------------------------------------------------------------- resume


def test_resume_after_interruption(tmp_path: Path) -> None:
    shard("digits", tmp_path, image_size=8, shard_size=500)
    before = shard_bytes_of(tmp_path)
    manifest = (tmp_path / MANIFEST).read_text()
    # a crash: no manifest yet, shard 1 never renamed, a temporary left behind
    (tmp_path / MANIFEST).unlink()
    (tmp_path / "data-000001.tar").unlink()
    stale = tmp_path / ".data-000001.tar.tmp-99999"
    stale.write_bytes(b"half a shard")
    report = shard("digits", tmp_path, image_size=8, shard_size=500)
    assert report.shards_reused == 3 and report.num_samples == 1797
    assert shard_bytes_of(tmp_path) == before
    assert (tmp_path / MANIFEST).read_text() == manifest
    assert not stale.exists() and not list(tmp_path.glob(".*tmp*"))


def test_resume_redoes_shards_of_other_settings(tmp_path: Path) -> None:
    shard("digits", tmp_path, image_size=8, shard_size=500)
    report = shard("digits", tmp_path, image_size=8, shard_size=500, image_format="npy")
    assert report.shards_reused == 0
    assert read_manifest(tmp_path).image_format == "npy"
    # fewer, larger shards: the old extra shards and sidecars are removed
    report = shard("digits", tmp_path, image_size=8, shard_size=1000)
    assert report.shards_reused == 0 and sorted(shard_bytes_of(tmp_path)) == [
        "data-000000.tar",
        "data-000001.tar",
    ]
    assert len(list(tmp_path.glob(".*.stats.json"))) == 2


def test_sidecar_without_tar_is_not_complete(tmp_path: Path) -> None:
    """A crash between the sidecar and the rename: the shard must be written again."""
    shard("digits", tmp_path, image_size=8, shard_size=1000)
    (tmp_path / "data-000000.tar").unlink()
    report = shard("digits", tmp_path, image_size=8, shard_size=1000)
    assert report.shards_reused == 1 and read_manifest(tmp_path).num_samples == 1797


# ---------------------------------------------------------------- bad input


def bad_folder(root: Path) -> Path:
    """Every kind of bad input beside four good RGB images."""
    root.mkdir()
    for i in range(4):
        rgb(seed=i).save(root / f"ok_{i}.png")
    rgb(seed=9).save(root / "truncated.png")
    data = (root / "truncated.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "fake.jpg").write_text("this is not a JPEG")
    (root / "notes.txt").write_text("not an image")
    rgb(seed=10).convert("CMYK").save(root / "cmyk.jpg")
    deep = np.random.default_rng(0).integers(0, 65535, (20, 20), dtype=np.uint16)
    Image.fromarray(deep).save(root / "deep16.png")
    rgba = rgb(seed=11).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(root / "rgba.png")
    rgb(seed=12).convert("P").save(root / "palette.png")
    rgb(seed=13).convert("L").save(root / "gray.png")
    rgb(2, seed=14).save(root / "tiny.png")
    rgb(seed=15).save(root / "dup.png")
    rgb(seed=16).save(root / "dup.jpg")
    rgb(seed=17).save(root / "a.b.png")
    rgb(seed=18).save(root / "a_b.png")
    return root


def test_bad_input_is_counted(tmp_path: Path) -> None:
    root = bad_folder(tmp_path / "bad")
    out = tmp_path / "out"
    report = shard(f"folder:{root}", out, image_size=16, shard_size=5)
    p = lambda name: str(root / name)  # noqa: E731
    assert report.skipped == {"corrupt": 2, "too_small": 1, "not_image": 1}
    assert report.converted == {"converted_mode": 5, "duplicate_name": 2}
    assert sorted(report.examples["corrupt"]) == [p("fake.jpg"), p("truncated.png")]
    assert report.examples["too_small"] == [p("tiny.png")]
    assert report.examples["not_image"] == [p("notes.txt")]
    assert sorted(report.examples["converted_mode"]) == sorted(
        p(n) for n in ("cmyk.jpg", "deep16.png", "rgba.png", "palette.png", "gray.png")
    )
    assert sorted(report.examples["duplicate_name"]) == [p("a_b.png"), p("dup.png")]
    assert report.num_samples == 13
    samples = read_samples(out)
    assert {"dup", "dup__1", "a_b", "a_b__1", "gray", "deep16", "cmyk"} <= set(samples)
    assert json.loads(samples["dup__1"]["json"]) == {"source_path": "dup.png"}
    for members in samples.values():
        assert decode_image(members["png"], "png", 3).shape == (3, 16, 16)
    m = read_manifest(out)
    assert m.skipped == report.skipped and m.num_samples == 13
    # 16 images in shards of 5: the last holds only truncated.png, so it is neither written nor
    # listed
    assert [s.name for s in m.shards] == [f"data-00000{i}.tar" for i in range(3)]
    assert sorted(shard_bytes_of(out)) == [s.name for s in m.shards]
    summary = report.summary()
    assert "corrupt: 2" in summary and "truncated.png" in summary and "converted 7" in summary
    # the counts survive a resume, from the sidecars
    again = shard(f"folder:{root}", out, image_size=16, shard_size=5)
    assert again.shards_reused == report.num_shards
    assert (again.skipped, again.converted) == (report.skipped, report.converted)


def test_strict_refuses_bad_input_before_writing(tmp_path: Path) -> None:
    root = bad_folder(tmp_path / "bad")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"--strict: .*notes\.txt: not_image"):
        shard(f"folder:{root}", out, image_size=16, strict=True)
    assert not list(out.glob("*.tar"))


@pytest.mark.parametrize(
    ("name", "reason"),
    [("truncated.png", "corrupt"), ("gray.png", "converted_mode"), ("tiny.png", "too_small")],
)
def test_strict_fails_at_the_sample(tmp_path: Path, name: str, reason: str) -> None:
    root = image_folder(tmp_path / "imgs", 3)
    bad = bad_folder(tmp_path / "bad")
    (root / name).write_bytes((bad / name).read_bytes())
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=rf"{name}: {reason}"):
        shard(f"folder:{root}", out, image_size=16, strict=True)
    assert not (out / MANIFEST).exists() and not list(out.glob(".*tmp*"))


def test_huge_image_is_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = image_folder(tmp_path / "imgs", 2, size=16)
    rgb(64, seed=5).save(root / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64*64 > 2x: a decompression bomb
    report = shard(f"folder:{root}", tmp_path / "out", image_size=16)
    assert report.skipped == {"too_large": 1} and report.examples["too_large"] == [
        str(root / "huge.png")
    ]
    assert report.num_samples == 2


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        shard(f"folder:{tmp_path / 'empty'}", tmp_path / "out")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="no images"):
        shard(f"folder:{tmp_path / 'text'}", tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        shard(f"folder:{tmp_path / 'missing'}", tmp_path / "out")


# ---------------------------------------------------------------- labels files


def test_csv_labels_with_a_missing_image(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs", 4)
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\nimg_0.png,dog\nimg_1.png,cat\n./img_2.png,dog\n")
    report = shard(f"folder:{root}", tmp_path / "out", image_size=16, labels_file=str(labels))
    assert report.skipped == {"missing_label": 1}
    assert report.examples["missing_label"] == [str(root / "img_3.png")]
    m = read_manifest(tmp_path / "out")
    assert (m.label_type, m.label_names, m.num_samples) == ("class", ["cat", "dog"], 3)
    got = {k: int(v["cls"]) for k, v in read_samples(tmp_path / "out").items()}
    assert got == {"img_0": 1, "img_1": 0, "img_2": 1}
    with pytest.raises(ValueError, match=r"img_3\.png: missing_label"):
        shard(f"folder:{root}", tmp_path / "o2", labels_file=str(labels), strict=True)
    assert not (tmp_path / "o2").exists() or not list((tmp_path / "o2").glob("*.tar"))


def test_iclevr_json_labels_with_objects_file(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    image_folder(root / "part1", 2)  # subfolders are not classes once a labels file is given
    image_folder(root, 1)
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps({"gray cube": 0, "red cube": 1, "blue sphere": 2}))
    labels = root / "train.json"  # inside the folder: not counted as a non-image file
    labels.write_text(
        json.dumps(
            {
                "img_0.png": ["red cube", "blue sphere"],  # top-level file
                "part1/img_0.png": ["gray cube"],  # by relative path
                "part1/img_1.png": [],
            }
        )
    )
    report = shard(
        f"folder:{root}",
        tmp_path / "out",
        image_size=16,
        labels_file=str(labels),
        objects_file=str(objects),
    )
    assert report.skipped == {} and report.num_samples == 3
    m = read_manifest(tmp_path / "out")
    assert (m.label_type, m.label_names) == ("multi", ["gray cube", "red cube", "blue sphere"])
    samples = read_samples(tmp_path / "out")
    got = {k: decode_label(v, "multi", 3).tolist() for k, v in samples.items()}
    assert got == {
        "img_0": [0.0, 1.0, 1.0],
        "part1/img_0": [1.0, 0.0, 0.0],
        "part1/img_1": [0.0, 0.0, 0.0],
    }
    meta = json.loads(samples["img_0"]["json"])
    assert meta == {"labels": [1, 2], "source_path": "img_0.png"}


def test_label_vocabulary_without_objects_file(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs", 2)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"img_0.png": ["zebra", "ant"], "img_1.png": ["ant"]}))
    shard(f"folder:{root}", tmp_path / "out", image_size=16, labels_file=str(labels))
    assert read_manifest(tmp_path / "out").label_names == ["ant", "zebra"]  # sorted
    labels.write_text(json.dumps({"img_0.png": ["unicorn"]}))
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps(["ant", "zebra"]))
    with pytest.raises(ValueError, match="unicorn"):
        shard(
            f"folder:{root}",
            tmp_path / "o2",
            labels_file=str(labels),
            objects_file=str(objects),
        )


def test_labels_file_errors(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs", 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("name,class\nimg_0.png,cat\n")
    with pytest.raises(ValueError, match="filename,label"):
        shard(f"folder:{root}", tmp_path / "out", labels_file=str(bad))
    with pytest.raises(FileNotFoundError, match="--labels"):
        shard(f"folder:{root}", tmp_path / "out", labels_file=str(tmp_path / "none.json"))
    with pytest.raises(ValueError, match="folder:<path> sources only"):
        shard("digits", tmp_path / "out", labels_file=str(bad))


# ---------------------------------------------------------------- CLI


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["shard", "digits", str(out), "--image-size", "8", "--shard-size", "900"]
    assert main([*argv, "--format", "jpg", "--channels", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str(out / MANIFEST) and "1797 samples in 2 shards" in lines[0]
    m = read_manifest(out)
    assert (m.num_samples, m.image_format, m.channels) == (1797, "jpg", 3)
    members = read_samples(out)["00000000"]
    assert decode_image(members["jpg"], "jpg", 3).shape == (3, 8, 8)


def test_cli_rejects_size_with_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["shard", "digits", str(tmp_path), "--shard-size", "10", "--shard-bytes", "1MB"])
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["shard", "digits", str(tmp_path), "--shard-bytes", "lots"])
    assert e.value.code == 2


def test_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shard", "toy2d:ring8", str(tmp_path)]) == 2
    assert "not images" in capsys.readouterr().err


# ---------------------------------------------------------------- sample order


def test_folder_stored_class_by_class_gives_mixed_shards(tmp_path: Path) -> None:
    """Shards cut in folder order would hold one class each, and a loader worker streams whole
    shards: batches of one class. Every shard is a random sample of the data set instead, the
    same one on every run, with each file in exactly one shard."""
    root = tmp_path / "imgs"
    for name in ("a", "b", "c"):
        image_folder(root / name, 20, size=8)
    out = tmp_path / "out"
    shard(f"folder:{root}", out, image_size=8, shard_size=10)
    per_shard = []
    for entry in read_manifest(out).shards:
        with tarfile.open(out / entry.name) as tar:
            keys = [m.name.split(".", 1)[0] for m in tar.getmembers() if m.name.endswith(".cls")]
        per_shard.append(keys)
    assert len(per_shard) == 6 and all(len(keys) == 10 for keys in per_shard)
    assert sorted(k for keys in per_shard for k in keys) == sorted(
        f"{c}/img_{i}" for c in "abc" for i in range(20)
    )
    assert all(len({k.split("/")[0] for k in keys}) >= 2 for keys in per_shard)
    before = shard_bytes_of(out)
    shard(f"folder:{root}", tmp_path / "again", image_size=8, shard_size=10)
    assert shard_bytes_of(tmp_path / "again") == before
