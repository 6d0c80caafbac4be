"""gandist: distributed GAN training on Accelerate, WebDataset and W&B.

Python API: `from gandist import load_generator` (gandist/inference.py). It is imported on first
use, so `import gandist` (and `gandist --help`) stays free of torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The one place the version is written: pyproject.toml reads it ([tool.setuptools.dynamic]).
__version__ = "0.1.0"

if TYPE_CHECKING:
    from gandist.inference import TrainedGenerator, load_generator

__all__ = ["TrainedGenerator", "__version__", "load_generator"]


def __getattr__(name: str) -> Any:
    if name in ("load_generator", "TrainedGenerator"):
        from gandist import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'gandist' has no attribute {name!r}")
