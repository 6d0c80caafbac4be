"""Label conditioning shared by all architectures.

`model.condition`:
- none: labels ignored.
- concat: G gets embed(y) next to z (CGAN); D gets the label as an extra input (a 1 x H x W map
  for conv nets, iCLEVR-style; concatenated features for MLPs).
- project: G as concat; D is a projection discriminator (Miyato & Koyama 2018):
  adv = linear(h) + <embed(y), h>.
- acgan: G as concat; D sees only x and has an auxiliary classifier head on its features;
  with model.aux_project its real/fake logit also gets the projection term.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gandist.config import ModelConfig
from gandist.data.base import DatasetInfo
from gandist.models.packing import unpack_rows

CONDITIONS = ("none", "concat", "project", "acgan")


def check_condition(cfg: ModelConfig, info: DatasetInfo) -> None:
    """Fail at build time, with the config key, when the data cannot feed the chosen condition."""
    if cfg.condition not in CONDITIONS:
        raise ValueError(
            f"model.condition: unknown {cfg.condition!r} (known: {', '.join(CONDITIONS)})"
        )
    if cfg.condition == "none":
        return
    if info.label_type == "none" or info.num_labels <= 0:
        source = f" {info.source!r}" if info.source else ""
        raise ValueError(
            f"model.condition={cfg.condition!r} needs labels, but the data source{source} has no "
            "labels (label_type none); set model.condition: none or use a labelled source"
        )
    if info.label_type == "class" and info.num_labels < 2:
        # a folder with one subfolder (often `images/` beside a labels file) is one class
        names = ", ".join(repr(n) for n in info.label_names)
        raise ValueError(
            f"model.condition={cfg.condition!r} needs at least 2 classes, but the data source "
            f"{info.source!r} has one ({names}): the condition would carry nothing. A folder's "
            "classes are its subfolders; for labels in a file (multi-label images), write "
            "shards with `gandist shard folder:<dir> <out> --labels <labels.json>` and train "
            "on data.source=shards:<out>; or set model.condition: none"
        )


class LabelEncoder(nn.Module):
    """Labels -> (B, dim) vectors: an embedding table for classes, a linear map for multi-hot.

    The multi-hot map has no bias so that embed(y) is the sum of the active labels' vectors, the
    same meaning an embedding row has for one class (and an empty label set maps to zero).
    """

    def __init__(self, label_type: str, num_labels: int, dim: int) -> None:
        super().__init__()
        self.label_type = label_type
        if label_type == "class":
            self.embed: nn.Module = nn.Embedding(num_labels, dim)
        elif label_type == "multi":
            self.embed = nn.Linear(num_labels, dim, bias=False)
        else:
            raise ValueError(f"cannot encode labels of type {label_type!r} (class or multi)")

    def forward(self, y: Tensor | None) -> Tensor:
        if y is None:
            raise ValueError("this model is label-conditioned (model.condition) but got y=None")
        if self.label_type == "class":
            return self.embed(y.long().view(-1))
        return self.embed(y.to(self.embed.weight.dtype))


class LabelMap(nn.Module):
    """Labels -> (B, 1, H, W) map, concatenated to a conv critic's input as an extra channel."""

    def __init__(self, label_type: str, num_labels: int, embed_dim: int, size: int) -> None:
        super().__init__()
        self.size = size
        self.encoder = LabelEncoder(label_type, num_labels, embed_dim)
        self.to_map = nn.Linear(embed_dim, size * size)

    def forward(self, y: Tensor | None) -> Tensor:
        return self.to_map(self.encoder(y)).view(-1, 1, self.size, self.size)


def generator_encoder(cfg: ModelConfig, info: DatasetInfo) -> LabelEncoder | None:
    """Every conditional mode feeds G the same way: embed(y) concatenated to z.

    A class's vector starts with unit expected norm (entries N(0, 1/embed_dim)), the energy of
    the one-hot label of the CGAN paper, whatever embed_dim is. PyTorch's N(0, 1) rows have norm
    sqrt(embed_dim), about 7 at 50 against z's 10: G then learns a lookup table, one image per
    label, before it learns to use z, and ignores z from then on (docs/experiments.md,
    "ACGAN on digits: one image per label"). Both model.init schemes get this init: it is what
    makes the label an input next to z rather than instead of it.
    """
    if cfg.condition == "none":
        return None
    encoder = LabelEncoder(info.label_type, info.num_labels, cfg.embed_dim)
    if info.label_type == "class":
        nn.init.normal_(encoder.embed.weight, 0.0, cfg.embed_dim**-0.5)
    return encoder


