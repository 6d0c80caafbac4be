"""Every recipe trained on this process group (run plainly for 1 process, under
`torchrun --nproc_per_node 2` for 2); tests/integration/test_recipes_worlds.py compares the two.

Usage: recipe_worlds.py OUT DATA_ROOT. Each recipe trains 3 steps in float64 at tiny widths from
the map-style source (data.shards=off: with shards each rank reads its own shards, so the samples
of a global batch depend on the world size by design). Recipes with BatchNorm or dropout also run
with those swapped out (LayerNorm, no dropout), so every loss, penalty, conditioning and
architecture path is compared. Rank 0 writes OUT/<recipe>/... (the runs' checkpoints).

With 2 processes it also checks the EMA generator of a BatchNorm recipe: its buffers must be equal
on every rank after training, and a stopped-and-resumed run must equal the uninterrupted one.
The report goes to OUT/report.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gandist.config import load_config  # noqa: E402
from tests.recipe_driver import (  # noqa: E402
    RECIPES,
    batchnorm_or_dropout,
    final_state,
    make_trainer,
    max_abs_diff,
    recipe_config,
    recipe_id,
)

STEPS = 3
WORLD_OVERRIDES = [
    "train.dtype=float64",
    "train.precision=no",  # float64 excludes mixed precision (a recipe may set bf16)
    "data.shards=off",
    f"train.steps={STEPS}",
    "train.batch_size=32",
    "train.log_every=1",
]
NO_BN = ["model.g_norm=layer", "model.d_norm=layer", "model.dropout=0.0"]


def world_overrides(path: Path) -> list[str]:
    swap = NO_BN if batchnorm_or_dropout(load_config(path)) else []
    return [*WORLD_OVERRIDES, *swap]


def train_all(out: Path, data_root: Path) -> None:
    for path in RECIPES:
        cfg = recipe_config(
            path, data_root, out, *world_overrides(path), f"train.run_name={recipe_id(path)}"
        )
        make_trainer(cfg).fit()


def ema_report(out: Path, data_root: Path) -> dict:
    """EMA of a BatchNorm generator on several processes (see the module docstring)."""
    path = Path(__file__).resolve().parents[2] / "configs" / "dcgan_digits.yaml"
    common = [
        "train.ema=true",
        "train.ema_decay=0.9",
        "train.ema_rampup=0.5",  # 4 steps, all inside the warm-up: resumed mid-ramp
        "train.batch_size=32",
        "train.steps=4",
        "train.log_every=2",
    ]
    straight = make_trainer(recipe_config(path, data_root, out, *common, "train.run_name=ema-a"))
    result = straight.fit()
    buffers = [b.detach().clone() for b in straight.ema.module.buffers() if b.is_floating_point()]
    gathered = [[torch.empty_like(b) for _ in range(dist.get_world_size())] for b in buffers]
    for b, into in zip(buffers, gathered, strict=True):
        dist.all_gather(into, b)
    equal_on_ranks = all(all(torch.equal(g[0], x) for x in g) for g in gathered)
    chain = [*common, "train.run_name=ema-b"]
    make_trainer(recipe_config(path, data_root, out, *chain), stop_after=2).fit()
    resumed = make_trainer(recipe_config(path, data_root, out, *chain, "train.resume=auto")).fit()
    report = {"ema_buffers_equal_on_ranks": equal_on_ranks}
    if dist.get_rank() == 0:
        report["ema_resume_max_diff"] = max_abs_diff(final_state(result), final_state(resumed))
    return report


def main() -> None:
    out, data_root = Path(sys.argv[1]), Path(sys.argv[2])
    train_all(out, data_root)
    report: dict = {"world_size": dist.get_world_size() if dist.is_initialized() else 1}
    if report["world_size"] > 1:
        report.update(ema_report(out, data_root))
    if not dist.is_initialized() or dist.get_rank() == 0:
        (out / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
