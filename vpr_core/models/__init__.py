"""Global descriptor models, registered by name (importing this package registers them)."""

from . import boq, cct, cosplace, eigenplaces, geowarp_fe, mixvpr, salad, thumbnail, xfeat_global  # noqa: F401  (registration side effects)
from .base import GLOBAL_MODELS, GlobalModel, build_global_model

__all__ = ["GLOBAL_MODELS", "GlobalModel", "build_global_model"]
