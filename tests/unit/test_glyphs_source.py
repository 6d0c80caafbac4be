"""The built-in `glyphs` source: determinism, labels and their frequencies, legible letters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gandist.config import DataConfig
from gandist.data.keys import dataset_key
from gandist.data.sources import glyphs
from gandist.data.sources.registry import load_source


def _src(**kw) -> object:
    return load_source(DataConfig(source="glyphs", **kw))


def test_deterministic_prefix_stable_and_seeded() -> None:
    a = _src(n_samples=40, seed=3).tensors
    b = _src(n_samples=40, seed=3).tensors
    half = _src(n_samples=20, seed=3).tensors
    other = _src(n_samples=20, seed=4).tensors
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(a[0][:20], half[0]) and torch.equal(a[1][:20], half[1])
    assert not torch.equal(half[0], other[0])
    assert dataset_key(DataConfig(source="glyphs", n_samples=20, seed=3)) != dataset_key(
        DataConfig(source="glyphs", n_samples=20, seed=4)
    )


def test_info_range_and_default_size() -> None:
    src = _src(n_samples=16)
    info = src.info
    assert info.label_type == "class" and info.num_labels == len(glyphs.LETTERS) == 5
    assert info.label_names == ("A", "B", "D", "G", "W")
    assert info.sample_shape == (3, 32, 32)
    x, y = src.tensors
    assert x.dtype == torch.float32 and x.min() >= -1.0 and x.max() <= 1.0
    assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) < 5
    grey = _src(n_samples=4, channels=1, image_size=48).tensors[0]
    assert grey.shape == (4, 1, 48, 48)


def test_classes_follow_their_weights() -> None:
    _, y = glyphs.generate(3000, 16, seed=0)
    share = np.bincount(y, minlength=5) / len(y)
    want = np.asarray(glyphs.CLASS_WEIGHTS) / sum(glyphs.CLASS_WEIGHTS)
    assert np.abs(share - want).max() < 0.03
    assert share[0] > 3 * share[-1]  # imbalanced on purpose: the rarest is a quarter as common


@pytest.mark.parametrize("size", [32, 64])
def test_each_image_holds_one_flat_coloured_letter_at_its_own_place(size: int) -> None:
    """A letter's inside is one colour (the noise never repeats a pixel that often), covering a
    plausible share of the frame; draws of one letter sit at different places."""
    places = []
    for i in range(10):
        img = glyphs.render_glyph(i % 5, size, np.random.default_rng(i))
        colours, inverse, counts = np.unique(
            img.reshape(-1, 3), axis=0, return_inverse=True, return_counts=True
        )
        flat = (inverse.reshape(size, size) == counts.argmax()).astype(float)
        assert colours[counts.argmax()].mean() >= glyphs.LETTER_MIN
        assert 0.02 < flat.mean() < 0.35, (i, flat.mean())
        ys, xs = np.nonzero(flat)
        places.append((ys.mean() / size, xs.mean() / size))
    assert len({(round(a, 1), round(b, 1)) for a, b in places}) > 5


def test_the_five_letters_differ() -> None:
    masks = [torch.from_numpy(m)[None, None] for m in glyphs.glyph_masks()]
    small = [torch.nn.functional.interpolate(m, size=(24, 24), mode="area") > 0.5 for m in masks]
    for i in range(5):
        for j in range(i + 1, 5):
            iou = (small[i] & small[j]).sum() / (small[i] | small[j]).sum()
            assert iou < 0.8, (glyphs.LETTERS[i], glyphs.LETTERS[j], float(iou))


def test_errors() -> None:
    with pytest.raises(ValueError, match="takes no argument"):
        load_source(DataConfig(source="glyphs:5"))
    with pytest.raises(ValueError, match="too small"):
        glyphs.render_glyph(0, 8, np.random.default_rng(0))
    with pytest.raises(ValueError, match="data.channels"):
        _src(n_samples=4, channels=2)
    with pytest.raises(ValueError, match="data.seed"):
        _src(n_samples=4, seed=-1)
