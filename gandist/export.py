"""`gandist export`: a run's generator as a TorchScript or ONNX file that loads without gandist.

    gandist export runs/demo --format torchscript --out g.pt    # torch.jit.load("g.pt")
    gandist export runs/demo --format onnx --out g.onnx         # onnxruntime.InferenceSession

The generator is rebuilt from the checkpoint as everywhere else (gandist.inference /
gandist.sampling: config.yaml + safetensors), EMA weights when the run kept them unless
`use_ema=False`, in eval mode, so BatchNorm uses its running statistics and the file is a pure
function of its inputs:

- unconditional: `G(z)`, z float32 (B, z_dim);
- conditional: `G(z, labels)`, labels int64 class indices (B,) or float32 multi-hot (B, K);
- output float32 (B, C, H, W) images in [-1, 1] (or (B, D) points), any batch size B.

What a consumer needs to drive it (z_dim, label names, output range, source checkpoint) travels
inside the file as JSON: TorchScript `_extra_files["gandist.json"]`, ONNX `metadata_props`
key `gandist`. Spectral-norm weights are folded into plain weights first (exact in eval mode),
so the graph holds no power iteration.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from gandist import __version__
from gandist.inference import TrainedGenerator, load_generator
from gandist.training.checkpoint import read_trainer_state

FORMATS = ("torchscript", "onnx")
METADATA_KEY = "gandist"  # TorchScript extra file "gandist.json"; ONNX metadata_props key


class _Unconditional(nn.Module):
    """forward(z): the exported signature has exactly the inputs the generator uses."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z, None)


class _Conditional(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        return self.net(z, labels)


def _plain_copy(net: nn.Module) -> nn.Module:
    """A copy with parametrizations (spectral norm) baked into ordinary weights, in eval mode and
    without gradients (so a consumer's outputs do not require grad either)."""
    net = copy.deepcopy(net).float().eval().requires_grad_(False)
    for module in list(net.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return net.requires_grad_(False)


def metadata(G: TrainedGenerator) -> dict[str, Any]:
    """What a consumer needs to feed the exported file and read its output."""
    info = G.info
    state = read_trainer_state(G.checkpoint)
    inputs = {"z": {"dtype": "float32", "shape": ["batch", G.z_dim]}}
    if G.conditional:
        inputs["labels"] = (
            {"dtype": "int64", "shape": ["batch"], "meaning": "class index"}
            if info.label_type == "class"
            else {"dtype": "float32", "shape": ["batch", info.num_labels], "meaning": "multi-hot"}
        )
    return {
        "format": 1,
        "gandist_version": __version__,
        "checkpoint": str(G.checkpoint),
        "step": int(state.get("step", 0)),
        "weights": "ema_generator" if G.ema else "generator",
        "z_dim": G.z_dim,
        "z_distribution": "standard normal",
        "inputs": inputs,
        "kind": info.kind,
        "output_shape": ["batch", *G.sample_shape],
        "output_range": [-1.0, 1.0] if info.kind == "image" else None,
        "label_type": info.label_type,
        "label_names": list(G.label_names),
    }


def example_inputs(G: TrainedGenerator, batch: int = 2) -> tuple[Tensor, ...]:
    """Inputs to trace with: noise, plus labels of the right dtype for conditional models."""
    z = torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(0))
    if not G.conditional:
        return (z,)
    y = G.labels(None, batch, seed=0)
    assert y is not None
    return z, y


def export_generator(
    path: str | Path, fmt: str, out: str | Path, use_ema: bool = True
) -> tuple[Path, dict[str, Any]]:
    """Write the generator of a run or checkpoint directory to `out`; returns (out, metadata)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format: unknown {fmt!r} (known: {', '.join(FORMATS)})")
    G = load_generator(path, ema=use_ema)
    net = _plain_copy(G.net)
    wrapper = (_Conditional(net) if G.conditional else _Unconditional(net)).eval()
    inputs = example_inputs(G)
    meta = metadata(G)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        if fmt == "torchscript":
            _torchscript(wrapper, inputs, out, meta)
        else:
            _onnx(wrapper, inputs, out, meta)
    return out, meta


def _torchscript(wrapper: nn.Module, inputs: tuple[Tensor, ...], out: Path, meta: dict) -> None:
    # Tracing records the eval-mode graph; the generators have no data-dependent control flow
    # (the batch dimension is -1 in every view), so the trace serves any batch size.
    with warnings.catch_warnings():
        # torch >= 2.10 marks torch.jit deprecated in favour of torch.export; TorchScript files
        # still load with torch.jit.load everywhere, which is what this format is for.
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        traced = torch.jit.trace(wrapper, inputs)
        torch.jit.save(traced, str(out), _extra_files={f"{METADATA_KEY}.json": json.dumps(meta)})


def _onnx(wrapper: nn.Module, inputs: tuple[Tensor, ...], out: Path, meta: dict) -> None:
    try:
        import onnx
        import onnxscript  # noqa: F401 - torch's ONNX exporter needs it; fail here, clearly
    except ImportError as exc:  # an extra, not a dependency of training
        raise ValueError(
            "--format onnx needs the onnx and onnxscript packages: pip install 'gandist[export]' "
            "(or use --format torchscript)"
        ) from exc
    names = ["z", "labels"][: len(inputs)]
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on axis names and opsets
        torch.onnx.export(
            wrapper,
            inputs,
            str(out),
            input_names=names,
            output_names=["samples"],
            dynamic_shapes={n: {0: batch} for n in names},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    model = onnx.load(str(out))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(model, str(out))
