"""The `data.source` registry: `name` or `name:argument` -> a loaded SourceData.

Built-in sources:

=====================  ==========================================================================
``digits``             scikit-learn's bundled 8x8 digits (no download), resized (sources.digits)
``shapes``             procedural iCLEVR-style scenes, 24 multi-hot labels (sources.shapes)
``glyphs``             5 letters, random place/turn/colour on noise, imbalanced (sources.glyphs)
``toy2d:<name>``       ring8 | grid25 | spiral | swissroll 2-D points (sources.toy2d)
``points:<path>``      a user's .npy/.npz/.csv/.mat (N, 2) points (sources.toy2d)
``torchvision:<Name>`` any torchvision.datasets class, train split (sources.torchvision)
``folder:<path>``      a folder of images, flat or one subfolder per class (sources.folder)
=====================  ==========================================================================

A new source is one function `(arg, cfg) -> SourceData` registered under a name; nothing else in
gandist needs to change, because everything downstream reads only `DatasetInfo`.
"""

from __future__ import annotations

from collections.abc import Callable

from gandist.config import DataConfig
from gandist.data.base import SourceData
from gandist.data.sources.digits import build_digits
from gandist.data.sources.folder import build_folder
from gandist.data.sources.glyphs import build_glyphs
from gandist.data.sources.shapes import build_shapes
from gandist.data.sources.torchvision import build_torchvision
from gandist.data.sources.toy2d import build_points, build_toy2d
from gandist.registry import Registry

SourceFactory = Callable[[str, DataConfig], SourceData]

SOURCES: Registry[SourceFactory] = Registry("data source")

SOURCES.register("digits")(build_digits)
SOURCES.register("shapes")(build_shapes)
SOURCES.register("glyphs")(build_glyphs)
SOURCES.register("toy2d")(build_toy2d)
SOURCES.register("points")(build_points)
SOURCES.register("torchvision")(build_torchvision)
SOURCES.register("folder")(build_folder)


def load_source(cfg: DataConfig) -> SourceData:
    """Load `cfg.source`: the text before the first colon picks the source, the rest (which may
    itself hold colons, e.g. a Windows path) is its argument."""
    name, _, arg = cfg.source.partition(":")
    try:
        factory = SOURCES.get(name.strip())
    except KeyError as e:
        raise ValueError(f"data.source: {e.args[0]}") from None
    return factory(arg.strip(), cfg)
