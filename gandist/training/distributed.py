"""Process-group facts the trainer must get right: device choice, world size, rank agreement."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

from gandist.config import Config
from gandist.objectives.penalties import PENALTIES

PRECISIONS = ("no", "bf16", "fp16")
LAUNCH_ENV = "ACCELERATE_MIXED_PRECISION"
DYNAMO_ENV = "ACCELERATE_DYNAMO_BACKEND"


def launched_precision(env: Mapping[str, str] | None = None) -> str:
    """The mixed precision accelerate was launched with, or "" when none was given.

    `accelerate launch --mixed_precision X` and the `mixed_precision` of `accelerate config`'s file
    both reach the training process only as ACCELERATE_MIXED_PRECISION (the Accelerator reads
    nothing else), so this variable is the whole of "what accelerate was launched with". An empty
    value counts as unset.
    """
    env = os.environ if env is None else env
    return env.get(LAUNCH_ENV, "").strip().lower()


def resolve_precision(requested: str, env: Mapping[str, str] | None = None) -> str:
    """The precision the Accelerator will run: an explicit train.precision wins; `auto` takes
    accelerate's launch setting, else `no` (accelerate's own default)."""
    if requested != "auto":
        return requested
    return launched_precision(env) or "no"


def precision_conflict(requested: str, env: Mapping[str, str] | None = None) -> str | None:
    """A one-line notice when an explicit train.precision overrides accelerate's launch setting
    (so a user of `accelerate launch --mixed_precision` learns why the flag did nothing).

    A launch setting of `no` is not reported: `accelerate launch` sets it whenever neither its
    flag nor its config file names a precision, so it usually means "nothing asked for".
    """
    launched = launched_precision(env)
    if requested == "auto" or launched in ("", "no", requested):
        return None
    return (
        f"gandist: train.precision={requested} overrides the mixed precision accelerate was "
        f"launched with ({LAUNCH_ENV}={launched}, from `accelerate launch --mixed_precision` or "
        f"`accelerate config`); training runs in {requested}. Leave train.precision at auto to "
        "follow accelerate."
    )


def dynamo_conflict(penalty: str, env: Mapping[str, str] | None = None) -> str | None:
    """Why accelerate's torch.compile cannot train this config, or None.

    `accelerate launch --dynamo_backend X` (or dynamo in `accelerate config`) reaches the process
    as ACCELERATE_DYNAMO_BACKEND, and accelerate then compiles G and D in `prepare`. A gradient
    penalty differentiates the critic's input gradient again (create_graph), which a compiled
    critic's backward cannot do: torch fails inside the first critic step, after the compile.
    Runs without such a penalty train compiled (their exports stay plain modules).
    """
    env = os.environ if env is None else env
    backend = env.get(DYNAMO_ENV, "").strip().lower()
    # a penalty with a loss term (gp, r1) takes it through torch.autograd.grad(create_graph=True)
    if backend in ("", "no") or PENALTIES.get(penalty).term is None:
        return None
    return (
        f"loss.penalty={penalty} needs the gradient of the critic's gradient, which a critic "
        f"compiled by torch.compile cannot give, and accelerate was launched to compile "
        f"({DYNAMO_ENV}={backend}, from `accelerate launch --dynamo_backend` or `accelerate "
        "config`). Launch with --dynamo_backend no (or answer no to dynamo in `accelerate "
        "config`)"
    )


# accelerate's engines that shard or pipeline the models instead of DDP, by the variable its
# launcher sets (`accelerate launch --use_fsdp`, ... or `accelerate config`)
ENGINES = {
    "ACCELERATE_USE_FSDP": ("FSDP", "--use_fsdp"),
    "ACCELERATE_USE_DEEPSPEED": ("DeepSpeed", "--use_deepspeed"),
    "ACCELERATE_USE_MEGATRON_LM": ("Megatron-LM", "--use_megatron_lm"),
}


def engine_conflict(env: Mapping[str, str] | None = None) -> str | None:
    """Why gandist will not start under accelerate's FSDP, DeepSpeed or Megatron-LM, or None.

    gandist wraps G and D in DDP and its guarantees are DDP's (the gradient penalty through the
    wrapped critic, BatchNorm statistics averaged by hand, the EMA of the full G, checkpoints of
    whole modules; docs/distributed-correctness.md). accelerate would swap the wrapper in
    `prepare` on a GPU (on CPU it ignores the setting), and none of that is tested there.
    """
    env = os.environ if env is None else env
    for var, (name, flag) in ENGINES.items():
        if env.get(var, "false").strip().lower() == "true":
            return (
                f"accelerate was launched with {name} ({var}=true, from `accelerate launch "
                f"{flag}` or `accelerate config`); gandist trains G and D with DDP, which its "
                "gradient penalty, BatchNorm averaging, EMA and checkpoints are built and "
                f"tested for (docs/distributed-correctness.md). Launch without {flag} (answer "
                "no to it in `accelerate config`): these GANs fit on one device each"
            )
    return None


def cpu_has_native_bf16() -> bool | None:
    """Whether this x86 CPU does bf16 arithmetic (AVX512-BF16 or AMX); None where torch cannot
    tell (other architectures, or a torch without its private CPU probes)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    probes = [
        getattr(torch.cpu, name, None)
        for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    probes = [p for p in probes if callable(p)]
    return any(p() for p in probes) if probes else None


def cpu_bf16_notice(precision: str, on_cpu: bool, native_bf16: bool | None) -> str | None:
    """A one-line warning for bf16 on a CPU that converts every op instead of computing in bf16
    (docs/performance.md: 4-10x slower than fp32 on an AVX2 CPU, 1.5x faster on one with
    AVX512-BF16), so a recipe that sets bf16 (the shapes twin) costs no silent hours there."""
    if precision != "bf16" or not on_cpu or native_bf16 is not False:
        return None
    return (
        "gandist: train.precision=bf16 on a CPU without bf16 arithmetic (no AVX512-BF16 or AMX): "
        "autocast converts every op, which is several times slower than fp32 here "
        "(docs/performance.md). Set train.precision=no on this machine."
    )


def build_accelerator(cfg: Config, log_with: str | None) -> Accelerator:
    """An Accelerator for this config, on CPU when no GPU is present.

    `cpu=True` matters on GPU-less hosts: without it torchrun-started processes each believe they
    are alone (docs/distributed-correctness.md §10). Buffers are not broadcast on every forward: D
    runs twice (real, fake) before one backward, and BatchNorm statistics are averaged by
    `sync_buffers` instead.
    With train.precision=auto no mixed_precision is passed, so accelerate's launch flag, env or
    config file decides; the checks below apply to what will actually run. The caller reads the
    result back from `accelerator.mixed_precision`.
    """
    t = cfg.train
    precision = resolve_precision(t.precision)
    source = (
        f"train.precision={t.precision}"
        if t.precision != "auto"
        else f"accelerate's mixed precision ({LAUNCH_ENV}={precision})"
    )
    if precision not in PRECISIONS:
        raise ValueError(
            f"{source}: gandist trains in {', '.join(PRECISIONS)}; launch accelerate with one of "
            "those or set train.precision explicitly"
        )
    if precision == "fp16" and not torch.cuda.is_available():
        raise ValueError(
            f"{source}: fp16 needs a CUDA GPU (on CPU accelerate silently runs without a loss "
            "scaler); use train.precision=bf16 or no on this machine"
        )
    for conflict in (engine_conflict(), dynamo_conflict(cfg.loss.penalty)):
        if conflict:
            raise ValueError(conflict)
    if precision != "no" and t.dtype == "float64":
        raise ValueError(
            f"{source}: train.dtype=float64 cannot be combined with mixed precision; set "
            "train.precision=no"
        )
    handlers = [
        DistributedDataParallelKwargs(broadcast_buffers=False, find_unused_parameters=False),
        InitProcessGroupKwargs(timeout=timedelta(seconds=cfg.dist.timeout_s)),
    ]
    acc = Accelerator(
        cpu=not torch.cuda.is_available(),
        # None: accelerate reads its launch setting itself; an empty variable would reach it as
        # an invalid mode "", so that case is spelled out as accelerate's default.
        mixed_precision=(
            t.precision if t.precision != "auto" else (None if launched_precision() else "no")
        ),
        log_with=log_with,
        kwargs_handlers=handlers,
    )
    notices = (
        precision_conflict(t.precision),
        cpu_bf16_notice(acc.mixed_precision, acc.device.type == "cpu", cpu_has_native_bf16()),
    )
    for notice in notices:
        if notice and acc.is_main_process:
            print(notice, file=sys.stderr, flush=True)
    return acc


class WorldSizeMismatch(ValueError):
    """The processes running are not the ones launched (a usage error: exit 2, one line)."""


def accelerate_cpu_processes() -> int:
    """N of `accelerate launch --cpu --num_processes N`, 0 when not launched so.

    accelerate's CPU mode starts one process and tells it nothing of N (no WORLD_SIZE), so a
    user who asked for 2 trained on 1 without a word; the launcher's command line (Linux /proc
    of the parent process) still says what was asked."""
    if "WORLD_SIZE" in os.environ or not os.environ.get("ACCELERATE_USE_CPU"):
        return 0
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return 0
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    if not any("accelerate" in w for w in words[:3]):
        return 0
    for i, w in enumerate(words):
        flag, _, value = w.partition("=")
        if flag in ("--num_processes", "--num-processes"):
            value = value or (words[i + 1] if i + 1 < len(words) else "")
            return int(value) if value.isdigit() else 0
    return 0


def assert_world_size(accelerator: Accelerator, expected: int = 0) -> None:
    """Fail fast when the launcher and accelerate disagree (silent duplication otherwise)."""
    want = expected or int(os.environ.get("WORLD_SIZE", "0")) or accelerate_cpu_processes() or 1
    got = accelerator.num_processes
    if got != want:
        raise WorldSizeMismatch(
            f"launched for {want} processes but accelerate sees {got} (distributed type "
            f"{accelerator.distributed_type}). On a CPU-only host use "
            "`torchrun --nproc_per_node N` or `accelerate launch --multi_gpu --num_processes N` "
            "(`accelerate launch --cpu --num_processes N` starts only one process); "
            "check dist.world_size."
        )


def sync_buffers(accelerator: Accelerator, *modules: torch.nn.Module) -> None:
    """Average float buffers (BatchNorm running stats) over ranks.

    Running statistics are exponential averages, which are linear, so averaging them now equals
    having averaged every step. Call on all ranks before sampling, evaluation or checkpointing.
    """
    if accelerator.num_processes == 1:
        return
    for module in modules:
        for buf in module.buffers():
            if buf.is_floating_point():
                dist.all_reduce(buf.data, op=dist.ReduceOp.SUM)
                buf.data /= accelerator.num_processes


def check_consistency(accelerator: Accelerator, modules: dict[str, torch.nn.Module]) -> None:
    """Raise if any parameter or buffer differs from rank 0's copy (call on all ranks)."""
    if accelerator.num_processes == 1:
        return
    bad: list[str] = []
    for name, module in modules.items():
        tensors = list(module.named_parameters()) + list(module.named_buffers())
        for key, t in tensors:
            ref = t.detach().clone()
            dist.broadcast(ref, src=0)
            if not torch.equal(ref, t.detach()):
                diff = (ref.float() - t.detach().float()).abs().max().item()
                bad.append(f"{name}.{key} (max |diff| {diff:.3g})")
    flag = torch.tensor([len(bad)], device=accelerator.device)
    dist.all_reduce(flag)
    if flag.item():
        where = "; ".join(bad[:5]) or "on another rank"
        raise RuntimeError(
            f"rank {accelerator.process_index}: parameters differ across ranks: {where}"
        )
