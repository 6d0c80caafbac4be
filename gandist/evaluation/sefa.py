"""SeFa (Shen & Zhou, 2021): latent directions by closed-form factorization.

For a generator whose first layer maps z linearly (y = A z + b: the MLP's first Linear, the
DCGAN projection), the directions n that change the layer's output most are the top
eigenvectors of A^T A. Moving z along them, z + alpha * n, gives interpretable edits without any
training or labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from gandist.config import load_config
from gandist.run_files import CONFIG
from gandist.sampling import load_generator
from gandist.tracking.images import pyplot, save_grid
from gandist.tracking.wandb_run import log_side_run
from gandist.training.checkpoint import read_trainer_state, run_dir_of


def latent_weight(G: nn.Module) -> torch.Tensor:
    """A: the columns of the first linear layer that multiply z, shape (out, z_dim)."""
    label = getattr(G, "label", None)
    skip = set(label.modules()) if isinstance(label, nn.Module) else set()
    for m in G.modules():
        if isinstance(m, nn.Linear) and m not in skip:
            if m.in_features < G.z_dim:
                break
            return m.weight.detach()[:, : G.z_dim].double().cpu()
    raise ValueError(
        f"{type(G).__name__}: no first linear layer taking z (SeFa needs y = A z + b first)"
    )


def sefa_directions(A: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k unit eigenvectors of A^T A (rows) and their eigenvalues, largest first."""
    if not 0 < k <= A.shape[1]:
        raise ValueError(f"--k must be in 1..{A.shape[1]} (the latent size), got {k}")
    values, vectors = torch.linalg.eigh(A.T @ A)  # ascending
    order = torch.argsort(values, descending=True)[:k]
    return vectors[:, order].T.contiguous(), values[order]


@torch.no_grad()
def traverse(
    G: nn.Module,
    direction: torch.Tensor,
    z: torch.Tensor,
    y: torch.Tensor | None,
    distance: float,
    steps: int,
) -> torch.Tensor:
    """Outputs for z + alpha * direction, alpha in [-distance, distance]: (steps, n, ...)."""
    dtype = next(G.parameters()).dtype
    alphas = torch.linspace(-distance, distance, steps, dtype=dtype)
    outs = [G(z.to(dtype) + a * direction.to(dtype), y) for a in alphas]
    return torch.stack(outs)


def run_sefa(
    path: str | Path,
    k: int,
    out_dir: str | Path,
    n: int = 6,
    steps: int = 7,
    distance: float = 3.0,
    seed: int = 0,
    use_ema: bool = True,
    wandb_mode: str = "disabled",
) -> list[Path]:
    """`gandist sefa`: directions as .npy plus one traversal picture per direction; with a W&B
    mode other than `disabled` ("" = the run's own setting) the pictures also go to W&B."""
    G, info, ck = load_generator(path, use_ema)
    directions, values = sefa_directions(latent_weight(G), k)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "directions.npy", directions.float().numpy())
    np.save(out / "eigenvalues.npy", values.float().numpy())
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    y = None
    if info.label_type == "class":
        y = torch.arange(n) % info.num_labels
    elif info.label_type == "multi":
        y = torch.zeros(n, info.num_labels)
        y[torch.arange(n), torch.arange(n) % info.num_labels] = 1
    written = [out / "directions.npy"]
    for i, d in enumerate(directions):
        frames = traverse(G, d, z, y, distance, steps)  # (steps, n, ...)
        path_i = out / f"direction_{i:02d}.png"
        if info.kind == "points":
            _plot_points(frames, path_i, distance, f"SeFa direction {i}")
        else:  # rows: samples; columns: alpha from -distance to +distance
            grid = frames.transpose(0, 1).reshape(-1, *frames.shape[2:])
            save_grid(grid.float(), path_i, nrow=steps)
        written.append(path_i)
    _log_wandb(ck, wandb_mode, values, written[1:])
    return written


def _log_wandb(ck: Path, mode: str, values: torch.Tensor, pictures: list[Path]) -> None:
    if mode == "disabled":
        return
    cfg = load_config(ck / CONFIG)
    run_dir = run_dir_of(ck)
    state = read_trainer_state(ck)
    log_side_run(
        cfg.tracking,
        mode,
        run_dir,
        job_type="sefa",
        step=state["step"],
        scalars={f"sefa/eigenvalue_{i:02d}": float(v) for i, v in enumerate(values)},
        images={f"sefa/direction_{i:02d}": p for i, p in enumerate(pictures)},
        config={"checkpoint": str(ck)},
        saved=state.get("wandb"),
    )


def _plot_points(frames: torch.Tensor, path: Path, distance: float, title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    colours = plt.cm.coolwarm(np.linspace(0, 1, frames.shape[0]))
    for f, c in zip(frames.float().numpy(), colours, strict=True):
        ax.scatter(f[:, 0], f[:, 1], s=8, color=c)
    for j in range(frames.shape[1]):  # each sample's path as alpha grows
        ax.plot(frames[:, j, 0].numpy(), frames[:, j, 1].numpy(), color="gray", lw=0.6)
    ax.set_title(f"{title} (alpha -{distance:g} blue .. +{distance:g} red)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
