"""The map file and its life cycle: the format (one memory-mapped safetensors file: descriptors,
geotags, model identity and vocabulary, PQ-coded or float16 dense grids, a stored search index,
calibration; never pickle), building it from folders, CSVs or bags (in one process or on Ray),
merging and growing maps, adapting its DHE head to its own images, and rebuilding the exact
global model it was made with (refused when the weights' fingerprint differs)."""

from .._lazy import lazy_exports

_NAMES = {
    "VprMap": ".format",
    "load_map": ".format",
    "save_map": ".format",
    "build_map": ".build",
    "build_and_save": ".build",
    "build_map_from_bag": ".build",
    "extract_map_images": ".build",
    "adapt_map": ".adapt",
    "map_images": ".adapt",
    "map_model": ".model",
    "map_info": ".format",
    "map_origin": ".format",
    "file_parts": ".format",
    "LocalGrids": ".codec",
    "merge_maps": ".merge",
    "StoredIndex": ".search",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
