"""The map as data: ``VprMap`` and its typed parts (grids, sparse keypoints, adapted DHE head, calibrations,
headings). A low layer, below the models and re-rankers, so they take a typed map; ``map.format`` stores it."""

from .._lazy import lazy_exports

_NAMES = {
    "VprMap": ".vmap",
    "Calibration": ".parts",
    "DheHead": ".parts",
    "GridCodec": ".parts",
    "GridStore": ".parts",
    "Headings": ".parts",
    "SparseKeypoints": ".parts",
    "HEADING_SOURCES": ".parts",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
