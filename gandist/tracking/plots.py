"""Pictures of a run from its files: loss curves from metrics.jsonl, a GIF of the sample grids."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from gandist.run_files import LOSS_CURVES, SAMPLES_DIR, read_metrics
from gandist.tracking.images import pyplot

CURVES = (  # (panel title, metric keys)
    ("losses", ("d/loss", "g/loss")),
    ("critic", ("d/real_score", "d/fake_score", "d/wasserstein")),
    ("penalty", ("d/gp", "d/r1", "d/loss_aux", "g/loss_aux", "d/loss_twin", "g/loss_twin")),
)


def plot_losses(run_dir: str | Path, out: str | Path | None = None) -> Path | None:
    """Loss/score curves vs step as one PNG (`<run>/loss_curves.png`); None without metrics."""
    rows = read_metrics(run_dir)
    panels = [(title, [k for k in keys if any(k in r for r in rows)]) for title, keys in CURVES]
    panels = [(t, ks) for t, ks in panels if ks]
    if not panels:
        return None
    out = Path(out or Path(run_dir) / LOSS_CURVES)
    plt = pyplot()
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(7, 2.6 * len(panels)), dpi=100, sharex=True, squeeze=False
    )
    for ax, (title, keys) in zip(axes[:, 0], panels, strict=True):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if k in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k, linewidth=1.2)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def sample_frames(run_dir: str | Path) -> list[Path]:
    """The run's sample grids / scatter plots in step order."""
    return sorted((Path(run_dir) / SAMPLES_DIR).glob("step_*.png"))


def make_gif(
    run_dir: str | Path, out: str | Path | None = None, frame_ms: int = 400
) -> Path | None:
    """An animated GIF of the training (`<run>/training.gif`); None with fewer than 2 frames."""
    frames = sample_frames(run_dir)
    if len(frames) < 2:
        return None
    out = Path(out or Path(run_dir) / "training.gif")
    images = [Image.open(f).convert("RGB") for f in frames]
    size = images[0].size
    images = [im if im.size == size else im.resize(size) for im in images]
    images[0].save(out, save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    return out
