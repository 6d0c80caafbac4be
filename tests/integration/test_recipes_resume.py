"""Every recipe, resumed anywhere: stopped at a random step and at an epoch boundary, then
resumed with train.resume=auto, a run ends bit for bit where the uninterrupted run ends.

Each shipped config (configs/ and configs/experiments/) trains in-process at tiny widths on CPU in
float32. The resumed run is one chain: stop after a random step r, resume, stop after the first
step b that ends exactly on an epoch boundary (the data position of its checkpoint equals the
epoch length), resume, finish. All exported tensors (G, D, EMA) of the final checkpoints and the
data position must be identical.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from gandist.data.pipeline import open_stream
from tests.recipe_driver import RECIPES, final_state, max_abs_diff, recipe_config, recipe_id, train


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recipe-data")  # shards written once per source


def short_epochs(path: Path, data_root: Path, tmp: Path) -> tuple[str, int, int]:
    """A batch-size override that makes an epoch 2 x n_critic batches (the shortest epoch with
    a step before the boundary), the first step b after which exactly whole epochs are used up,
    and the epoch length in batches."""
    cfg = recipe_config(path, data_root, tmp)
    n_critic = cfg.train.n_critic
    n = open_stream(cfg.data, 1, 0, 1, 0, True, lambda: None).num_samples
    k = cfg.model.pack  # whole packs (PacGAN recipes)
    batch = f"train.batch_size={max(k, n // (2 * n_critic) // k * k)}"
    cfg = recipe_config(path, data_root, tmp, batch)
    per_epoch = open_stream(cfg.data, cfg.train.batch_size, 0, 1, 0, True, lambda: None)
    per_epoch = per_epoch.batches_per_epoch
    return batch, math.lcm(per_epoch, n_critic) // n_critic, per_epoch


@pytest.mark.parametrize("path", RECIPES, ids=recipe_id)
def test_resumed_anywhere_equals_uninterrupted(path: Path, data_root: Path, tmp_path: Path) -> None:
    batch, b, per_epoch = short_epochs(path, data_root, tmp_path)
    r = random.Random(recipe_id(path)).randint(1, max(1, b - 1))
    steps = b + 1
    straight = train(
        recipe_config(
            path, data_root, tmp_path, batch, f"train.steps={steps}", "train.run_name=straight"
        )
    )
    chain = [batch, "train.run_name=chain", f"train.steps={steps}"]
    first = train(recipe_config(path, data_root, tmp_path, *chain), stop_after=r)
    assert first.preempted and first.step == r
    if r != b:
        second = train(
            recipe_config(path, data_root, tmp_path, *chain, "train.resume=auto"), stop_after=b
        )
        assert second.preempted and second.step == b
        at_b = json.loads((Path(second.checkpoint) / "trainer_state.json").read_text())
        assert at_b["data"]["position"] == per_epoch  # saved before the epoch rolls over
    last = train(recipe_config(path, data_root, tmp_path, *chain, "train.resume=auto"))
    assert last.step == straight.step == steps and not last.preempted
    assert max_abs_diff(final_state(straight), final_state(last)) == 0.0
    s = json.loads((Path(straight.checkpoint) / "trainer_state.json").read_text())
    c = json.loads((Path(last.checkpoint) / "trainer_state.json").read_text())
    assert s["data"] == c["data"] and s["images_seen"] == c["images_seen"]
