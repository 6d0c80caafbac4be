"""Property-based tests of the shard stream: for any shard sizes, ranks, loader workers and local
batch, every rank yields the same number of batches, no sample appears twice in an epoch, and a
stream restored from any position continues exactly (epoch boundaries included)."""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gandist.data.shards.stream import ShardStream, plan_epoch, resolve_shards
from tests.shard_fixtures import indices_of, make_shards

layouts = st.fixed_dictionaries(
    {
        "counts": st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=12),
        "world": st.integers(min_value=1, max_value=4),
        "workers": st.integers(min_value=1, max_value=3),
        "local_batch": st.integers(min_value=1, max_value=7),
        "seed": st.integers(min_value=0, max_value=2**64 - 1),
        "epoch": st.integers(min_value=0, max_value=1000),
    }
)


@settings(max_examples=300, deadline=None)
@given(layouts)
def test_every_rank_plans_the_same_epoch_length_from_disjoint_shards(layout: dict) -> None:
    counts, world, workers = layout["counts"], layout["world"], layout["workers"]
    assume(len(counts) >= world * workers)  # the stream uses fewer workers otherwise
    plans = [
        plan_epoch(
            counts,
            layout["seed"],
            layout["epoch"],
            r,
            world,
            workers,
            layout["local_batch"],
            False,
            0,
        )
        for r in range(world)
    ]
    assert len({p.n_batches for p in plans}) == 1  # no DDP hang on an uneven split
    shards = [i for p in plans for w in p.shards for i in w]
    assert sorted(shards) == list(range(len(counts)))  # each shard read once, by one worker
    for p in plans:
        assert len(p.schedule) == p.n_batches
        for w, mine in enumerate(p.shards):  # a worker never owes more batches than it holds
            held = sum(counts[i] for i in mine) // layout["local_batch"]
            assert p.schedule.count(w) <= held


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(min_value=3, max_value=14), min_size=2, max_size=6),
    world=st.integers(min_value=1, max_value=2),
    local_batch=st.integers(min_value=1, max_value=4),
    cut_frac=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**64 - 1),
)
def test_epochs_cover_each_sample_once_and_resume_exactly(
    tmp_path_factory, sizes: list[int], world: int, local_batch: int, cut_frac: float, seed: int
) -> None:
    assume(len(sizes) >= world)
    d = make_shards(tmp_path_factory.mktemp("s") / "s", sizes)
    urls, manifest = resolve_shards(str(d))

    def stream(rank: int) -> ShardStream:
        return ShardStream(
            urls, manifest, local_batch * world, rank, world, seed=seed, workers=0, shuffle_buffer=5
        )

    try:
        streams = [stream(r) for r in range(world)]
    except ValueError as exc:  # an epoch of zero batches is refused at start-up
        assert "too few for one batch" in str(exc)
        return
    n = streams[0].batches_per_epoch
    assert all(s.batches_per_epoch == n for s in streams)
    seen = [i for s in streams for _ in range(n) for i in indices_of(next(s)[0])]
    assert len(seen) == len(set(seen))  # no sample twice in an epoch
    # any position in the first two epochs, and exactly at the end of the first
    total = 2 * n
    ref = stream(0)
    whole = [indices_of(next(ref)[0]) for _ in range(total + 1)]
    for cut in {round(cut_frac * total), n}:
        s = stream(0)
        for _ in range(cut):
            next(s)
        resumed = stream(0)
        resumed.load_state_dict(s.state_dict())
        assert [indices_of(next(resumed)[0]) for _ in range(total + 1 - cut)] == whole[cut:], cut
