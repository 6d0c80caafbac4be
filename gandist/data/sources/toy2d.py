"""2-D point sources: the classic GAN toy mixtures and user point files.

The mixtures (ring8, grid25) are the standard mode-collapse benchmarks; their mode centres and
std travel in `DatasetInfo.extras` so the mode-coverage metric scores exactly what was sampled.
User point files keep their own units: rescaling them would make plots and metrics disagree with
the numbers the user has in MATLAB/NumPy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from gandist.config import DataConfig
from gandist.data.base import DatasetInfo, SourceData

RING8_RADIUS = 2.0
RING8_STD = 0.02
GRID25_STD = 0.05
DEFAULT_N = 10_000

POINT_EXTENSIONS = (".npy", ".npz", ".csv", ".mat")


def ring8_modes() -> np.ndarray:
    """The 8 centres on a circle of radius 2, angle 0 first, counter-clockwise."""
    angles = np.arange(8) * (2.0 * np.pi / 8)
    # rounded so cos(pi/2) reads 0.0, not 6e-17, in configs and logs that echo the modes
    return np.round(RING8_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1), 12)


def grid25_modes() -> np.ndarray:
    """The 5x5 grid at -4, -2, 0, 2, 4 on both axes (x major)."""
    ticks = np.arange(-4.0, 5.0, 2.0)
    return np.array([[x, y] for x in ticks for y in ticks])


def _mixture(n: int, rng: np.random.Generator, modes: np.ndarray, std: float) -> np.ndarray:
    idx = rng.integers(0, len(modes), size=n)
    pts = modes[idx] + std * rng.standard_normal((n, 2))
    return pts.astype(np.float32)


def ring8(n: int, rng: np.random.Generator) -> np.ndarray:
    """n points from 8 equal-weight Gaussians on a circle of radius 2 (std 0.02)."""
    return _mixture(n, rng, ring8_modes(), RING8_STD)


def grid25(n: int, rng: np.random.Generator) -> np.ndarray:
    """n points from 25 equal-weight Gaussians on a 5x5 grid (std 0.05)."""
    return _mixture(n, rng, grid25_modes(), GRID25_STD)


def spiral(n: int, rng: np.random.Generator) -> np.ndarray:
    """n points on a 2-turn Archimedean spiral, uniform along its length, inside about [-2, 2].

    Sampling by arc length (t ~ sqrt(U)) keeps the density even, so a generator cannot score well
    by covering only the dense centre.
    """
    t = np.sqrt(rng.uniform(0.0, 1.0, n)) * 4.0 * np.pi  # 2 turns
    r = t / (4.0 * np.pi) * 1.9
    pts = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    pts += 0.03 * rng.standard_normal((n, 2))
    return pts.astype(np.float32)


def swissroll(n: int, rng: np.random.Generator) -> np.ndarray:
    """The (x, z) projection of scikit-learn's swiss roll, scaled by 1/7 to about [-2, 2].

    Same parametrisation as `sklearn.datasets.make_swiss_roll` (t = 1.5 pi (1 + 2U)), which is
    denser at the centre than `spiral`; noise 0.25 before scaling, as in common GAN toy setups.
    """
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.uniform(0.0, 1.0, n))
    pts = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
    pts += 0.25 * rng.standard_normal((n, 2))
    return (pts / 7.0).astype(np.float32)


# name -> (sampler, modes or None, std)
_TOYS: dict[str, tuple[Callable[[int, np.random.Generator], np.ndarray], np.ndarray | None, float]]
_TOYS = {
    "ring8": (ring8, ring8_modes(), RING8_STD),
    "grid25": (grid25, grid25_modes(), GRID25_STD),
    "spiral": (spiral, None, 0.0),
    "swissroll": (swissroll, None, 0.0),
}
TOY_NAMES: tuple[str, ...] = tuple(_TOYS)


# ---------------------------------------------------------------- user point files


def _pick(found: dict[str, np.ndarray], key: str, path: Path, what: str) -> np.ndarray:
    """Select the array named `key`, or the only one; errors list what the file holds."""
    names = ", ".join(sorted(found)) or "(none)"
    if key:
        if key not in found:
            raise ValueError(f"{path}: no {what} {key!r} (found: {names}); set data.points_key")
        return found[key]
    if len(found) != 1:
        raise ValueError(
            f"{path}: holds {len(found)} {what}s ({names}); set data.points_key to pick one"
        )
    return next(iter(found.values()))


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> np.ndarray:
    """Comma- (or whitespace-) separated numbers; a non-numeric first row is taken as a header."""
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{path}: empty file, expected two numeric columns")
    delim = "," if "," in lines[0] else None
    if not all(_is_number(tok) for tok in lines[0].split(delim)):
        lines = lines[1:]  # header row
    if not lines:
        raise ValueError(f"{path}: only a header row, no points")
    try:
        return np.loadtxt(lines, delimiter=delim, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise ValueError(f"{path}: not two numeric columns: {e}") from None


def _read_mat(path: Path, key: str) -> np.ndarray:
    import scipy.io

    try:
        contents = scipy.io.loadmat(str(path))
    except NotImplementedError:  # MATLAB v7.3 files are HDF5
        raise ValueError(
            f"{path}: MATLAB v7.3 (HDF5) files are not supported; save with "
            "save(..., '-v7') or export the points to .npy/.csv"
        ) from None
    except Exception as e:  # scipy raises several types for a damaged file
        raise ValueError(f"{path}: cannot read as a MATLAB file: {e}") from None
    found = {k: v for k, v in contents.items() if not k.startswith("__")}
    return _pick(found, key, path, "variable")


def load_points(path: str | Path, key: str = "") -> np.ndarray:
    """Read an (N, 2) point array from .npy, .npz, .csv or .mat, as float32, units unchanged.

    `key` picks the variable in a .npz/.mat file (default: the only one). Every error names the
    file, because a training job started from a config is the wrong place to guess which one.
    """
    path = Path(path).expanduser()
    ext = path.suffix.lower()
    if ext not in POINT_EXTENSIONS:
        raise ValueError(
            f"{path}: unknown points file extension {ext!r} (use {', '.join(POINT_EXTENSIONS)})"
        )
    if not path.is_file():
        raise FileNotFoundError(f"points file not found: {path}")
    if ext == ".npy":
        arr = np.load(path, allow_pickle=False)
    elif ext == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            arr = _pick({k: npz[k] for k in npz.files}, key, path, "array")
    elif ext == ".csv":
        arr = _read_csv(path)
    else:
        arr = _read_mat(path, key)
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{path}: points must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != 2:
        hint = " (looks like (2, N): transpose it)" if arr.ndim == 2 and arr.shape[0] == 2 else ""
        raise ValueError(f"{path}: expected an (N, 2) array, got shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{path}: holds no points (shape {arr.shape})")
    bad = ~np.isfinite(arr.astype(np.float64)).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}: {int(bad.sum())} rows with NaN/inf (first at row {first})")
    return arr.astype(np.float32)


# ---------------------------------------------------------------- SourceData builders


def _points_source(pts: np.ndarray, source: str, extras: dict | None = None) -> SourceData:
    x = torch.from_numpy(np.ascontiguousarray(pts, dtype=np.float32))
    y = torch.zeros(len(x), dtype=torch.int64)
    info = DatasetInfo(
        kind="points",
        channels=0,
        image_size=0,
        label_type="none",
        num_labels=0,
        source=source,
        point_dim=int(x.shape[1]),
        extras=extras or {},
    )
    return SourceData(info=info, dataset=TensorDataset(x, y), tensors=(x, y))


def build_toy2d(arg: str, cfg: DataConfig) -> SourceData:
    """`toy2d:<name>`: a synthetic distribution, `cfg.n_samples or 10000` points from cfg.seed."""
    if arg not in _TOYS:
        raise ValueError(
            f"data.source: unknown toy2d distribution {arg!r} (known: {', '.join(TOY_NAMES)})"
        )
    sampler, modes, std = _TOYS[arg]
    n = cfg.n_samples or DEFAULT_N
    pts = sampler(n, np.random.default_rng(cfg.seed))
    extras = {"modes": modes.tolist(), "std": std} if modes is not None else {}
    return _points_source(pts, cfg.source, extras)


def build_points(arg: str, cfg: DataConfig) -> SourceData:
    """`points:<path>`: every point of a user file, in file order."""
    if not arg:
        raise ValueError("data.source: 'points' needs a file, e.g. points:data/points.mat")
    return _points_source(load_points(arg, cfg.points_key), cfg.source)
