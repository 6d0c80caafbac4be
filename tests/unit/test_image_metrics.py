"""Image metrics on features with known answers, the evaluator network, and the extractors."""

from __future__ import annotations

import dataclasses
import math
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

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
from gandist.evaluation.image_eval import ImageEvaluator, _chunk
from gandist.evaluation.image_metrics import (
    conditional_scores,
    fid_kid,
    label_agreement,
    label_diversity,
    mean_pairwise_distance,
    per_label_accuracy,
    prdc,
    predicted_for_label,
    thumbnails,
)
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
    assert torch.equal(ref["pixels"], thumbnails(x)) and ref["pixels"].shape == (300, 16 * 16)
    # a cache written before thumbnails were kept is rebuilt, not read without them
    save_file({k: v for k, v in ref.items() if k != "pixels"}, str(files[0]))
    rebuilt = load_or_build_reference(ext, data, out, 300, 0, 128, cpu, progress=False)
    assert torch.equal(rebuilt["pixels"], ref["pixels"])
    # the evaluator recognises real digits: the ceiling conditional accuracy is measured against
    real_acc = label_agreement(ref["logits"], ref["labels"], "class")["accuracy"]
    assert real_acc > 0.8
    assert math.isfinite(fid_kid(ref["features"], ref["features"] + 0.1)["fid"])


@pytest.mark.parametrize("workers", [0, 2])
def test_real_samples_from_shards_never_repeat_a_sample(tmp_path: Path, workers: int) -> None:
    """Asking a small shard set for more samples than it holds gives each sample at most once:
    reading on into the stream's next epoch returned 208 images of 203 with 14 repeats (each
    epoch drops the loader workers' last partial batches), so FID's reference had duplicates."""
    from gandist.data.shards.write import write_shards
    from gandist.data.sources.registry import load_source

    cfg = DataConfig(source="shapes", image_size=16, n_samples=203, shards="off")
    write_shards("shapes", tmp_path, image_size=16, shard_size=50, data_cfg=cfg, progress=False)
    x, _ = real_samples(DataConfig(source=f"shards:{tmp_path}", workers=workers), 1000, 0)
    distinct = torch.unique(x.flatten(1), dim=0)
    assert len(distinct) == len(x) and 203 - 2 * 15 <= len(x) <= 203
    source = load_source(cfg).tensors[0].flatten(1)
    assert torch.cdist(x.flatten(1), source).min(1).values.max() < 0.05  # decoded PNG rounding


def test_train_evaluator_rejects_unlabelled_and_point_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an image source"):
        train_evaluator(DataConfig(source="toy2d:ring8", root=str(tmp_path)), progress=False)
    # shards are read (tests/integration/test_foreign_data.py); missing ones are named
    with pytest.raises(FileNotFoundError, match="shards:/x: 1 of 1 shard file"):
        train_evaluator(DataConfig(source="shards:/x", root=str(tmp_path)), progress=False)


# ------------------------------------------------- per-label accuracy and diversity within a label


