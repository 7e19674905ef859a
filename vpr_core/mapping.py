"""Map building: geotagged images -> descriptors (and any vocabulary) -> map file."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import GeoSet
from .errors import VprError
from .extract import Extractor
from .mapdb import VprMap, save_map
from .models import build_global_model

log = logging.getLogger(__name__)


def build_map(
    geo: GeoSet, model_name: str = "xfeat-vlad", model_conf: dict[str, Any] | None = None, device: str = "auto", source: str = "", local: bool = True
) -> VprMap:
    """Describe every image of ``geo`` with the named model; learns the vocabulary first when needed.

    ``local`` stores each image's dense grid (float16) for re-ranking: measured cheaper than
    recomputing candidates' features per query (see bench/bench_rerank.py).
    """
    model = build_global_model(model_name, model_conf)
    ex = Extractor(model, device)
    paths = geo.paths
    if model.needs_fit:
        model.fit(lambda: ex.tensor_batches(paths, desc="vocabulary"), len(paths))
    desc, local_feats = ex.describe_paths(paths, desc="map descriptors", local=local)
    bad = ~np.isfinite(desc).all(axis=1)
    if bad.any():
        raise VprError(f"{paths[int(np.argmax(bad))]}: model '{model_name}' produced NaN/Inf descriptors ({int(bad.sum())} images); check the weights")
    info = {
        "source": source,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "num_images": len(paths),
        "trained_weights": bool(model.trained),
        "local_features": {"grid": list(model.local_grid), "dtype": "float16", "bytes_per_image": int(local_feats[0].nbytes)} if local_feats is not None else None,
    }
    alt = geo.alt
    return VprMap(
        descriptors=desc.astype(np.float32),
        lat=geo.lat,
        lon=geo.lon,
        alt=alt,
        east=geo.east,
        north=geo.north,
        zone=geo.zone,
        names=[p.name for p in paths],
        model=model_name,
        model_conf=model.conf,
        fingerprint=model.fingerprint(),
        model_state=model.map_state(),
        info=info,
        local=local_feats,
    )


def build_and_save(geo: GeoSet, out: str | Path, **kw: Any) -> VprMap:
    m = build_map(geo, **kw)
    save_map(m, out)
    return m
