"""Pictures of a generator: image grids (torchvision) and 2-D point scatters (matplotlib)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

# torchvision and matplotlib are imported where used: they add seconds to every process start.


def pyplot():  # noqa: ANN201 - returns the matplotlib.pyplot module
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def _written_whole(path: Path) -> Iterator[Path]:
    """A name to write `path` under, renamed into place once written: a run killed while
    writing a grid leaves no truncated PNG (a resume checks which grids exist; the GIF reads
    them all). The temporary name keeps the suffix, which picks the image format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Write (N, C, H, W) images in [-1, 1] as one PNG grid; rows of `nrow` images."""
    from torchvision.utils import save_image

    path = Path(path)
    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    with _written_whole(path) as tmp:
        save_image(
            images.detach().float().cpu(),
            str(tmp),
            nrow=nrow,
            normalize=True,
            value_range=(-1, 1),
            padding=2,
        )
    return path


def save_scatter(
    fake: torch.Tensor,
    path: str | Path,
    real: torch.Tensor | None = None,
    title: str = "",
) -> Path:
    """Write generated (and optionally real) 2-D points as a scatter plot PNG."""
    path = Path(path)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if real is not None:
        r = real.detach().float().cpu().numpy()
        ax.scatter(r[:, 0], r[:, 1], s=3, c="tab:blue", alpha=0.3, label="real")
    f = fake.detach().float().cpu().numpy()
    ax.scatter(f[:, 0], f[:, 1], s=3, c="tab:orange", alpha=0.6, label="generated")
    ax.set_aspect("equal", adjustable="datalim")
    # Below the axes: inside, it hid the data's corner (a whole mode of the 5x5 grid).
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=2, markerscale=4, frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with _written_whole(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path
