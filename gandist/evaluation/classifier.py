"""The domain evaluator: a small CNN classifier whose penultimate layer is the feature space.

InceptionV3 features need a weights download and describe natural photos; for offline data sets
(`digits`, `shapes`, a user's labelled folder) a classifier trained on the data itself gives both
a feature space for FID/KID/PRDC and the judge of conditional samples (as the iCLEVR evaluator
does). It is saved as safetensors plus `evaluator.json`, so loading it executes no pickled code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from gandist.config import DataConfig

WEIGHTS = "evaluator.safetensors"
META = "evaluator.json"
# Larger images are downsampled to this side first: colours, shapes and layout survive, and the
# evaluator stays trainable in minutes on a CPU. Use eval.extractor=inception for fine detail.
MAX_INPUT = 32


@dataclass
class EvaluatorSpec:
    """What rebuilds the network and says what it was trained on."""

    channels: int
    image_size: int
    label_type: str  # class | multi
    num_labels: int
    label_names: list[str] = field(default_factory=list)
    width: int = 16  # channels of the first block, doubled per block up to 256
    feature_dim: int = 128
    dataset_key: str = ""
    source: str = ""
    heldout: dict[str, float] = field(default_factory=dict)  # accuracy etc. on held-out data
    epochs: int = 0  # how long it trained (0: saved before this was recorded)


class EvaluatorNet(nn.Module):
    """conv-BN-ReLU-pool blocks (halving the side down to 4 px) -> global pool -> features ->
    label logits. Small on purpose: it trains in minutes on a CPU and only has to tell the
    data set's labels apart."""

    def __init__(self, spec: EvaluatorSpec) -> None:
        super().__init__()
        if spec.image_size < 8:
            raise ValueError(f"the evaluator needs images of at least 8 px, got {spec.image_size}")
        layers: list[nn.Module] = []
        self.input_size = min(spec.image_size, MAX_INPUT)
        c_in, c_out, side = spec.channels, spec.width, self.input_size
        while side > 4:
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in, c_out, side = c_out, min(c_out * 2, 256), side // 2
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(c_in, spec.feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(spec.feature_dim, spec.num_labels)
        self.num_features = spec.feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size,) * 2, mode="bilinear", antialias=True)
        return self.embed(self.body(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) of images in [-1, 1]."""
        f = self.features(x)
        return f, self.head(f)


def default_evaluator_dir(data: DataConfig) -> Path:
    """Where `gandist train-evaluator` puts, and evaluation looks for, a data set's evaluator."""
    from gandist.data.keys import dataset_key

    return Path(data.root) / "evaluators" / dataset_key(data)


def save_evaluator(net: EvaluatorNet, spec: EvaluatorSpec, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / (WEIGHTS + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp))
    tmp.replace(out_dir / WEIGHTS)
    (out_dir / META).write_text(json.dumps(asdict(spec), indent=2) + "\n")
    return out_dir


def load_evaluator(directory: str | Path) -> tuple[EvaluatorNet, EvaluatorSpec]:
    """The evaluator saved in `directory`, in eval mode; a clear error when there is none."""
    d = Path(directory)
    if not (d / WEIGHTS).is_file() or not (d / META).is_file():
        raise FileNotFoundError(
            f"no evaluator in {d} (expected {WEIGHTS} and {META}); train one with "
            "`gandist train-evaluator <data source>` or point eval.evaluator at its directory"
        )
    spec = EvaluatorSpec(**json.loads((d / META).read_text()))
    net = EvaluatorNet(spec)
    net.load_state_dict(load_file(str(d / WEIGHTS)))
    net.eval().requires_grad_(False)
    return net, spec


def weights_digest(directory: str | Path) -> str:
    """Short content hash of the evaluator weights: cached reference features name it, so a
    retrained evaluator never reuses features from the old one."""
    import hashlib

    h = hashlib.sha256((Path(directory) / WEIGHTS).read_bytes())
    return h.hexdigest()[:12]
