"""The batch stream and the noise define the global batch: world size must not change them."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from gandist.data.base import DatasetInfo, SourceData
from gandist.data.stream import RankBatchStream
from gandist.training.noise import GlobalNoise

INFO = DatasetInfo(
    kind="points", channels=0, image_size=0, label_type="class", num_labels=5, source="test"
)


def source(n: int = 103, in_memory: bool = True) -> SourceData:
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1).repeat(1, 2)
    y = torch.arange(n) % 5
    if in_memory:
        return SourceData(INFO, TensorDataset(x, y), (x, y))

    class Items(Dataset):
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int):
            return x[i], y[i]

    return SourceData(INFO, Items(), None)


def take(stream: RankBatchStream, k: int) -> list[torch.Tensor]:
    return [next(stream)[0][:, 0].clone() for _ in range(k)]


@pytest.mark.parametrize("world", [2, 4])
def test_rank_slices_reassemble_the_single_process_batch(world: int) -> None:
    single = take(RankBatchStream(source(), 16, 0, 1, seed=3), 12)
    ranks = [take(RankBatchStream(source(), 16, r, world, seed=3), 12) for r in range(world)]
    for step in range(12):
        assert torch.equal(torch.cat([ranks[r][step] for r in range(world)]), single[step])


def test_epoch_covers_each_sample_once_and_ranks_agree_on_length() -> None:
    streams = [RankBatchStream(source(103), 16, r, 2, seed=0) for r in range(2)]
    assert {s.batches_per_epoch for s in streams} == {6}  # 103 // 16, remainder dropped
    seen = torch.cat([torch.cat(take(s, 6)) for s in streams])
    assert len(seen) == 96 and len(set(seen.tolist())) == 96
    nxt = take(streams[0], 1)[0]
    assert streams[0].epoch == 1
    # a new epoch is a different order
    assert not torch.equal(nxt, take(RankBatchStream(source(103), 16, 0, 2, seed=0), 1)[0])


def test_resume_continues_exactly() -> None:
    a = RankBatchStream(source(), 8, 1, 2, seed=5)
    take(a, 17)  # crosses an epoch boundary (12 batches per epoch)
    state = a.state_dict()
    expected = take(a, 9)
    b = RankBatchStream(source(), 8, 1, 2, seed=5)
    b.load_state_dict(state)
    assert all(torch.equal(p, q) for p, q in zip(take(b, 9), expected, strict=True))


@pytest.mark.parametrize("workers", [0, 2])
def test_file_backed_path_equals_in_memory_path(workers: int) -> None:
    mem = take(RankBatchStream(source(), 8, 0, 2, seed=1), 15)
    files = RankBatchStream(source(in_memory=False), 8, 0, 2, seed=1, workers=workers)
    got = take(files, 10)
    files.load_state_dict(files.state_dict())  # resume mid-epoch through the DataLoader path
    got += take(files, 5)
    assert all(torch.equal(p, q) for p, q in zip(got, mem, strict=True))


def test_clear_errors() -> None:
    with pytest.raises(ValueError, match="multiple of 3"):
        RankBatchStream(source(), 16, 0, 3)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        RankBatchStream(source(10), 16, 0, 1)


def test_noise_slices_reassemble_and_do_not_depend_on_history() -> None:
    full = GlobalNoise(7, 12, 0, 1).normal(3, "g/z", 4)
    parts = [GlobalNoise(7, 12, r, 3).normal(3, "g/z", 4) for r in range(3)]
    assert torch.equal(torch.cat(parts), full)
    n = GlobalNoise(7, 12, 0, 1)
    assert not torch.equal(n.normal(3, "d0/z", 4), full)  # purposes are independent streams
    assert not torch.equal(n.normal(4, "g/z", 4), full)  # steps differ
    assert torch.equal(n.normal(3, "g/z", 4), full)  # same (step, purpose): same draw
    eps = torch.cat([GlobalNoise(7, 12, r, 2).uniform(0, "eps") for r in range(2)])
    assert torch.equal(eps, GlobalNoise(7, 12, 0, 1).uniform(0, "eps"))
