"""GPU-only paths (fp16 GradScaler, NCCL, SyncBatchNorm). CPU CI skips them; run them on a GPU
machine with `pytest -m gpu tests/gpu` (the NCCL and SyncBatchNorm ones need 2 GPUs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.integration.conftest import max_diff, run_gandist, train_args, weights

pytestmark = pytest.mark.gpu


def need_gpus(n: int) -> None:
    if torch.cuda.device_count() < n:
        pytest.skip(f"needs {n} CUDA GPU(s); found {torch.cuda.device_count()}")


def test_fp16_wgan_gp_trains_with_a_loss_scaler(tmp_path: Path) -> None:
    """fp16 runs the GradScaler path: the penalty is taken on scaled outputs and unscaled;
    a wrong recipe overflows (endless skipped steps) or collapses the critic."""
    need_gpus(1)
    run_gandist(
        train_args(
            "wgan_gp_digits.yaml",
            "train.precision=fp16",
            "train.steps=60",
            "train.log_every=10",
            "train.run_name=fp16",
        ),
        tmp_path,
    )
    rows = [
        json.loads(ln) for ln in (tmp_path / "runs/fp16/metrics.jsonl").read_text().splitlines()
    ]
    last = rows[-1]
    assert "amp/loss_scale" in last and last["amp/loss_scale"] > 1
    assert last["amp/d_skipped_steps"] < 0.2 * 60 * 5  # a few early overflows at most
    assert 0.1 < last["d/gp_grad_norm"] < 10  # gradient norms near 1, not scale-inflated


def test_bf16_and_fp32_penalties_agree(tmp_path: Path) -> None:
    need_gpus(1)
    for prec in ("no", "bf16"):
        run_gandist(
            train_args(
                "wgan_gp_digits.yaml",
                f"train.precision={prec}",
                "train.steps=1",
                "train.n_critic=1",
                f"train.run_name=prec-{prec}",
            ),
            tmp_path,
        )
    first = {
        p: (tmp_path / f"runs/prec-{p}/metrics.jsonl").read_text().splitlines()[0]
        for p in ("no", "bf16")
    }
    gp = {p: json.loads(line)["d/gp"] for p, line in first.items()}
    assert gp["bf16"] == pytest.approx(gp["no"], rel=0.05)


def test_nccl_two_gpus_equal_one_gpu(tmp_path: Path) -> None:
    need_gpus(2)
    common = [
        "model.g_norm=layer",
        "data.shards=off",
        "train.steps=3",
        "train.batch_size=16",
        "train.dtype=float64",
        "train.output_dir=runs",
    ]
    run_gandist(train_args("wgan_gp_digits.yaml", *common, "train.run_name=one"), tmp_path, nproc=1)
    run_gandist(
        train_args(
            "wgan_gp_digits.yaml", *common, "train.run_name=two", "dist.check_consistency_every=1"
        ),
        tmp_path,
        nproc=2,
    )
    one, two = (tmp_path / "runs" / n / "checkpoints/step_3" for n in ("one", "two"))
    for stem in ("generator", "discriminator"):
        assert max_diff(weights(one, stem), weights(two, stem)) < 1e-9


def test_sync_batchnorm_two_gpus_keeps_ranks_consistent(tmp_path: Path) -> None:
    need_gpus(2)
    proc = run_gandist(
        train_args(
            "dcgan_digits.yaml",
            "dist.sync_batchnorm=true",
            "dist.check_consistency_every=1",
            "train.steps=5",
        ),
        tmp_path,
        nproc=2,
    )
    assert "done: 5 steps" in proc.stdout


def test_batches_arrive_in_page_locked_memory() -> None:
    """In-memory sources index a batch out of the data tensors (pageable memory); on CUDA the
    stream pins it, so the trainer's non_blocking host-to-device copy does not block."""
    need_gpus(1)
    from gandist.config import DataConfig
    from gandist.data.sources.registry import load_source
    from gandist.data.stream import RankBatchStream

    stream = RankBatchStream(load_source(DataConfig(source="toy2d:ring8")), 64)
    x, y = next(stream)
    assert x.is_pinned() and y.is_pinned()
