"""Image metrics on features with known answers, the evaluator network, and the extractors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from gandist.config import DataConfig
from gandist.evaluation.classifier import (
    EvaluatorNet,
    EvaluatorSpec,
    default_evaluator_dir,
    load_evaluator,
    save_evaluator,
)
from gandist.evaluation.features import (
    INCEPTION_FILE,
    DomainExtractor,
    InceptionExtractor,
    resolve_inception_weights,
)
from gandist.evaluation.image_eval import _chunk
from gandist.evaluation.image_metrics import fid_kid, label_agreement, prdc
from gandist.evaluation.reference import load_or_build_reference, real_samples
from gandist.evaluation.train_evaluator import train_evaluator


def gaussian(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_fid_of_a_shifted_copy_is_the_squared_shift() -> None:
    real = gaussian(500, 8, 0)
    shift = torch.tensor([0.5, -1.0, 0, 0, 0, 0, 0, 2.0], dtype=torch.float64)
    scores = fid_kid(real, real + shift)  # same covariance: FID = |mean difference|^2
    assert scores["fid"] == pytest.approx(float(shift.pow(2).sum()), rel=1e-4)
    same = fid_kid(real, real.clone())
    assert abs(same["fid"]) < 1e-3
    # KID compares random subsets, so a copy scores near 0, far below the shifted set
    assert abs(same["kid_mean"]) < 0.05 * scores["kid_mean"]
    assert scores["kid_mean"] > 10 * scores["kid_std"] > 0  # subsets differ: a real spread


def test_fid_kid_need_two_samples() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        fid_kid(gaussian(1, 4, 0), gaussian(10, 4, 1))


def test_prdc_separates_matching_and_disjoint_sets() -> None:
    real = gaussian(300, 4, 0)
    match = prdc(real, gaussian(300, 4, 1), nearest_k=5)
    assert match["precision"] > 0.8 and match["recall"] > 0.8 and match["coverage"] > 0.8
    far = prdc(real, gaussian(300, 4, 2) + 100.0, nearest_k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    # half the fakes collapsed onto one point: precision stays, recall and coverage drop
    collapsed = torch.cat([gaussian(150, 4, 3), real[:1].repeat(150, 1)])
    col = prdc(real, collapsed, nearest_k=5)
    assert col["recall"] < match["recall"] and col["coverage"] < match["coverage"]
    with pytest.raises(ValueError, match="nearest_k"):
        prdc(real[:5], real[:5], nearest_k=5)


def test_label_agreement_class_and_multi() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    assert label_agreement(logits, torch.tensor([0, 1, 2, 1]), "class") == {"accuracy": 0.75}
    # sample 0 has labels {0, 2}: top-2 predictions {0, 1} -> 1 hit of 2
    # sample 1 has label {1}: top-1 {1} -> 1 hit of 1. iCLEVR accuracy: 2 hits / 3 labels.
    logits = torch.tensor([[3.0, 2.0, -1.0, -5.0], [-1.0, 4.0, -2.0, -3.0]])
    y = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]])
    out = label_agreement(logits, y, "multi")
    assert out["accuracy"] == pytest.approx(2 / 3)
    # thresholded at p > 0.5: predicted {0, 1} and {1}; TP 2, FP 1, FN 1 -> F1 = 2/3
    assert out["f1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="unknown label type"):
        label_agreement(logits, y, "none")


def test_chunks_cover_every_index_once() -> None:
    for n, world in ((10, 3), (2, 4), (7, 1)):
        spans = [_chunk(n, r, world) for r in range(world)]
        covered = [i for lo, hi in spans for i in range(lo, hi)]
        assert covered == list(range(n))


@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_evaluator_net_shapes_and_round_trip(size: int, tmp_path: Path) -> None:
    spec = EvaluatorSpec(channels=3, image_size=size, label_type="multi", num_labels=24)
    net = EvaluatorNet(spec).eval()
    f, logits = net(torch.zeros(2, 3, size, size))
    assert f.shape == (2, 128) and logits.shape == (2, 24)
    save_evaluator(net, spec, tmp_path)
    again, spec2 = load_evaluator(tmp_path)
    assert spec2 == spec
    x = torch.randn(3, 3, size, size)
    assert torch.equal(again(x)[1], net(x)[1])


def test_missing_evaluator_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="gandist train-evaluator"):
        load_evaluator(tmp_path / "nothing")
    assert default_evaluator_dir(DataConfig(source="shapes", image_size=32)) == Path(
        "data/evaluators/shapes-32px-nativec-ndefault-seed0"
    )


def test_inception_weights_lookup_and_loading(tmp_path: Path, monkeypatch) -> None:
    """The real InceptionV3 loading path, fed a local weights file (random values: the test
    checks wiring and shapes, not the published features)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("GANDIST_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match="eval.inception_weights=PATH"):
        resolve_inception_weights("")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        resolve_inception_weights(str(tmp_path / "nope.pth"))
    assert resolve_inception_weights("download") is None

    from torch_fidelity import feature_extractor_inceptionv3 as fx

    with monkeypatch.context() as m:  # build the architecture once without any weights
        m.setattr(fx, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(fx.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        blank = fx.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    cache = tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_FILE
    cache.parent.mkdir(parents=True)
    torch.save(blank.state_dict(), cache)
    assert resolve_inception_weights("") == str(cache)

    ext = InceptionExtractor(resolve_inception_weights(""))
    grey = torch.rand(2, 1, 32, 32) * 2 - 1
    feats, logits = ext(grey)
    assert feats.shape == (2, 2048) and logits is None and torch.isfinite(feats).all()
    assert torch.equal(ext(grey.repeat(1, 3, 1, 1))[0], feats)  # grey == its RGB copy


@pytest.fixture(scope="module")
def digits_evaluator(tmp_path_factory) -> tuple[Path, DataConfig]:
    root = tmp_path_factory.mktemp("data")
    data = DataConfig(source="digits", image_size=16, root=str(root))
    out, spec = train_evaluator(data, epochs=8, progress=False)
    return out, data


def test_train_evaluator_learns_digits(digits_evaluator) -> None:
    out, data = digits_evaluator
    assert out == default_evaluator_dir(data)
    net, spec = load_evaluator(out)
    assert spec.label_type == "class" and spec.num_labels == 10 and spec.image_size == 16
    assert spec.heldout["samples"] == 179
    assert spec.heldout["accuracy"] > 0.8  # chance is 0.1


def test_reference_features_are_cached_per_evaluator(digits_evaluator) -> None:
    out, data = digits_evaluator
    ext = DomainExtractor(out)
    cpu = torch.device("cpu")
    ref = load_or_build_reference(ext, data, out, 300, 0, 128, cpu, progress=False)
    assert ref["features"].shape == (300, 128) and ref["labels"].shape == (300,)
    assert ref["logits"].shape == (300, 10)
    files = list(out.glob("reference-domain-*-digits-16px-nativec-n300-seed0.safetensors"))
    assert len(files) == 1 and ext.digest in files[0].name
    stamp = files[0].stat().st_mtime_ns
    again = load_or_build_reference(ext, data, out, 300, 0, 128, cpu, progress=False)
    assert files[0].stat().st_mtime_ns == stamp and torch.equal(again["features"], ref["features"])
    x, y = real_samples(data, 300, 0)
    assert torch.equal(ref["labels"], y.float())
    # the evaluator recognises real digits: the ceiling conditional accuracy is measured against
    real_acc = label_agreement(ref["logits"], ref["labels"], "class")["accuracy"]
    assert real_acc > 0.8
    assert math.isfinite(fid_kid(ref["features"], ref["features"] + 0.1)["fid"])


def test_train_evaluator_rejects_unlabelled_and_point_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an image source"):
        train_evaluator(DataConfig(source="toy2d:ring8", root=str(tmp_path)), progress=False)
    with pytest.raises(ValueError, match="shards"):
        train_evaluator(DataConfig(source="shards:/x", root=str(tmp_path)), progress=False)
