"""Feature extractors for the image metrics: images in [-1, 1] -> (features, label logits).

Two kinds plug in behind one interface: `DomainExtractor` (the classifier `gandist
train-evaluator` trains for a data set; it also judges conditions) and `InceptionExtractor`
(InceptionV3 pool features, the standard FID network, loaded from a local weights file).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from gandist.evaluation.classifier import EvaluatorSpec, load_evaluator, weights_digest

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = (
    f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
)


class DomainExtractor(nn.Module):
    """The data set's own evaluator: penultimate-layer features plus its label logits."""

    kind = "domain"

    def __init__(self, directory: str | Path) -> None:
        super().__init__()
        self.net, self.spec = load_evaluator(directory)
        self.digest = weights_digest(directory)
        self.num_features = self.spec.feature_dim

    @property
    def label_type(self) -> str:
        return self.spec.label_type

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.net(x.float())


class InceptionExtractor(nn.Module):
    """InceptionV3 2048-d pool features as FID defines them (torch-fidelity's network).

    Images go in as uint8 RGB, as the network expects: [-1, 1] maps to [0, 255] and grey images
    are repeated to three channels. It has no labels to judge conditions with.
    """

    kind = "inception"
    label_type = "none"

    def __init__(self, weights: str | None) -> None:
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
        except ImportError as e:  # pragma: no cover - torchmetrics is a dependency
            raise ImportError("eval.extractor=inception needs torchmetrics") from e
        self.net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048"],
            feature_extractor_weights_path=weights,
        )
        self.digest = "inception-2015-12-05"
        self.num_features = 2048

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        u8 = ((x.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
        return self.net(u8), None


def resolve_inception_weights(setting: str) -> str | None:
    """The local InceptionV3 weights file to load; None means "let torch-fidelity download".

    Looked up in order: eval.inception_weights, $GANDIST_INCEPTION_WEIGHTS, torch's hub cache
    (where torch-fidelity stores its download). Nothing is fetched unless asked with `download`.
    """
    if setting == "download":
        return None
    if setting:
        candidates = [Path(setting).expanduser()]
    else:
        candidates = [Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE]
        if os.environ.get("GANDIST_INCEPTION_WEIGHTS"):
            candidates.insert(0, Path(os.environ["GANDIST_INCEPTION_WEIGHTS"]).expanduser())
    for c in candidates:
        if c.is_file():
            return str(c)
    raise FileNotFoundError(
        f"eval.extractor=inception: no InceptionV3 weights at {', '.join(map(str, candidates))}. "
        f"Fetch {INCEPTION_URL} on a machine with network and set eval.inception_weights=PATH "
        "(or GANDIST_INCEPTION_WEIGHTS), use eval.inception_weights=download where the network "
        "is reachable, or use eval.extractor=domain for a classifier trained on your data"
    )


def build_extractor(kind: str, evaluator_dir: Path, inception_weights: str) -> nn.Module:
    if kind == "inception":
        return InceptionExtractor(resolve_inception_weights(inception_weights))
    if kind == "domain":
        return DomainExtractor(evaluator_dir)
    raise ValueError(f"eval.extractor: unknown extractor {kind!r} (domain | inception)")


def spec_matches(spec: EvaluatorSpec, channels: int, image_size: int) -> str:
    """Why an evaluator cannot judge these images ('' when it can)."""
    if (spec.channels, spec.image_size) != (channels, image_size):
        return (
            f"the evaluator was trained on {spec.channels}x{spec.image_size}x{spec.image_size} "
            f"images but the generator makes {channels}x{image_size}x{image_size}"
        )
    return ""
