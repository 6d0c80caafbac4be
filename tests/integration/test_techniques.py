"""The issue #14 techniques in real runs: PacGAN packing (model.pack), DiffAugment (train.augment)
and learning-rate schedules (optim.*.schedule) together.

- A run stopped at a random step and resumed with train.resume=auto ends bit for bit where the
  uninterrupted run ends, and logs the same learning rates at every step (float32, 1 process):
  WGAN-GP with those three, and the ACGAN critic with every technique of its own (mode seeking,
  the twin classifier, the classifier's own view, conditional norm in G, sum pooling, the capped
  classifier term, EMA; and the projection term, which cannot be packed, on its own).
- 1 and 2 processes (gloo, float64) train to the same G and D within 1e-10, for GP and R1, with
  and without conditioning, and for the ACGAN critic's twin and projection terms and its
  classifier's own view (train.augment_aux; tests/integration/techniques_worlds.py).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from gandist.run_files import METRICS
from tests.integration import techniques_worlds
from tests.integration.conftest import cpu_torchrun_env
from tests.recipe_driver import REPO, final_state, max_abs_diff, recipe_config, train

TECHNIQUES = [
    "model.pack=2",
    "train.augment=translation,cutout,color",
    "optim.g.schedule=cosine",
    "optim.g.warmup_steps=2",
    "optim.g.stable_steps=2",  # G holds its rate for steps 3-4, decays from step 5
    "optim.d.schedule=linear",
    "optim.d.warmup_steps=1",
    "optim.d.min_lr_ratio=0.1",
    "train.batch_size=16",
    "train.n_critic=2",
    "train.log_every=1",
    "data.shards=off",
]


def learning_rates(run_dir: Path) -> dict[int, tuple[float, float]]:
    out = {}
    for line in (run_dir / METRICS).read_text().splitlines():
        record = json.loads(line)
        if "lr/g" in record:
            out[int(record["step"])] = (record["lr/g"], record["lr/d"])
    return out


# recipe -> the techniques beside TECHNIQUES that only its critic takes
RESUMED = {
    "wgan_gp": ("wgan_gp_digits.yaml", []),
    "acgan": (
        "acgan_digits.yaml",
        [
            "loss.mode_seeking=1.0",
            "model.aux_project=false",  # packs (TECHNIQUES): no projection term
            "model.aux_twin=true",
            "train.augment_aux=translation",
            "model.g_cond_norm=true",
            "model.d_pool=sum",
            "loss.aux_g_confidence=0.5",
            "train.ema=true",
        ],
    ),
    "acgan-project": (
        "acgan_digits.yaml",
        ["model.aux_project=true", "model.pack=1", "loss.aux_fake=false", "train.ema=true"],
    ),
}


@pytest.mark.parametrize("case", list(RESUMED))
def test_resumed_run_with_every_technique_equals_uninterrupted(case: str, tmp_path: Path) -> None:
    recipe, own = RESUMED[case]
    path = REPO / "configs" / recipe
    data_root, steps = tmp_path / "data", 7
    r = random.Random(f"techniques-{case}").randint(1, steps - 1)

    def config(*extra: str):
        return recipe_config(
            path, data_root, tmp_path, *TECHNIQUES, *own, f"train.steps={steps}", *extra
        )

    straight = train(config("train.run_name=straight"))
    first = train(config("train.run_name=chain"), stop_after=r)
    assert first.preempted and first.step == r
    last = train(config("train.run_name=chain", "train.resume=auto"))
    assert last.step == straight.step == steps
    assert max_abs_diff(final_state(straight), final_state(last)) == 0.0
    lrs, resumed_lrs = learning_rates(straight.run_dir), learning_rates(last.run_dir)
    assert sorted(lrs) == list(range(1, steps + 1))
    assert resumed_lrs == lrs  # every step, before and after the resume
    assert len({v for v in lrs.values()}) > 1  # the schedule moved
    g = [lrs[s][0] for s in range(1, steps + 1)]
    assert g[0] == 0.0 < g[1] < g[2] == g[3] == g[4] > g[5] > g[6]  # warm-up, stable, decay


@pytest.mark.slow
def test_one_and_two_processes_agree(tmp_path: Path) -> None:
    data_root, one, two = tmp_path / "data", tmp_path / "w1", tmp_path / "w2"
    env = cpu_torchrun_env()
    script = Path(techniques_worlds.__file__)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two.mkdir()
    proc = subprocess.run(
        [*cmd, str(script), str(two), str(data_root)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"techniques_worlds.py (2 processes):\n{proc.stderr[-6000:]}"
    one.mkdir()
    techniques_worlds.train_all(one, data_root)
    step = f"step_{techniques_worlds.STEPS}"
    for name in techniques_worlds.CASES:
        a = final_state(one / name / "checkpoints" / step)
        b = final_state(two / name / "checkpoints" / step)
        assert max_abs_diff(a, b) < 1e-10, name
        assert learning_rates(one / name) == learning_rates(two / name), name
