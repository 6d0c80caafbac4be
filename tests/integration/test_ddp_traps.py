"""Known DDP traps of GAN training, shown on 2 gloo processes, next to gandist's way around them.

`ddp_traps.py` runs once under `torchrun --standalone --nproc_per_node 2` (float64, deterministic
algorithms, process-group timeout 30 s) and writes a JSON report with every rank's findings; the
tests below each check one part of it. Each rank computes the 1-process reference itself (an
unwrapped copy of the same model on the full global batch). Numbers quoted in the docstrings were
measured with torch 2.15 (CPU) and accelerate 1.15.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).with_name("ddp_traps.py")
REPO = Path(__file__).resolve().parents[2]
CLIP = 0.01  # ddp_traps.CLIP


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Every rank's report from one 2-process run of ddp_traps.py."""
    out = tmp_path_factory.mktemp("ddp_traps") / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free rendezvous port on localhost
        "--nproc_per_node",
        "2",
        str(SCRIPT),
        str(out),
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",  # gloo on CPU even on a GPU machine
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(cmd, cwd=out.parent, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"ddp_traps.py exited {proc.returncode}\n{proc.stderr[-6000:]}"
    report = json.loads(out.read_text())
    assert [r["world_size"] for r in report["ranks"]] == [2, 2]
    return report["ranks"]


@pytest.mark.slow
def test_gradient_penalty_through_ddp_equals_one_process(ranks: list[dict[str, Any]]) -> None:
    """gradient_penalty through the critic as accelerate wraps it (DDP, find_unused_parameters
    =False, broadcast_buffers=False, no static graph), three forwards and one backward per rank on
    its slice, gives the 1-process full-batch critic gradients (measured 2.6e-16 and 1.4e-16 over
    two iterations; the gradients themselves are ~0.1), identical on both ranks."""
    for r in ranks:
        gp = r["gp"]
        assert gp["ours_is_ddp"] and not gp["ours_static_graph"]
        assert not gp["ours_find_unused_parameters"] and not gp["ours_broadcast_buffers"]
        assert max(gp["ours_vs_reference"]) < 1e-12, gp["ours_vs_reference"]
        assert gp["ours_rank_spread"] == [0.0, 0.0]
        assert gp["reference_grad_max"] > 1e-3  # the comparison is not between zeros


@pytest.mark.slow
def test_static_graph_breaks_the_gradient_penalty(ranks: list[dict[str, Any]]) -> None:
    """The trap: the same step with DDP(static_graph=True) gives wrong critic gradients (measured
    max |diff| to the reference 0.061 then 0.052, on gradients of size ~0.1) and the ranks
    disagree (by 0.12), in both iterations. So static_graph must stay off."""
    for r in ranks:
        gp = r["gp"]
        assert min(gp["static_graph_vs_reference"]) > 1e-3, gp["static_graph_vs_reference"]
        assert min(gp["static_graph_rank_spread"]) > 1e-3, gp["static_graph_rank_spread"]


@pytest.mark.slow
def test_clipping_on_every_rank_keeps_ranks_identical(ranks: list[dict[str, Any]]) -> None:
    """clip_weights_ after the optimizer step on every rank: check_consistency passes, ranks are
    bit-identical, every weight is within [-c, c], and the result equals the 1-process step
    (measured 2.6e-17)."""
    for r in ranks:
        clip = r["clip"]
        assert clip["ours_error"] == ""
        assert clip["ours_rank_spread"] == 0.0
        assert clip["ours_vs_reference"] < 1e-12
        assert clip["ours_max_abs_param"] <= CLIP


@pytest.mark.slow
def test_clipping_on_rank_zero_only_is_caught(ranks: list[dict[str, Any]]) -> None:
    """The trap: clipping on rank 0 only leaves the ranks' critics different (measured 0.061),
    and check_consistency raises on every rank, naming the tensors on the ranks that differ."""
    for r in ranks:
        assert "parameters differ across ranks" in r["clip"]["trap_error"]
        assert r["clip"]["trap_rank_spread"] > 1e-3
    assert "D.blocks.0.weight" in ranks[1]["clip"]["trap_error"]


@pytest.mark.slow
def test_sampling_from_unwrapped_generator_on_rank_zero_does_not_hang(
    ranks: list[dict[str, Any]],
) -> None:
    """Rank 0 samples from the unwrapped BatchNorm G (as Trainer.write_samples does) and sleeps
    1 s while rank 1 is already in the next all_reduce: the ranks meet in that collective (sum
    1 + 2) within the 30 s process-group timeout (measured 1.0 s).

    Why not the wrapped G: a no-grad forward of a DDP G with torch's default broadcast_buffers
    =True broadcasts the BN buffers, a collective, so calling it on rank 0 alone desynchronises the
    ranks (docs/distributed-correctness.md §5: gloo aborts). The unwrapped forward issues none.
    (gandist's own DDP G, broadcast_buffers=False, issued none either in torch 2.15, but the
    trainer does not rely on that.)"""
    assert ranks[0]["sampling"]["samples_shape"] == [8, 1, 28, 28]
    for r in ranks:
        s = r["sampling"]
        assert s["next_collective_sum"] == 3.0
        assert s["seconds"] < 30
        assert s["broadcasts_unwrapped"] == 0
        assert s["broadcasts_default_ddp"] >= 1


@pytest.mark.slow
def test_generator_step_leaves_discriminator_alone(ranks: list[dict[str, Any]]) -> None:
    """generator_step on a real GANParts (the trainer's Accelerator and prepare, 2 ranks), after a
    discriminator_step: D's parameters are bit-identical, D's grads stay None, D's requires_grad is
    restored, while G moved (by lr, 2e-4) identically on both ranks."""
    for r in ranks:
        g = r["g_step"]
        assert g["d_grads_after_d_step"]  # the D step did produce D grads
        assert g["d_params_bit_identical"]
        assert g["d_grads_none_or_zero"]
        assert g["d_requires_grad_restored"]
        assert g["g_moved"] > 1e-5 and g["g_loss_finite"]
        assert g["g_rank_spread"] == 0.0 and g["consistency_error"] == ""
