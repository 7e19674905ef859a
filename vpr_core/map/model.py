"""The global model a map was built with, rebuilt from the map and checked against it."""

from __future__ import annotations

from typing import Any

from ..errors import MapError
from ..models import build_global_model
from .format import VprMap

__all__ = ["map_model"]


def map_model(vmap: VprMap, overrides: dict[str, Any] | None = None):
    """The global model a map was built with, its map state loaded; refused unless weights and dimension match the
    map."""
    model = build_global_model(vmap.model, {**vmap.model_conf, **(overrides or {})})
    model.load_map_state(vmap.model_state)
    fp = model.fingerprint()
    if fp != vmap.fingerprint:
        raise MapError(
            f"map fingerprint {vmap.fingerprint} does not match the '{vmap.model}' weights here ({fp}); "
            "use the weights the map was built with or rebuild the map"
        )
    if model.dim != vmap.descriptors.shape[1]:
        raise MapError(
            f"map descriptors are {vmap.descriptors.shape[1]}-d but '{vmap.model}' gives {model.dim}-d; rebuild the map"
        )
    return model
