"""Shard streaming: equal batches per rank, epoch coverage, determinism, exact resume, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gandist.data.shards.stream import (
    ShardStream,
    check_shard_files,
    plan_epoch,
    resolve_shards,
    round_robin,
)
from tests.shard_fixtures import indices_of, make_shards

SIZES = [23, 20, 25, 18, 22, 24, 21, 19]  # uneven on purpose; 172 samples


def stream(d: Path, rank: int = 0, world: int = 1, workers: int = 0, **kw) -> ShardStream:
    urls, m = resolve_shards(str(d))
    return ShardStream(
        urls,
        m,
        kw.pop("batch", 8) * world,
        rank,
        world,
        seed=kw.pop("seed", 1),
        workers=workers,
        shuffle_buffer=kw.pop("buffer", 16),
        **kw,
    )


def epoch_indices(s: ShardStream) -> list[list[int]]:
    n = s.batches_per_epoch
    return [indices_of(next(s)[0]) for _ in range(n)]


def test_round_robin_drops_exhausted_workers() -> None:
    assert round_robin([3, 1, 2], 10) == [0, 1, 2, 0, 2, 0]
    assert round_robin([3, 1, 2], 4) == [0, 1, 2, 0]


def test_every_rank_gets_the_same_number_of_batches() -> None:
    counts = [5, 40, 7, 33, 12]
    for epoch in range(4):
        plans = [plan_epoch(counts, 0, epoch, r, 2, 2, 4, False, 0) for r in range(2)]
        assert plans[0].n_batches == plans[1].n_batches > 0
        assert all(len(p.schedule) == p.n_batches for p in plans)


@pytest.mark.parametrize("workers", [0, 2])
def test_two_ranks_cover_the_epoch_once(tmp_path: Path, workers: int) -> None:
    d = make_shards(tmp_path / "s", SIZES)
    ranks = [stream(d, r, 2, workers) for r in range(2)]
    per_rank = [epoch_indices(s) for s in ranks]
    assert len(per_rank[0]) == len(per_rank[1])
    seen = [i for batches in per_rank for b in batches for i in b]
    assert len(seen) == len(set(seen))  # no sample twice in an epoch
    assert len(seen) >= 172 - 2 * 2 * 8 * 2  # all but the dropped remainders
    # labels travel with their images
    x, y = next(stream(d, 0, 1, workers))
    assert [i % 3 for i in indices_of(x)] == y.tolist()


def test_deterministic_and_reshuffled_per_epoch(tmp_path: Path) -> None:
    d = make_shards(tmp_path / "s", SIZES)
    a, b = stream(d, 0, 2, 2), stream(d, 0, 2, 2)
    ea, eb = epoch_indices(a), epoch_indices(b)
    assert ea == eb
    assert epoch_indices(a) != ea  # epoch 1 differs from epoch 0
    assert epoch_indices(stream(d, 0, 2, 2, seed=2)) != ea


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_exact(tmp_path: Path, workers: int) -> None:
    d = make_shards(tmp_path / "s", SIZES)
    ref = stream(d, 1, 2, workers)
    n = ref.batches_per_epoch
    head = [indices_of(next(ref)[0]) for _ in range(n + 3)]  # into epoch 1
    tail = [indices_of(next(ref)[0]) for _ in range(n)]
    for cut in (1, n - 1, n + 1, n + 3):
        s = stream(d, 1, 2, workers)
        for _ in range(cut):
            next(s)
        state = s.state_dict()
        resumed = stream(d, 1, 2, workers)
        resumed.load_state_dict(state)
        got = [indices_of(next(resumed)[0]) for _ in range(len(head) - cut + len(tail))]
        assert got == head[cut:] + tail, cut


def test_resampled_mode_has_fixed_epochs(tmp_path: Path) -> None:
    d = make_shards(tmp_path / "s", [30, 30])
    s = stream(d, 0, 2, 2, resampled=True, epoch_batches=7)
    assert s.batches_per_epoch == 7
    first = epoch_indices(s)
    assert len(first) == 7 and s.epoch == 0
    next(s)
    assert s.epoch == 1
    again = stream(d, 0, 2, 2, resampled=True, epoch_batches=7)
    assert epoch_indices(again) == first  # seeded, unlike webdataset's default resampling


def test_too_few_shards(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = make_shards(tmp_path / "s", [40, 40, 40])
    s = stream(d, 0, 2, 4)
    assert s.workers == 1  # 3 shards / 2 ranks -> 1 worker each
    assert "using 1 worker(s) per process" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"cannot feed 4 processes.*--shard-size"):
        stream(d, 0, 4, 1, batch=2)
    with pytest.raises(ValueError, match="too few for one batch"):
        stream(d, 0, 1, 0, batch=200)


def test_patterns_lists_and_pipes(tmp_path: Path) -> None:
    d = make_shards(tmp_path / "s", [10, 10, 10])
    urls, m = resolve_shards(f"{d}/data-{{000000..000002}}.tar")
    assert len(urls) == 3 and m.num_samples == 30
    urls, _ = resolve_shards(f"{d}/data-000000.tar,{d}/data-000002.tar")
    assert len(urls) == 2
    piped = ",".join(f"pipe:cat {d}/data-{k:06d}.tar" for k in range(3))
    with pytest.raises(ValueError, match="need data.manifest"):
        resolve_shards(piped)
    urls, m = resolve_shards(piped, manifest=f"pipe:cat {d}/dataset.json")
    s = ShardStream(urls, m, 10, 0, 1, workers=0)
    got = sorted(i for _ in range(s.batches_per_epoch) for i in indices_of(next(s)[0]))
    assert got == list(range(30))


def test_bad_shard_sets_are_caught_before_training(tmp_path: Path) -> None:
    d = make_shards(tmp_path / "s", [10, 10])
    other = make_shards(tmp_path / "o", [10, 10, 10])
    with pytest.raises(ValueError, match="not in the manifest"):
        resolve_shards(f"{other}/data-000002.tar", manifest=str(d / "dataset.json"))
    (d / "data-000001.tar").unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        resolve_shards(str(d))
    d2 = make_shards(tmp_path / "t", [10, 10])
    urls, m = resolve_shards(str(d2))
    with open(urls[0], "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(ValueError, match="truncated"):
        check_shard_files(urls, m)


def test_first_samples_and_info(tmp_path: Path) -> None:
    s = stream(make_shards(tmp_path / "s", [10, 10]))
    x, y = s.first_samples(5)
    assert indices_of(x) == [0, 1, 2, 3, 4] and y.tolist() == [0, 1, 2, 0, 1]
    assert s.info.label_type == "class" and s.info.sample_shape == (1, 8, 8)
    assert torch.is_floating_point(x) and x.min() >= -1 and x.max() <= 1


def test_a_small_data_set_gets_fewer_loader_workers_not_a_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """100 images in 15 auto shards, a batch of 64, 2 loader workers: each worker's shards
    held about 50 samples, so no worker filled a batch and the run was refused ("lower
    train.batch_size") although 100 >= 64. One worker now takes them all, and says so."""
    d = make_shards(tmp_path / "s", [7] * 14 + [2])
    s = stream(d, 0, 1, 2, batch=64)
    assert s.workers == 1 and s.batches_per_epoch == 1
    err = capsys.readouterr().err
    assert "fill no batch of 64 per process when split over 2 loader workers; using 1" in err
    assert len(indices_of(next(s)[0])) == 64
    # the same on every rank of 2 processes (the decision is the plan's, which they share)
    ranks = [stream(d, r, 2, 2, batch=32) for r in (0, 1)]
    assert [r.workers for r in ranks] == [1, 1]
    with pytest.raises(ValueError, match="too few for one batch"):  # one worker cannot either
        stream(d, 0, 1, 2, batch=128)
