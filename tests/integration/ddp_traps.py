"""The known DDP traps of GAN training, each next to gandist's way of avoiding it.

Run under `torchrun --nproc_per_node 2` (gloo, CPU); writes a JSON report to the path given as
the only argument (rank 0 writes it, with every rank's findings). tests/integration/
test_ddp_traps.py launches it once and checks the report. Every rank computes the 1-process
reference itself, on the full global batch with an unwrapped copy of the same model, so no second
run is needed.

The networks are gandist's own (DCGAN, width 8, 28x28, float64), wrapped by the Accelerator that
`gandist.training.distributed.build_accelerator` makes for the trainer, i.e. DDP with
find_unused_parameters=False and broadcast_buffers=False. The process group times out after 30 s,
so a desynchronised collective fails the run instead of hanging it.

Sections (docs/distributed-correctness.md §1-5):
  gp        gradient penalty through the DDP critic + one backward == 1-process reference;
            the same with static_graph=True (the trap)
  clip      weight clipping on every rank keeps ranks identical; on rank 0 only it does not
  sampling  the unwrapped G on rank 0 only while rank 1 enters the next collective
  g_step    generator_step leaves D's parameters bit-identical and D's grads None
"""

from __future__ import annotations

import copy
import json
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from accelerate import Accelerator
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

from gandist.config import Config, LossConfig, ModelConfig
from gandist.data.base import DatasetInfo
from gandist.models import build_discriminator, build_generator
from gandist.objectives.losses import LOSSES
from gandist.objectives.penalties import clip_weights_, gradient_penalty, interpolate
from gandist.training.distributed import build_accelerator, check_consistency
from gandist.training.steps import GANParts, discriminator_step, generator_step

INFO = DatasetInfo(kind="image", channels=1, image_size=28, label_type="none", num_labels=0)
Z_DIM = 8
BATCH = 8  # global batch; each of the 2 ranks takes 4 rows
GP_WEIGHT = 10.0
CLIP = 0.01


def model_cfg(g_norm: str = "layer", d_norm: str = "none") -> ModelConfig:
    return ModelConfig(
        arch="dcgan", z_dim=Z_DIM, g_width=8, d_width=8, g_norm=g_norm, d_norm=d_norm
    )


def critic(seed: int = 0) -> nn.Module:
    """A DCGAN critic without BatchNorm, identical on every rank (same seed)."""
    torch.manual_seed(seed)
    return build_discriminator(model_cfg(), INFO).double()


