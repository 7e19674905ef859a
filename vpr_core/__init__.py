"""vpr_core: visual place recognition as a ROS-agnostic library - map building, localization, evaluation, training.

Packages follow the pipeline: ``io`` (images, camera buffers, geotagged sets, bags),
``models`` (global descriptors), ``rerank`` (re-rankers of the top-K), ``runtime``
(extractor, inference backends, export), ``train`` (heads), ``map`` (the map file: build,
adapt, load), ``localize`` (the per-frame ``Localizer`` and its ``LocalizerConfig``),
``eval`` (recall, replay, calibration), ``online`` (what a live stream needs: newest
frame, health, debug view) and ``cli`` (the ``vpr`` command). Never imports rclpy.
The names below are the stable entry points; everything else lives in its package.
"""

from ._lazy import lazy_exports

_NAMES = {
    "VprError": ".errors",
    "MapError": ".errors",
    "ImageError": ".errors",
    "GeoSet": ".io.geoset",
    "load_geoset": ".io.geoset",
    "load_image": ".io.images",
    "VprMap": ".map.format",
    "load_map": ".map.format",
    "save_map": ".map.format",
    "build_map": ".map.build",
    "Localizer": ".localize.localizer",
    "Estimate": ".localize.localizer",
    "LocalizerConfig": ".localize.config",
    "evaluate": ".eval.recall",
    "GLOBAL_MODELS": ".models",
    "build_global_model": ".models",
    "RERANKERS": ".rerank",
    "build_reranker": ".rerank",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
