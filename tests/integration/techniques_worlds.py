"""The issue #14 techniques (packing, DiffAugment, learning-rate schedules, mode seeking, the
ACGAN critic's twin and projection terms) trained on this process group: run plainly for 1
process, under `torchrun --nproc_per_node 2` for 2; tests/integration/test_techniques.py
compares the two.

Usage: techniques_worlds.py OUT DATA_ROOT. Each case trains STEPS steps in float64 at tiny widths
from the map-style source (data.shards=off, so a global batch holds the same samples on any
number of processes). Rank 0 writes OUT/<case>/... (the runs' checkpoints).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.recipe_driver import make_trainer, recipe_config  # noqa: E402

STEPS = 3
COMMON = [
    "train.dtype=float64",
    "data.shards=off",
    f"train.steps={STEPS}",
    "train.batch_size=16",
    "train.log_every=1",
    "train.augment=translation,cutout,color",
    "model.pack=2",
]
# case -> (recipe, its overrides): every penalty that takes an input gradient, with and
# without conditioning, with schedules on both networks (a scheduler prepared by accelerate would
# step once per process: 2 processes would decay twice as fast).
CASES: dict[str, tuple[str, list[str]]] = {
    "wgan_gp-pack-augment-cosine": (
        "wgan_gp_digits.yaml",
        [
            "model.g_norm=layer",  # BatchNorm depends on the world size by design
            "train.n_critic=2",
            "optim.g.schedule=cosine",
            "optim.g.warmup_steps=1",
            "optim.d.schedule=linear",
            "optim.d.min_lr_ratio=0.5",
        ],
    ),
    "acgan-pack-augment-r1": (
        "acgan_digits.yaml",
        [
            "model.g_norm=layer",
            "model.d_norm=layer",  # BatchNorm: world-size dependent, and refused with R1
            "loss.penalty=r1",
            "loss.r1_gamma=1.0",
            "loss.mode_seeking=1.0",  # pairs within each rank's share of the batch
            "model.aux_project=false",  # the recipe's projection term scores no packs
            "model.aux_twin=true",  # TAC-GAN's twin head, packed like the classifier
            "train.augment_aux=translation",  # the classifiers' own view: a second D forward
            "optim.d.schedule=cosine",
            "optim.d.warmup_steps=2",
        ],
    ),
    "acgan-project-augment": (
        "acgan_digits.yaml",
        [
            "model.pack=1",  # a projection term scores one label per input: no packs
            "model.g_norm=layer",
            "model.d_norm=layer",
            "model.aux_project=true",  # label term in the real/fake logit, beside the classifier
            "loss.aux_fake=false",
            "loss.aux_g_confidence=0.5",  # G's classifier term capped per sample
        ],
    ),
}


def case_config(name: str, out: Path, data_root: Path, *extra: str):
    recipe, overrides = CASES[name]
    return recipe_config(
        REPO / "configs" / recipe,
        data_root,
        out,
        *COMMON,
        *overrides,
        f"train.run_name={name}",
        *extra,
    )


def train_all(out: Path, data_root: Path) -> None:
    for name in CASES:
        make_trainer(case_config(name, out, data_root)).fit()


def main() -> None:
    out, data_root = Path(sys.argv[1]), Path(sys.argv[2])
    train_all(out, data_root)


if __name__ == "__main__":
    main()
