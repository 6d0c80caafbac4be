"""FLOPs of a training step and the share of the device's peak that a measured step achieves.

The count uses torch's FLOP formulas (`torch.utils.flop_counter.flop_registry`, the ones
`FlopCounterMode` applies) over one real eager step (G and D forwards, backwards and, for
WGAN-GP, the double backward of the penalty): matmuls and convolutions only, the usual "model
FLOPs". `FlopCounterMode` itself cannot be used: its module tracker hooks break
`autograd.grad` with respect to a leaf (x_hat of the penalty). Peaks are dense (no sparsity)
datasheet numbers for a few known GPUs; anything else, CPUs included, gets `null` rather than a
guess.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

# Dense TFLOP/s by GPU name fragment, most specific first: bf16/fp16 and TF32 tensor cores, FP32.
PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", {"bf16": 756.5, "fp16": 756.5, "tf32": 378.0, "fp32": 51.2}),
    ("H100", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),  # SXM / HBM3
    ("H200", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("A100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
]


class _FlopCount(TorchDispatchMode):
    """Adds up the registered formula of every dispatched op (no module attribution)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of `fn` (it runs for real, so a training step also updates weights)."""
    with _FlopCount() as counter:
        fn()
    return counter.total


def peak_tflops(device: torch.device, precision: str) -> tuple[float | None, str | None]:
    """(peak TFLOP/s, which datasheet column) for this device and precision, or (None, None).

    fp32 convolutions run on TF32 tensor cores when cuDNN allows TF32 (PyTorch's default), so
    that is the honest fp32 ceiling for a conv net.
    """
    if device.type != "cuda":
        return None, None
    name = torch.cuda.get_device_name(device)
    if precision in ("bf16", "fp16"):
        basis = precision
    else:
        basis = "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"
    for fragment, peaks in PEAK_TFLOPS:
        if fragment in name:
            return peaks[basis], basis
    return None, None


def flops_report(
    flops_per_step: int, ms_per_step: float, device: torch.device, precision: str
) -> dict[str, Any]:
    """Achieved TFLOP/s of a step and, where the peak is known, the fraction of it."""
    achieved = flops_per_step / (ms_per_step / 1000.0) / 1e12
    peak, basis = peak_tflops(device, precision)
    return {
        "flops_per_step": flops_per_step,
        "achieved_tflops": round(achieved, 5),
        "peak_tflops": peak,
        "peak_basis": basis,
        "fraction_of_peak": round(achieved / peak, 5) if peak else None,
    }