def embed_labels(encoder: LabelEncoder | None, y: Tensor | None) -> Tensor | None:
    """G's label vector embed(y), or None for an unconditional G."""
    return None if encoder is None else encoder(y)


def join_latent(z: Tensor, e: Tensor | None) -> Tensor:
    """z or [z, e] along features (e: `embed_labels`)."""
    return z if e is None else torch.cat([z, e.to(z.dtype)], dim=1)


class LabelAffine(nn.Module):
    """The label's part of a conditional norm (de Vries et al. 2017; the conditional BatchNorm of
    SNGAN's and BigGAN's generators): x * (1 + gain(e)) + shift(e), per channel, after a plain
    norm layer, with e = G's label embedding.

    Both maps start at zero, so a new G is exactly the unconditional-norm one and the label's
    effect grows from there; init_weights leaves them so. With it the label reaches every
    upsampling stage instead of the first layer only.
    """

    def __init__(self, embed_dim: int, channels: int) -> None:
        super().__init__()
        self.gain = nn.Linear(embed_dim, channels, bias=False)
        self.shift = nn.Linear(embed_dim, channels, bias=False)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        e = e.to(x.dtype)
        return x * (1 + self.gain(e))[:, :, None, None] + self.shift(e)[:, :, None, None]


def run_layers(layers: nn.Module, x: Tensor, e: Tensor | None) -> Tensor:
    """Apply `layers` in order, handing the label embedding `e` to the LabelAffine ones."""
    for layer in layers:
        x = layer(x, e) if isinstance(layer, LabelAffine) else layer(x)
    return x


class AuxClassifier(nn.Linear):
    """The ACGAN classifier layer (and TAC-GAN's twin): a Linear that model.aux_spectral=false
    keeps out of spectral norm (`classifier_norm_skip`)."""


def classifier_norm_skip(cfg: ModelConfig) -> tuple[type[nn.Module], ...]:
    """Module types a critic's spectral norm leaves alone besides the label encoders."""
    return () if cfg.aux_spectral else (AuxClassifier,)


class CriticHead(nn.Module):
    """Flattened critic features -> (adv logits (B,), aux logits (B, K) | None); (B, 2K) with
    model.aux_twin: the classifier's K logits, then the twin's.

    Raw logits only: the losses apply their own (stable) link functions.
    """

    def __init__(self, features: int, cfg: ModelConfig, info: DatasetInfo) -> None:
        super().__init__()
        self.linear = nn.Linear(features, 1)
        self.project = (
            LabelEncoder(info.label_type, info.num_labels, features)
            if cfg.projects_labels
            else None
        )
        if self.project is not None and cfg.condition == "acgan":
            # model.aux_project: the term starts at zero, so the critic begins as the plain
            # ACGAN one and the label's share of the realism score grows from the data.
            nn.init.zeros_(self.project.embed.weight)
        # A packed critic (model.pack=k) classifies every member of its pack: k x K logits.
        self.pack = cfg.pack
        self.aux = (
            AuxClassifier(features, info.num_labels * cfg.pack)
            if cfg.condition == "acgan"
            else None
        )
        # model.aux_twin (TAC-GAN): a second classifier, trained on G's images; its K logits
        # follow the classifier's (objectives.losses.split_twin takes them apart).
        self.twin = (
            AuxClassifier(features, info.num_labels * cfg.pack)
            if cfg.condition == "acgan" and cfg.aux_twin
            else None
        )

    def forward(self, h: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        # squeeze(-1), not squeeze(): a batch of one must stay (1,).
        adv = self.linear(h).squeeze(-1)
        if self.project is not None:
            adv = adv + (self.project(y).to(h.dtype) * h).sum(dim=1)
        # (packs, k * K) -> (B, K): every member's logits, in sample order
        aux = unpack_rows(self.aux(h), self.pack) if self.aux is not None else None
        if self.twin is not None:
            aux = torch.cat([aux, unpack_rows(self.twin(h), self.pack)], dim=1)
        return adv, aux


def random_labels(label_type: str, num_labels: int, n: int, g: torch.Generator) -> Tensor:
    """n labels as a conditional G is asked for them without a choice: uniform classes, or
    sets of 1-3 labels (multi-label data)."""
    if label_type == "class":
        return torch.randint(num_labels, (n,), generator=g)
    y = torch.zeros(n, num_labels)
    for row in y:
        perm = torch.randperm(num_labels, generator=g)
        row[perm[: int(torch.randint(1, min(3, num_labels) + 1, (1,), generator=g))]] = 1
    return y