def clustered(n_per_label: int, num_labels: int, dim: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Features of `num_labels` well separated clusters (spread 1 around centres 20 apart)."""
    g = torch.Generator().manual_seed(seed)
    centres = 20.0 * torch.eye(num_labels, dim, dtype=torch.float64)
    y = torch.arange(num_labels).repeat_interleave(n_per_label)
    x = centres[y] + torch.randn(len(y), dim, generator=g, dtype=torch.float64)
    return x, y


def test_per_label_accuracy_picks_out_the_wrong_label() -> None:
    # 10 labels, 20 samples each; the evaluator sees the asked label except for label 0, which
    # the generator draws as a 4: overall accuracy 0.9 hides what the per-label vector shows
    y = torch.arange(10).repeat(20)
    seen = torch.where(y == 0, torch.full_like(y, 4), y)
    logits = torch.nn.functional.one_hot(seen, 10).float() * 5.0
    acc = per_label_accuracy(logits, y, "class")
    assert acc.tolist() == [0.0] + [1.0] * 9
    pred = predicted_for_label(logits, y)
    assert pred.tolist() == [4, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    scores = conditional_scores(
        torch.randn(200, 3), y, torch.randn(200, 3), y, "class", 10, fake_logits=logits
    )
    assert scores["cond_accuracy"] == pytest.approx(0.9)
    assert scores["cond_accuracy_min"] == 0.0
    assert scores["cond_label_accuracy/0"] == 0.0 and scores["cond_label_accuracy/7"] == 1.0
    assert scores["cond_label_predicted/0"] == 4.0 and scores["cond_label_predicted/4"] == 4.0
    # a label nobody asked for has no accuracy (NaN), and no key
    y_some = torch.tensor([1, 1, 2])
    acc = per_label_accuracy(torch.eye(3)[[1, 2, 2]], y_some, "class")
    assert math.isnan(acc[0]) and acc[1:].tolist() == [0.5, 1.0]
    assert predicted_for_label(torch.eye(3)[[1, 2, 2]], y_some).tolist() == [-1, 1, 2]
    scores = conditional_scores(
        torch.randn(3, 2), y_some, torch.randn(3, 2), y_some, "class", 3, torch.eye(3)[[1, 2, 2]]
    )
    assert "cond_label_accuracy/0" not in scores and scores["cond_accuracy_min"] == 0.5


def test_per_label_accuracy_of_label_sets_adds_up_to_iclevr_accuracy() -> None:
    # sample 0 asks {0, 2}, evaluator's top 2 {0, 1}: label 0 found, label 2 missed
    # sample 1 asks {1}, top 1 {1}; sample 2 asks {1, 2}, top 2 {2, 3}: 1 missed, 2 found
    logits = torch.tensor([[3.0, 2.0, -1.0, -5.0], [-1.0, 4.0, -2.0, -3.0], [0.0, -1.0, 5.0, 4.0]])
    y = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0], [0, 1, 1, 0]])
    acc = per_label_accuracy(logits, y, "multi")
    assert acc[:3].tolist() == [1.0, 0.5, 0.5] and math.isnan(acc[3])
    hits = float((acc[:3] * y.sum(dim=0)[:3]).sum())
    assert hits / float(y.sum()) == pytest.approx(label_agreement(logits, y, "multi")["accuracy"])
    scores = conditional_scores(torch.randn(3, 2), y, torch.randn(3, 2), y, "multi", 4, logits)
    assert scores["cond_accuracy_min"] == 0.5 and "cond_label_accuracy/3" not in scores
    assert not any(k.startswith("cond_label_predicted") for k in scores)  # classes only


def test_diversity_is_zero_for_one_image_per_label_and_one_for_a_perfect_generator() -> None:
    real, y = clustered(200, 10, 16, 0)
    perfect, _ = clustered(200, 10, 16, 1)  # a fresh draw of the same distribution
    div = label_diversity(real, y, perfect, y, "class", 10)
    assert div.shape == (10,) and ((div - 1).abs() < 0.05).all()
    # a generator that ignores z: every sample of a label is the same (plausible) image
    collapsed = real[y * 200]  # the first real sample of each label, repeated
    assert label_diversity(real, y, collapsed, y, "class", 10).abs().max() < 1e-6
    # one label collapsed out of ten: the mean barely moves, the minimum does
    half = torch.where((y == 3)[:, None], collapsed, perfect)
    scores = conditional_scores(real, y, half, y, "class", 10)
    assert scores["cond_diversity_min"] < 1e-6 and scores["cond_label_diversity/3"] < 1e-6
    assert scores["cond_diversity"] == pytest.approx(0.9, abs=0.02)
    # no evaluator logits (e.g. the inception extractor): diversity only
    assert not any(k.startswith("cond_label_accuracy") or k == "cond_accuracy" for k in scores)
    # diverse but shuffled across labels (z used, labels ignored) is not collapse: each label's
    # samples spread like the whole data set, further than a real label's, so above 1
    shuffled = perfect[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    assert label_diversity(real, y, shuffled, y, "class", 10).min() > 2


def test_multi_label_diversity_is_zero_for_one_scene_per_label_set() -> None:
    # The shapes recipe's failure: every z gives the same scene for "red cube, blue sphere", but
    # the scenes of sets that share a label differ, so grouping by each label alone saw ~1.
    sets = torch.tensor([[1.0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 0]])
    y = sets.repeat(60, 1)  # sample i asks for set i % 4
    real, _ = clustered(60, 4, 8, 0)
    perfect, _ = clustered(60, 4, 8, 1)  # a fresh draw of the same joint distribution
    div = label_diversity(real, y, perfect, y, "multi", 4)
    assert ((div[:3] - 1).abs() < 0.1).all() and math.isnan(div[3])
    one_per_set = real[torch.arange(len(y)) % 4]  # four different scenes, one per set
    div = label_diversity(real, y, one_per_set, y, "multi", 4)
    assert (div[:3].abs() < 1e-6).all()
    # one set collapsed: only the labels of that set drop, by its share of their pairs
    mixed = torch.where((torch.arange(len(y)) % 4 == 3)[:, None], one_per_set, perfect)
    div = label_diversity(real, y, mixed, y, "multi", 4)
    assert div[0] == pytest.approx(2 / 3, abs=0.1) and ((div[1:3] - 1).abs() < 0.1).all()


def test_pixel_diversity_sees_a_layout_that_ignores_z() -> None:
    # scenes of one label set: a bright square at a random place on a dark ground (real), and
    # a generator that always puts it at the same place but varies its texture a little
    g = torch.Generator().manual_seed(0)
    n = 40
    real = -torch.ones(n, 1, 32, 32)
    fake = -torch.ones(n, 1, 32, 32)
    for i in range(n):
        r, c = torch.randint(0, 24, (2,), generator=g).tolist()
        real[i, :, r : r + 8, c : c + 8] = 1.0
        fake[i, :, 4:12, 4:12] = 0.8 + 0.2 * torch.rand(8, 8, generator=g)
    y = torch.zeros(n, 3)
    y[:, 0] = 1.0
    assert thumbnails(real).shape == (n, 16 * 16)
    scores = conditional_scores(
        real.flatten(1), y, fake.flatten(1), y, "multi", 3, None, thumbnails(real), thumbnails(fake)
    )
    assert scores["cond_pixel_diversity"] < 0.05 and scores["cond_pixel_diversity_min"] < 0.05
    again = conditional_scores(
        real.flatten(1), y, real.flatten(1), y, "multi", 3, None, thumbnails(real), thumbnails(real)
    )
    assert again["cond_pixel_diversity"] == pytest.approx(1.0)
    assert "cond_pixel_diversity" not in conditional_scores(
        real.flatten(1), y, fake.flatten(1), y, "multi", 3
    )


def test_diversity_groups_label_sets_by_each_label_and_skips_small_groups() -> None:
    real, _ = clustered(50, 4, 8, 0)
    y = torch.tensor([[1.0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 0]]).repeat(50, 1)
    fake = real[:1].repeat(len(real), 1)  # one image for every label set
    div = label_diversity(real, y, fake, y, "multi", 4)
    assert (div[:3].abs() < 1e-6).all() and math.isnan(div[3])  # nobody asks for label 3
    one = torch.tensor([0, 1, 1])  # label 0: a single sample, no pair to measure
    assert math.isnan(label_diversity(real[:3], one, real[:3], one, "class", 2)[0])
    assert mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)
    # the cap takes the first samples of a group, so the value does not depend on later ones
    real2, y2 = clustered(30, 2, 4, 2)
    capped = label_diversity(real2, y2, real2, y2, "class", 2, max_per_condition=10)
    extra = torch.cat([real2, 100 * torch.ones(5, 4, dtype=torch.float64)])
    y_extra = torch.cat([y2, torch.zeros(5, dtype=torch.long)])
    again = label_diversity(real2, y2, extra, y_extra, "class", 2, max_per_condition=10)
    assert torch.allclose(capped, torch.ones(2, dtype=torch.float64)) and torch.equal(capped, again)


class _Rank:
    """One process of a simulated all_gather (threads meet at a barrier), for `_gather`."""

    def __init__(self, rank: int, world: int, board: list, barrier: threading.Barrier) -> None:
        self.process_index, self.num_processes = rank, world
        self.device = torch.device("cpu")
        self.board, self.barrier = board, barrier

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        self.board[self.process_index] = t.clone()
        self.barrier.wait(timeout=30)
        out = torch.cat(self.board)
        self.barrier.wait(timeout=30)  # nobody writes the next gather before all have read
        return out


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_conditional_scores_match_on_any_number_of_processes(world: int) -> None:
    """Each rank extracts its chunk of the samples in batches; `_gather` puts them back in
    sample order, so every label groups the same samples as on one process."""
    n, batch = 47, 5  # chunks of unequal size, batches that do not divide them
    fake, y = clustered(5, 10, 6, 3)
    fake, y = fake[:n].float(), y[:n]
    logits = torch.randn(n, 10, generator=torch.Generator().manual_seed(4))
    real, real_y = clustered(20, 10, 6, 5)
    whole = conditional_scores(real, real_y, fake, y, "class", 10, logits)
    board: list = [None] * world
    barrier = threading.Barrier(world)
    results: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def rank_main(r: int) -> None:
        ev = ImageEvaluator.__new__(ImageEvaluator)
        ev.acc = _Rank(r, world, board, barrier)
        lo, hi = _chunk(n, r, world)
        feats = [fake[i : min(i + batch, hi)] for i in range(lo, hi, batch)]
        lgs = [logits[i : min(i + batch, hi)] for i in range(lo, hi, batch)]
        f = ev._gather(feats, hi - lo, n, fake.shape[1])
        lg = ev._gather(lgs, hi - lo, n, 10)
        results[r] = (f, lg)

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    f, lg = results[0]
    assert torch.equal(f, fake) and torch.equal(lg, logits)
    assert conditional_scores(real, real_y, f, y, "class", 10, lg) == whole


def test_format_scores_folds_per_label_scores_into_one_line_per_family() -> None:
    from gandist.evaluation.run_eval import format_scores

    record = {
        "step": 10,
        "seconds": 1.5,
        "fid": 2.5,
        "cond_accuracy": 0.9,
        "cond_label_accuracy/0": 0.0,
        "cond_label_accuracy/1": 1.0,
        "cond_label_predicted/0": 4.0,
        "cond_label_predicted/1": 1.0,
        "cond_diversity": 0.25,
    }
    lines = format_scores(record).splitlines()
    assert [line.split()[0] for line in lines] == [
        "fid",
        "cond_accuracy",
        "cond_label_accuracy",
        "cond_label_predicted",
        "cond_diversity",
    ]
    assert lines[2].split()[1:] == ["0:0", "1:1"] and lines[3].split()[1:] == ["0:4", "1:1"]
    assert lines[0].split()[1] == "2.5000"
    # by name where the record has the data's label names (a folder's classes, the glyphs' letters)
    named = format_scores({**record, "label_names": ["A", "red cube"]}).splitlines()
    assert named[2].split()[1:] == ["A:0", "red_cube:1"]
    assert named[3].split()[1:] == ["A:4", "red_cube:red_cube"]  # 4: no such name, the index


def test_eval_records_of_other_settings_get_other_names(tmp_path: Path) -> None:
    """`gandist eval --n 10000` beside the run's 2,000, the raw G beside the EMA, another noise
    seed: each its own file, so comparing scores never overwrites the first."""
    from gandist.evaluation.run_eval import eval_record_name, unused_path

    names = [
        eval_record_name(6000, "domain"),
        eval_record_name(6000, "domain", n=10000),
        eval_record_name(6000, "domain", seed=11),
        eval_record_name(6000, "domain", seed=12),
        eval_record_name(6000, "domain", raw=True),
        eval_record_name(6000, "domain", psi=0.7),
        eval_record_name(6000, "domain", rejection=0.5),
        eval_record_name(6000, "domain", n=500, seed=0, raw=True, psi=0.5, rejection=0.8),
    ]
    assert len(set(names)) == len(names)
    assert names[0] == "step_006000-domain.json"
    assert names[-1] == "step_006000-domain-n500-seed0-raw-psi0.5-drs0.8.json"
    first = tmp_path / names[0]
    assert unused_path(first) == first
    first.write_text("{}")
    second = unused_path(first)
    assert second.name == "step_006000-domain-2.json"
    second.write_text("{}")
    assert unused_path(first).name == "step_006000-domain-3.json"


def test_weak_evaluator_threshold_is_met_by_exactly_its_accuracy() -> None:
    """19 of 20 held-out labels right is the threshold, 0.95, not a float32 hair below it."""
    from gandist.evaluation.classifier import EvaluatorSpec
    from gandist.evaluation.train_evaluator import WEAK_EVALUATOR, weak_evaluator_warning

    def spec(acc: float) -> EvaluatorSpec:
        return EvaluatorSpec(3, 16, "class", 10, heldout={"accuracy": acc}, epochs=2)

    logits, y = torch.eye(10)[[0] * 20], torch.tensor([0] * 19 + [1])  # 19 of 20 right
    at = label_agreement(logits, y, "class")["accuracy"]
    assert at == WEAK_EVALUATOR and weak_evaluator_warning(spec(at)) is None
    below = float(torch.tensor([1.0] * 18 + [0.0] * 2).mean())
    assert "recognises only 0.900" in (weak_evaluator_warning(spec(below)) or "")


@pytest.mark.parametrize(("threshold", "warned"), [(1.01, True), (0.0, False)])
def test_train_evaluator_warns_when_it_is_too_weak_to_read_cond_accuracy(
    tmp_path: Path, monkeypatch, capsys, threshold: float, warned: bool
) -> None:
    """An evaluator that misses real images' labels caps every cond_accuracy read with it: the
    CLI says so and names the fix (the shapes evaluator's default length found only 0.89)."""
    from gandist import cli
    from gandist.evaluation import train_evaluator as module

    monkeypatch.setattr(module, "WEAK_EVALUATOR", threshold)
    out = tmp_path / "ev"
    args = ["train-evaluator", "digits", "--image-size", "16", "--epochs", "2"]
    assert cli.main([*args, "--root", str(tmp_path), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert ("warning: the evaluator recognises only" in err) is warned
    if warned:
        assert "after 2 epochs" in err and "--epochs 6" in err
    assert load_evaluator(out)[1].epochs == 2


def _folder_with_a_broken_file(root: Path) -> Path:
    from PIL import Image

    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (10, 10), (200 * c, 100, 50 + i)).save(root / name / f"{i}.png")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    return root


def test_real_samples_of_a_folder_skip_unreadable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A corrupt file in a user's folder failed the run's final evaluation (status failed) though
    training had skipped it: the folder's auto shards are read as training reads them, and a
    folder read directly (data.shards=off) skips the file and names it."""
    root = _folder_with_a_broken_file(tmp_path / "pets")
    auto = DataConfig(source=f"folder:{root}", image_size=8, root=str(tmp_path / "data"))
    x, y = real_samples(auto, 100, 0)
    assert len(x) == 24 and sorted(set(y.tolist())) == [0, 1]  # small: every sample, once
    assert len(torch.unique(x.flatten(1), dim=0)) == 24
    assert (tmp_path / "data" / "shards").is_dir()  # the shards training writes and reads
    direct = dataclasses.replace(auto, shards="off")
    x, y = real_samples(direct, 100, 0)
    assert len(x) == 24 and x.shape[1:] == (3, 8, 8)
    assert "skipped 1 unreadable image file" in capsys.readouterr().err
    # the command every run without an evaluator suggests: it stopped with a loader traceback
    out, spec = train_evaluator(auto, epochs=1, batch_size=8, progress=False)
    assert (out / "evaluator.safetensors").is_file() and spec.num_labels == 2


@pytest.mark.parametrize("workers", [0, 1])
def test_unreadable_file_in_training_names_file_and_fix(tmp_path: Path, workers: int) -> None:
    """data.shards=off reads the folder itself: a corrupt file stops the run with one line
    naming it and the fix, also when a loader worker process hit it (torch re-raises it from
    the worker's report; it was a RuntimeError holding the worker's traceback)."""
    from gandist.data.sources.pil import ImageReadError
    from gandist.data.sources.registry import load_source
    from gandist.data.stream import RankBatchStream

    root = _folder_with_a_broken_file(tmp_path / "pets")
    src = load_source(DataConfig(source=f"folder:{root}", image_size=8, shards="off"))
    stream = RankBatchStream(src, 25, workers=workers)
    with pytest.raises(ImageReadError) as e:
        next(stream)
    assert e.value.path.endswith("broken.png") and "\n" not in str(e.value)
    assert str(e.value).startswith(f"cannot read image {root / 'cat' / 'broken.png'}: ")
    assert "data.shards=auto" in str(e.value)
    assert isinstance(e.value, ValueError)


def test_gandist_train_reports_an_unreadable_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from gandist.cli import main

    root = _folder_with_a_broken_file(tmp_path / "pets")
    code = main(
        [
            "train",
            str(Path(__file__).resolve().parents[2] / "configs" / "gan_mlp_digits.yaml"),
            f"data.source=folder:{root}",
            "data.shards=off",
            "data.image_size=8",
            "data.workers=1",
            "model.pack=1",
            "train.batch_size=25",
            "train.steps=2",
            f"train.output_dir={tmp_path / 'runs'}",
            "tracking.wandb=disabled",
            "eval.every=0",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"gandist: error: cannot read image {root / 'cat' / 'broken.png'}: " in err


def test_the_train_evaluator_hint_names_only_flags_that_select_data() -> None:
    """The cdcgan_shapes_cpu recipe on a user's shards: the hint carried the recipe's
    `--n-samples 20000`, which selects nothing outside generated sources."""
    from gandist.config import load_config
    from gandist.evaluation.image_eval import train_evaluator_hint

    recipe = Path(__file__).resolve().parents[2] / "configs" / "cdcgan_shapes_cpu.yaml"
    assert train_evaluator_hint(load_config(recipe)) == (
        "gandist train-evaluator shapes --image-size 32 --n-samples 20000"
    )
    cfg = load_config(recipe, ["data.source=shards:my/shards", "data.root=/d"])
    assert train_evaluator_hint(cfg) == (
        "gandist train-evaluator shards:my/shards --image-size 32 --root /d"
    )
    piped = load_config(recipe, ["data.source=shards:pipe:cat /x/a.tar"])  # pastes as one word
    assert train_evaluator_hint(piped).startswith(
        "gandist train-evaluator 'shards:pipe:cat /x/a.tar'"
    )
