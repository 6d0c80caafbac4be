"""Built-in data sources: shapes, ranges, labels, determinism, file formats and their errors."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from gandist.config import DataConfig
from gandist.data.sources import shapes, toy2d
from gandist.data.sources.pil import ImageReadError
from gandist.data.sources.registry import SOURCES, load_source

BG = np.array(shapes.BACKGROUND_RGB)


def _src(source: str, **kw) -> object:
    return load_source(DataConfig(source=source, **kw))


# ---------------------------------------------------------------- registry


def test_registry_names() -> None:
    assert set(SOURCES.names()) >= {
        "digits",
        "shapes",
        "glyphs",
        "toy2d",
        "points",
        "torchvision",
        "folder",
    }


def test_unknown_source_suggests_close_name() -> None:
    with pytest.raises(ValueError, match=r"data\.source.*did you mean 'digits'") as e:
        _src("digit")
    assert "toy2d" in str(e.value)  # lists the valid names


def test_argument_rules() -> None:
    with pytest.raises(ValueError, match="takes no argument"):
        _src("digits:8")
    with pytest.raises(ValueError, match="ring8"):
        _src("toy2d:ring9")
    with pytest.raises(ValueError, match="needs a file"):
        _src("points")


# ---------------------------------------------------------------- digits


def test_digits_default() -> None:
    s = _src("digits")
    x, y = s.tensors
    assert x.shape == (1797, 1, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert x.min() == -1.0 and x.max() > 0.9  # full range used, background at -1
    assert y.dtype == torch.int64 and set(y.tolist()) == set(range(10))
    assert len(s) == 1797 and s.info.sample_shape == (1, 32, 32)
    assert s.info.label_type == "class" and s.info.label_names == tuple("0123456789")
    assert s.info.source == "digits"
    xi, yi = s.dataset[5]
    assert torch.equal(xi, x[5]) and yi == y[5]


def test_digits_size_and_channels() -> None:
    x, _ = _src("digits", image_size=16, channels=3).tensors
    assert x.shape == (1797, 3, 16, 16)
    assert torch.equal(x[:, 0], x[:, 2])
    x4, _ = _src("digits", image_size=4).tensors  # downsizing path (antialiased)
    assert x4.shape == (1797, 1, 4, 4) and x4.min() >= -1.0 and x4.max() <= 1.0


# ---------------------------------------------------------------- shapes


def test_shapes_label_names_order() -> None:
    assert len(shapes.LABEL_NAMES) == 24
    assert shapes.LABEL_NAMES[:4] == ("gray cube", "gray sphere", "gray cylinder", "red cube")
    assert shapes.LABEL_NAMES[-1] == "yellow cylinder"
    assert shapes.LABEL_NAMES[shapes.label_index("red", "sphere")] == "red sphere"


def test_shapes_source_deterministic_and_prefix_stable() -> None:
    a = _src("shapes", n_samples=24, image_size=32, seed=3)
    b = _src("shapes", n_samples=24, image_size=32, seed=3)
    half = _src("shapes", n_samples=12, image_size=32, seed=3)
    other = _src("shapes", n_samples=12, image_size=32, seed=4)
    xa, ya = a.tensors
    assert xa.shape == (24, 3, 32, 32) and ya.shape == (24, 24) and ya.dtype == torch.float32
    assert xa.min() >= -1.0 and xa.max() <= 1.0
    assert torch.equal(xa, b.tensors[0]) and torch.equal(ya, b.tensors[1])
    assert torch.equal(xa[:12], half.tensors[0]) and torch.equal(ya[:12], half.tensors[1])
    assert not torch.equal(xa[:12], other.tensors[0])
    info = a.info
    assert info.label_type == "multi" and info.num_labels == 24
    assert info.label_names == shapes.LABEL_NAMES and info.sample_shape == (3, 32, 32)


def test_shapes_labels_one_to_three_distinct() -> None:
    _, y = _src("shapes", n_samples=200, image_size=16, seed=0).tensors
    assert set(torch.unique(y).tolist()) == {0.0, 1.0}
    counts = y.sum(dim=1)
    assert counts.min() == 1 and counts.max() == 3
    assert {1, 2, 3} == set(counts.long().tolist())
    for i in range(50):
        labels = shapes.sample_labels(np.random.default_rng(i))
        assert 1 <= len(labels) <= 3 and len(set(labels)) == len(labels)


def test_shapes_objects_do_not_overlap_heavily() -> None:
    for i in range(100):
        p = shapes.place_objects(3, np.random.default_rng(i))
        for a in range(3):
            for b in range(a + 1, 3):
                d = np.hypot(*(p[a, :2] - p[b, :2]))
                assert d >= 0.9 * (p[a, 2] + p[b, 2])
        assert np.all(p[:, :2] - p[:, 2:] >= 0) and np.all(p[:, :2] + p[:, 2:] <= 1)


def _object_mask(img: np.ndarray) -> np.ndarray:
    return np.abs(img.astype(int) - BG).max(axis=-1) > 12


def test_red_sphere_is_red_where_placed() -> None:
    size, label = 64, shapes.label_index("red", "sphere")
    img = shapes.render_scene([label], size, np.random.default_rng(7))
    cx, cy, r = shapes.place_objects(1, np.random.default_rng(7))[0] * size  # same draws
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    rgb = img.astype(int)
    red = (rgb[..., 0] > rgb[..., 1] + 50) & (rgb[..., 0] > rgb[..., 2] + 50)
    ys, xs = np.nonzero(red)
    assert red.sum() > 0.6 * np.pi * r * r
    assert abs(xs.mean() + 0.5 - cx) < 2.5 and abs(ys.mean() + 0.5 - cy) < 2.5
    assert np.hypot(xs + 0.5 - cx, ys + 0.5 - cy).max() <= r + 1.5
    assert not _object_mask(img)[red == 0].sum() > 0.3 * red.sum()  # little non-red object


@pytest.mark.parametrize("size", [32, 64, 128])
def test_cube_sphere_cylinder_silhouettes(size: int) -> None:
    place = np.array([[0.5, 0.5, 0.3]])
    fills, aspects = {}, {}
    for shape in shapes.SHAPES:
        img = shapes.render_objects([shapes.label_index("blue", shape)], place, size)
        mask = _object_mask(img)
        ys, xs = np.nonzero(mask)
        h, w = np.ptp(ys) + 1, np.ptp(xs) + 1
        fills[shape] = mask.sum() / (h * w)
        aspects[shape] = h / w
    assert fills["cube"] > 0.9  # a square fills its bounding box
    assert 0.65 < fills["sphere"] < 0.86  # a disc fills about pi / 4
    assert abs(aspects["cube"] - 1) < 0.1 and abs(aspects["sphere"] - 1) < 0.1
    assert aspects["cylinder"] > 1.15  # taller than wide


def test_shapes_grayscale_and_small_size_error() -> None:
    x, _ = _src("shapes", n_samples=4, image_size=32, channels=1).tensors
    assert x.shape == (4, 1, 32, 32)
    with pytest.raises(ValueError, match="too small"):
        shapes.render_scene([0], 8, np.random.default_rng(0))
    with pytest.raises(ValueError, match="duplicate"):
        shapes.render_scene([3, 3], 32, np.random.default_rng(0))


# ---------------------------------------------------------------- toy2d


@pytest.mark.parametrize(
    "fn, modes, std",
    [
        (toy2d.ring8, toy2d.ring8_modes(), toy2d.RING8_STD),
        (toy2d.grid25, toy2d.grid25_modes(), toy2d.GRID25_STD),
    ],
)
def test_mixture_means_near_modes(fn, modes: np.ndarray, std: float) -> None:
    pts = fn(20000, np.random.default_rng(0))
    assert pts.dtype == np.float32 and pts.shape == (20000, 2)
    nearest = np.argmin(((pts[:, None, :] - modes[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(nearest, minlength=len(modes))
    assert counts.min() > 0.6 * len(pts) / len(modes)
    for k, centre in enumerate(modes):
        members = pts[nearest == k]
        assert np.allclose(members.mean(axis=0), centre, atol=0.01)
        assert abs(members.std(axis=0).mean() - std) < 0.2 * std


def test_toy_modes_values() -> None:
    ring = toy2d.ring8_modes()
    assert np.allclose(np.hypot(ring[:, 0], ring[:, 1]), 2.0)
    assert sorted(set(toy2d.grid25_modes()[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]


def test_toy2d_source() -> None:
    s = _src("toy2d:ring8", seed=1)
    x, y = s.tensors
    assert x.shape == (10000, 2) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and not y.any()
    assert s.info.kind == "points" and s.info.label_type == "none" and s.info.sample_shape == (2,)
    assert len(s.info.extras["modes"]) == 8 and s.info.extras["std"] == 0.02
    again = _src("toy2d:ring8", seed=1, n_samples=500).tensors[0]
    assert torch.equal(again, _src("toy2d:ring8", seed=1, n_samples=500).tensors[0])
    assert len(_src("toy2d:grid25", n_samples=300).info.extras["modes"]) == 25
    for name in ("spiral", "swissroll"):
        p = _src(f"toy2d:{name}", n_samples=2000)
        assert p.info.extras == {}
        assert p.tensors[0].abs().max() < 2.6 and p.tensors[0].abs().max() > 1.5


# ---------------------------------------------------------------- points files


@pytest.fixture
def pts() -> np.ndarray:
    return np.random.default_rng(0).normal(50.0, 30.0, (40, 2))  # user units, not rescaled


def test_points_npy_and_npz(tmp_path: Path, pts: np.ndarray) -> None:
    np.save(tmp_path / "p.npy", pts)
    s = _src(f"points:{tmp_path / 'p.npy'}")
    assert np.allclose(s.tensors[0].numpy(), pts, atol=1e-4)
    assert s.tensors[0].dtype == torch.float32 and s.info.extras == {}
    np.savez(tmp_path / "one.npz", pts)
    assert np.allclose(toy2d.load_points(tmp_path / "one.npz"), pts, atol=1e-4)
    np.savez(tmp_path / "two.npz", a=pts, b=pts * 2)
    assert np.allclose(toy2d.load_points(tmp_path / "two.npz", "b"), pts * 2, atol=1e-4)
    with pytest.raises(ValueError, match="a, b"):
        toy2d.load_points(tmp_path / "two.npz")


def test_points_csv_with_and_without_header(tmp_path: Path, pts: np.ndarray) -> None:
    np.savetxt(tmp_path / "plain.csv", pts, delimiter=",")
    np.savetxt(tmp_path / "head.csv", pts, delimiter=",", header="x,y", comments="")
    for name in ("plain.csv", "head.csv"):
        out = toy2d.load_points(tmp_path / name)
        assert out.shape == (40, 2) and np.allclose(out, pts, atol=1e-4)
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n3,oops\n")
    with pytest.raises(ValueError, match="bad.csv"):
        toy2d.load_points(tmp_path / "bad.csv")


def test_points_mat(tmp_path: Path, pts: np.ndarray) -> None:
    scipy.io.savemat(tmp_path / "points.mat", {"xx": pts})
    s = _src(f"points:{tmp_path / 'points.mat'}")
    assert np.allclose(s.tensors[0].numpy(), pts, atol=1e-4)
    scipy.io.savemat(tmp_path / "many.mat", {"xx": pts, "yy": pts[:5]})
    out = load_source(DataConfig(source=f"points:{tmp_path / 'many.mat'}", points_key="yy"))
    assert out.tensors[0].shape == (5, 2)
    with pytest.raises(ValueError, match=r"'zz'.*xx, yy"):
        toy2d.load_points(tmp_path / "many.mat", "zz")
    with pytest.raises(ValueError, match="points_key"):
        toy2d.load_points(tmp_path / "many.mat")


def test_points_errors(tmp_path: Path, pts: np.ndarray) -> None:
    np.save(tmp_path / "three.npy", np.zeros((10, 3)))
    with pytest.raises(ValueError, match=r"three\.npy.*\(10, 3\)"):
        toy2d.load_points(tmp_path / "three.npy")
    scipy.io.savemat(tmp_path / "t.mat", {"xx": pts.T})
    with pytest.raises(ValueError, match="transpose"):
        toy2d.load_points(tmp_path / "t.mat")
    bad = pts.copy()
    bad[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match=r"nan\.npy.*NaN.*row 3"):
        toy2d.load_points(tmp_path / "nan.npy")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        toy2d.load_points(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match=r"\.txt"):
        toy2d.load_points(tmp_path / "p.txt")


# ---------------------------------------------------------------- folder


def _write_images(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (255, 0, 0)).save(d / "rgb.png")
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(d / "clear.png")  # transparent -> white
    pal = Image.new("P", (24, 24), 0)
    pal.putpalette([0, 0, 255] * 256)
    pal.save(d / "pal.png")
    Image.fromarray(np.full((16, 16), 30000, np.uint16)).save(d / "deep.png")  # 16-bit gray
    Image.new("RGB", (16, 16), (0, 255, 0)).save(d / "green.jpg")


def test_folder_flat(tmp_path: Path) -> None:
    _write_images(tmp_path)
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")  # really high bit depth
    s = _src(f"folder:{tmp_path}", image_size=16)
    assert s.tensors is None and len(s) == 5
    assert s.info.label_type == "none" and s.info.num_labels == 0
    assert s.info.sample_shape == (3, 16, 16)
    items = {Path(f).name: s.dataset[i] for i, f in enumerate(s.dataset.files)}
    for x, y in items.values():
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32
        assert x.min() >= -1.0 and x.max() <= 1.0
        assert y.dtype == torch.int64 and y.item() == 0
    assert torch.allclose(items["rgb.png"][0][:, 8, 8], torch.tensor([1.0, -1.0, -1.0]))
    assert torch.all(items["clear.png"][0] == 1.0)
    assert torch.allclose(items["pal.png"][0][:, 0, 0], torch.tensor([-1.0, -1.0, 1.0]))
    deep = items["deep.png"][0]  # 30000 / 65535 of full scale, not clipped to white
    assert abs(deep.mean().item() - (2 * 30000 / 65535 - 1)) < 0.02
    gray = _src(f"folder:{tmp_path}", image_size=8, channels=1)
    assert gray.dataset[0][0].shape == (1, 8, 8) and gray.info.channels == 1


def test_folder_class_subfolders(tmp_path: Path) -> None:
    _write_images(tmp_path / "dogs" / "nested")
    (tmp_path / "cats").mkdir()
    Image.new("L", (10, 10), 128).save(tmp_path / "cats" / "c.bmp")
    (tmp_path / "empty").mkdir()
    s = _src(f"folder:{tmp_path}", image_size=8)
    assert s.info.label_type == "class" and s.info.label_names == ("cats", "dogs")
    assert len(s) == 6
    labels = [s.dataset[i][1].item() for i in range(len(s))]
    assert labels == [0, 1, 1, 1, 1, 1]


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        _src(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=str(tmp_path)):
        _src(f"folder:{tmp_path}")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    s = _src(f"folder:{tmp_path}")  # index build does not open files
    with pytest.raises(ImageReadError, match="broken.png") as e:
        s.dataset[0]
    assert e.value.path.endswith("broken.png")


# ---------------------------------------------------------------- torchvision


def test_torchvision_missing_data_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"data\.download=true.*data\.root"):
        _src("torchvision:MNIST", root=str(tmp_path / "none"), download=False)


def test_torchvision_unknown_name() -> None:
    with pytest.raises(ValueError, match="MNIST"):
        _src("torchvision:MNSIT")


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 + arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_torchvision_mnist_from_local_files(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.zeros((6, 28, 28), np.uint8)
    images[:, 10:18, 10:18] = 255
    labels = np.arange(6, dtype=np.uint8)
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    s = _src("torchvision:MNIST", root=str(tmp_path))
    assert s.tensors is None and len(s) == 6
    assert s.info.channels == 1 and s.info.image_size == 28  # native grayscale, native size
    assert s.info.label_type == "class" and s.info.num_labels == 10
    x, y = s.dataset[4]
    assert x.shape == (1, 28, 28) and x[0, 14, 14] == 1.0 and x[0, 0, 0] == -1.0
    assert y.dtype == torch.int64 and y.item() == 4
    rgb = _src("torchvision:MNIST", root=str(tmp_path), channels=3, image_size=16)
    assert rgb.dataset[0][0].shape == (3, 16, 16)


def test_a_sources_default_size_and_the_same_size_written_out_share_caches(tmp_path: Path) -> None:
    """digits without data.image_size are the 32 px digits: one key, so one set of auto shards
    and one evaluator (they were sharded twice, and the evaluator of one was not found)."""
    from gandist.data.keys import DEFAULT_IMAGE_SIZES, dataset_key

    for name, size in DEFAULT_IMAGE_SIZES.items():
        source = f"folder:{tmp_path}" if name == "folder" else name
        assert dataset_key(DataConfig(source=source)) == dataset_key(
            DataConfig(source=source, image_size=size)
        )
    assert _src("digits").info.image_size == DEFAULT_IMAGE_SIZES["digits"]
    assert _src("shapes", n_samples=4).info.image_size == DEFAULT_IMAGE_SIZES["shapes"]
    Image.new("RGB", (80, 80)).save(tmp_path / "a.png")
    assert _src(f"folder:{tmp_path}").info.image_size == DEFAULT_IMAGE_SIZES["folder"]