def generator(g_norm: str, seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return build_generator(model_cfg(g_norm=g_norm), INFO).double()


def global_batch(seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """(real, fake, eps) for the whole global batch, the same on every rank."""
    g = torch.Generator().manual_seed(seed)
    shape = (BATCH, *INFO.sample_shape)
    real = torch.randn(shape, generator=g, dtype=torch.float64)
    fake = torch.randn(shape, generator=g, dtype=torch.float64)
    return real, fake, torch.rand(BATCH, generator=g, dtype=torch.float64)


def grads(module: nn.Module) -> list[Tensor]:
    return [p.grad.detach().clone() for p in module.parameters()]


def max_abs_diff(a: list[Tensor], b: list[Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def rank_spread(tensors: list[Tensor]) -> float:
    """Max |this rank - rank 0| over the tensors (a collective)."""
    worst = 0.0
    for t in tensors:
        ref = t.detach().clone()
        dist.broadcast(ref, src=0)
        worst = max(worst, (ref - t.detach()).abs().max().item())
    out = torch.tensor([worst], dtype=torch.float64)
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out.item()


def wgan_gp_loss(D: Callable, real: Tensor, fake: Tensor, eps: Tensor) -> Tensor:
    """What discriminator_step does for WGAN-GP: D(real), D(fake), penalty via autograd.grad."""
    loss = D(fake, None)[0].mean() - D(real, None)[0].mean()
    gp, _ = gradient_penalty(D, interpolate(real, fake, eps), None)
    return loss + GP_WEIGHT * gp


# ----------------------------------------------------------------------------- sections


def section_gp(acc: Accelerator, rows: slice) -> dict[str, Any]:
    """Critic gradients of one WGAN-GP step: ours and static_graph=True vs the 1-process
    reference, for two iterations (DDP's static graph is recorded in the first)."""
    base = critic()
    ref = copy.deepcopy(base)
    ours = acc.prepare(copy.deepcopy(base))
    trap = DDP(
        copy.deepcopy(base),
        find_unused_parameters=False,
        broadcast_buffers=False,
        static_graph=True,
    )
    out: dict[str, Any] = {
        "ours_is_ddp": isinstance(ours, DDP),
        "ours_find_unused_parameters": bool(ours.find_unused_parameters),
        "ours_broadcast_buffers": bool(ours.broadcast_buffers),
        "ours_static_graph": bool(ours.static_graph),
        "ours_vs_reference": [],
        "static_graph_vs_reference": [],
        "static_graph_rank_spread": [],
        "ours_rank_spread": [],
    }
    for it in range(2):
        real, fake, eps = global_batch(seed=100 + it)
        for m in (ref, ours, trap):
            m.zero_grad(set_to_none=True)
        wgan_gp_loss(ref, real, fake, eps).backward()  # 1 process, full global batch
        wgan_gp_loss(ours, real[rows], fake[rows], eps[rows]).backward()
        wgan_gp_loss(trap, real[rows], fake[rows], eps[rows]).backward()
        g_ref, g_ours, g_trap = grads(ref), grads(ours.module), grads(trap.module)
        out["ours_vs_reference"].append(max_abs_diff(g_ours, g_ref))
        out["static_graph_vs_reference"].append(max_abs_diff(g_trap, g_ref))
        out["ours_rank_spread"].append(rank_spread(g_ours))
        out["static_graph_rank_spread"].append(rank_spread(g_trap))
    out["reference_grad_max"] = max(g.abs().max().item() for g in g_ref)
    return out


def _clip_run(acc: Accelerator, rows: slice, clip_on: Callable[[int], bool]) -> tuple:
    """One RMSprop WGAN critic step on this rank's rows, then clipping where clip_on(rank)."""
    D = acc.prepare(critic())
    opt = torch.optim.RMSprop(D.parameters(), lr=5e-5)
    real, fake, _ = global_batch(seed=200)
    loss = D(fake[rows], None)[0].mean() - D(real[rows], None)[0].mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if clip_on(acc.process_index):
        clip_weights_(acc.unwrap_model(D), CLIP)
    return acc.unwrap_model(D), real, fake


def _consistency(acc: Accelerator, module: nn.Module) -> str:
    """'' if check_consistency passes, else its error message."""
    try:
        check_consistency(acc, {"D": module})
    except RuntimeError as exc:
        return str(exc)
    return ""


def section_clip(acc: Accelerator, rows: slice) -> dict[str, Any]:
    """Clipping on every rank (ours) vs on rank 0 only (the trap), after one optimizer step."""
    ours, real, fake = _clip_run(acc, rows, lambda rank: True)
    ref = critic()  # the 1-process reference on the full batch
    opt = torch.optim.RMSprop(ref.parameters(), lr=5e-5)
    (ref(fake, None)[0].mean() - ref(real, None)[0].mean()).backward()
    opt.step()
    clip_weights_(ref, CLIP)
    trap, _, _ = _clip_run(acc, rows, lambda rank: rank == 0)
    params = list(ours.parameters())
    return {
        "ours_error": _consistency(acc, ours),
        "ours_rank_spread": rank_spread(params),
        "ours_vs_reference": max_abs_diff(params, list(ref.parameters())),
        "ours_max_abs_param": max(p.abs().max().item() for p in params),
        "trap_error": _consistency(acc, trap),
        "trap_rank_spread": rank_spread(list(trap.parameters())),
    }


def section_sampling(acc: Accelerator) -> dict[str, Any]:
    """Rank 0 samples from the unwrapped G (as Trainer.write_samples does) while rank 1 goes
    straight to the next collective; then count the collectives a sampling forward issues."""
    G = acc.prepare(generator("batch"))
    G_plain = acc.unwrap_model(G)
    z = torch.randn(BATCH, Z_DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    G(z[:4], None).square().mean().backward()  # a live DDP module that has done a step
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    if acc.is_main_process:
        with torch.no_grad():
            G_plain.eval()
            samples = G_plain(z, None)
            G_plain.train()
        time.sleep(1.0)  # rank 1 is already waiting in the all_reduce below
        out["samples_shape"] = list(samples.shape)
    after = torch.tensor([acc.process_index + 1.0], dtype=torch.float64)
    dist.all_reduce(after)  # the next collective: both ranks must meet here, not elsewhere
    out["next_collective_sum"] = after.item()  # 1 + 2 when the ranks met in this collective
    out["seconds"] = time.perf_counter() - t0

    # Which forwards are collectives? Count DDP's buffer broadcasts during a no-grad forward run
    # on every rank (so nothing hangs here); a forward that broadcasts cannot be run on rank 0
    # alone. The DDP-wrapped G with torch's default broadcast_buffers=True is the trap.
    calls = {"n": 0}
    real_bc = dist._broadcast_coalesced

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return real_bc(*args, **kwargs)

    trap = DDP(copy.deepcopy(G_plain))  # torch's defaults: broadcast_buffers=True
    dist._broadcast_coalesced = counting
    try:
        for name, net in (("unwrapped", G_plain), ("accelerate_ddp", G), ("default_ddp", trap)):
            calls["n"] = 0
            with torch.no_grad():
                net(z[:4], None)
            out[f"broadcasts_{name}"] = calls["n"]
    finally:
        dist._broadcast_coalesced = real_bc
    return out


def section_g_step(acc: Accelerator, rows: slice) -> dict[str, Any]:
    """A real GANParts as the trainer builds it; one D step, then one G step."""
    torch.manual_seed(5)
    G = build_generator(model_cfg(g_norm="layer"), INFO).double()
    D = build_discriminator(model_cfg(d_norm="layer"), INFO).double()
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
        G, D, opt_g, opt_d = acc.prepare(G, D, opt_g, opt_d)
    parts = GANParts(acc, G, D, opt_g, opt_d, LOSSES.get("ns"), LossConfig(), "none")
    real, _, _ = global_batch(seed=300)
    g = torch.Generator().manual_seed(301)
    z_d, z_g = (torch.randn(BATCH, Z_DIM, generator=g, dtype=torch.float64) for _ in range(2))
    y = torch.zeros(BATCH, dtype=torch.long)
    eps = torch.rand(BATCH, generator=g, dtype=torch.float64)
    discriminator_step(parts, real[rows], y[rows], z_d[rows], eps[rows])
    d_grads_after_d_step = all(p.grad is not None for p in parts.D_plain.parameters())
    opt_d.zero_grad(set_to_none=True)
    d_before = [p.detach().clone() for p in parts.D_plain.parameters()]
    g_before = [p.detach().clone() for p in parts.G_plain.parameters()]
    metrics = generator_step(parts, y[rows], z_g[rows])
    d_params = list(parts.D_plain.parameters())
    return {
        "d_grads_after_d_step": d_grads_after_d_step,
        "d_params_bit_identical": all(
            torch.equal(a, b.detach()) for a, b in zip(d_before, d_params, strict=True)
        ),
        "d_grads_none_or_zero": all(p.grad is None or not p.grad.any() for p in d_params),
        "d_requires_grad_restored": all(p.requires_grad for p in d_params),
        "g_moved": max_abs_diff(g_before, list(parts.G_plain.parameters())),
        "g_rank_spread": rank_spread(list(parts.G_plain.parameters())),
        "g_loss_finite": bool(torch.isfinite(metrics["g/loss"])),
        "consistency_error": _consistency(acc, parts.G_plain),
    }


def main(report_path: str) -> None:
    torch.use_deterministic_algorithms(True)
    cfg = Config()
    cfg.dist.timeout_s = 30  # a desynchronised collective fails in 30 s instead of hanging
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
        acc = build_accelerator(cfg, log_with=None)  # the trainer's Accelerator
    if acc.num_processes != 2 or acc.device.type != "cpu":
        raise SystemExit(f"needs 2 CPU processes, got {acc.num_processes} on {acc.device}")
    share = BATCH // acc.num_processes
    rows = slice(acc.process_index * share, (acc.process_index + 1) * share)
    report: dict[str, Any] = {"torch": torch.__version__, "world_size": acc.num_processes}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
        report["gp"] = section_gp(acc, rows)
        report["clip"] = section_clip(acc, rows)
        report["g_step"] = section_g_step(acc, rows)
        report["sampling"] = section_sampling(acc)
    gathered: list[Any] = [None] * acc.num_processes
    dist.all_gather_object(gathered, report)
    if acc.is_main_process:
        with open(report_path, "w") as f:
            json.dump({"ranks": gathered}, f, indent=1)
    acc.wait_for_everyone()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
