"""robustgrid: attacks x purification defenses x classifiers, segmenters and NR-IQA models, as curves and a leaderboard.

The design card's folders (``attacks/ defenses/ models/ benchmark/``) install as ``robustgrid.attacks`` and so on,
so this is the only top-level name the distribution puts into site-packages.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("robustgrid")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
