"""DCGAN generator and discriminator for square images of 16 to 256 pixels.

G: Linear(z [+ embed(y)]) -> (C0, s0, s0) -> norm + ReLU -> n upsampling blocks -> Tanh; with
model.g_cond_norm every norm is followed by a label-driven scale and shift (LabelAffine).
D: n stride-2 conv blocks (no norm on the first) -> flatten (or sum over positions, model.d_pool)
-> Linear -> 1 (+ projection / aux).
With kernel 5 and 64 px this is the anime-faces lab's DCGAN; the final Linear over the 4 x 4 map
is the lab's 4 x 4 conv to one logit.

Sizes: every side whose halving chain ends at a 3-7 px map (config.DCGAN_IMAGE_SIZES: 16, 20,
24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256); the number of blocks follows
from the size, so 28 px (2 blocks from 7 px) and 64 px (4 blocks from 4 px) keep the lab layouts.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gandist.config import DCGAN_IMAGE_SIZES, ModelConfig, dcgan_layout
from gandist.data.base import DatasetInfo
from gandist.models.conditioning import (
    CriticHead,
    LabelAffine,
    LabelMap,
    check_condition,
    classifier_norm_skip,
    embed_labels,
    generator_encoder,
    join_latent,
    run_layers,
)
from gandist.models.init import finish
from gandist.models.norms import conv_bias, norm2d
from gandist.models.packing import check_pack, pack


def _layout(info: DatasetInfo) -> tuple[int, int]:
    if info.kind != "image":
        raise ValueError(
            f"model.arch='dcgan' needs image data, but the source is {info.kind!r}; "
            "use model.arch: toy (or mlp) for point sets"
        )
    layout = dcgan_layout(info.image_size)
    if layout is None:
        sizes = ", ".join(str(s) for s in DCGAN_IMAGE_SIZES)
        raise ValueError(
            f"model.arch='dcgan' supports square image sizes {sizes}; got {info.image_size} "
            "(set data.image_size to one of them)"
        )
    return layout


def _padding(kernel: int) -> int:
    if kernel not in (4, 5):
        raise ValueError(f"model.kernel: DCGAN kernels are 4 or 5, got {kernel}")
    return 1 if kernel == 4 else 2


def _upsample(c_in: int, c_out: int, cfg: ModelConfig, bias: bool) -> nn.Module:
    """One x2 upsampling layer; both modes map s -> 2s for kernels 4 and 5."""
    pad = _padding(cfg.kernel)
    if cfg.g_upsample == "transposed":
        out_pad = 1 if cfg.kernel == 5 else 0
        return nn.ConvTranspose2d(
            c_in, c_out, cfg.kernel, stride=2, padding=pad, output_padding=out_pad, bias=bias
        )
    if cfg.g_upsample == "upsample_conv":
        # Kernel 3 for "4" keeps the map size with padding 1 (MNIST lab); 5 stays 5.
        k = 3 if cfg.kernel == 4 else 5
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=bias),
        )
    raise ValueError(f"model.g_upsample: unknown {cfg.g_upsample!r} (transposed, upsample_conv)")


class DCGANGenerator(nn.Module):
    """(z (B, z_dim), y) -> images (B, C, S, S) in [-1, 1]."""

    def __init__(self, cfg: ModelConfig, info: DatasetInfo) -> None:
        super().__init__()
        check_condition(cfg, info)
        n, s0 = _layout(info)
        _padding(cfg.kernel)
        self.z_dim = cfg.z_dim
        self.c0, self.s0 = cfg.g_width * 2 ** (n - 1), s0
        self.label = generator_encoder(cfg, info)
        in_dim = cfg.z_dim + (cfg.embed_dim if self.label is not None else 0)
        self.fc = nn.Linear(in_dim, self.c0 * s0 * s0)
        # model.g_cond_norm: a label-driven scale and shift after every norm (LabelAffine)
        cond_norm = cfg.g_cond_norm and self.label is not None

        def normed(channels: int) -> list[nn.Module]:
            layers = [norm2d(cfg.g_norm, channels, cfg.norm_eps)]
            return layers + [LabelAffine(cfg.embed_dim, channels)] if cond_norm else layers

        self.stem = nn.Sequential(*normed(self.c0), nn.ReLU())
        layers: list[nn.Module] = []
        ch = self.c0
        for i in range(n):
            last = i == n - 1
            out = info.channels if last else ch // 2
            layers.append(_upsample(ch, out, cfg, bias=last or conv_bias(cfg.g_norm)))
            if not last:
                layers += [*normed(out), nn.ReLU()]
            ch = out
        layers.append(nn.Tanh())
        self.blocks = nn.Sequential(*layers)
        finish(self, cfg.g_norm, cfg.init)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        e = embed_labels(self.label, y)  # once: joined to z and read by the LabelAffine layers
        h = self.fc(join_latent(z, e)).view(-1, self.c0, self.s0, self.s0)
        return run_layers(self.blocks, run_layers(self.stem, h, e), e)


class DCGANDiscriminator(nn.Module):
    """(x (B, C, S, S), y) -> (adv logits (B / pack,), aux logits (B, K) | None).

    With model.pack=k the first conv takes k x (C [+ 1 label map]) channels: packs of k samples
    (models/packing.py)."""

    def __init__(self, cfg: ModelConfig, info: DatasetInfo) -> None:
        super().__init__()
        check_condition(cfg, info)
        self.pack = check_pack(cfg)
        n, s_last = _layout(info)
        pad = _padding(cfg.kernel)
        self.has_aux = cfg.condition == "acgan"
        self.label_map = (
            LabelMap(info.label_type, info.num_labels, cfg.embed_dim, info.image_size)
            if cfg.condition == "concat"
            else None
        )
        ch = (info.channels + (1 if self.label_map is not None else 0)) * self.pack
        layers: list[nn.Module] = []
        for i in range(n):
            width = cfg.d_width * 2**i
            first = i == 0
            layers.append(
                nn.Conv2d(
                    ch,
                    width,
                    cfg.kernel,
                    stride=2,
                    padding=pad,
                    bias=first or conv_bias(cfg.d_norm),
                )
            )
            if not first:
                layers.append(norm2d(cfg.d_norm, width, cfg.norm_eps))
            layers.append(nn.LeakyReLU(cfg.leaky_slope))
            if cfg.dropout > 0:
                layers.append(nn.Dropout2d(cfg.dropout))
            ch = width
        self.blocks = nn.Sequential(*layers)
        self.pool = cfg.d_pool
        self.head = CriticHead(ch if self.pool == "sum" else ch * s_last * s_last, cfg, info)
        finish(self, cfg.d_norm, cfg.init, free=classifier_norm_skip(cfg))

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if self.label_map is not None:
            x = torch.cat([x, self.label_map(y).to(x.dtype)], dim=1)
        h = self.blocks(pack(x, self.pack))
        return self.head(h.sum(dim=(2, 3)) if self.pool == "sum" else h.flatten(1), y)
