"""Describing a map's images: the shared model (vocabulary, grid codebook) and any share of the images with it.

Split from ``build`` so the single-process build and the Ray workers (``distributed``) run the same code.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VprError
from ..models import build_global_model
from ..runtime.extractor import Extractor
from .codec import PQ_DEFAULTS, PQ_MIN_CELLS, GridCodec, encode_pq, train_pq
from .format import VprMap
from .model import map_model

__all__ = ["describe_share", "prepare_model"]

log = logging.getLogger(__name__)


def _sample(paths: list[Path], n: int) -> list[Path]:
    """``n`` paths spread evenly over the run (the codebook sees the whole route, not its start)."""
    if len(paths) <= n:
        return list(paths)
    return [paths[int(i)] for i in np.linspace(0, len(paths) - 1, n).round().astype(int)]


def prepare_model(
    paths: list[Path],
    model_name: str = "xfeat-vlad",
    model_conf: dict[str, Any] | None = None,
    device: str = "auto",
    grid_codec: str | None = "pq",
    pq: dict[str, Any] | None = None,
    like: VprMap | None = None,
) -> tuple[Extractor, GridCodec | None]:
    """The model that describes a map (vocabulary learnt from ``paths``, or ``like``'s) and the PQ codebook of its
    grids (learnt from a sample of ``paths``, or ``like``'s): everything a worker needs to describe any share."""
    if like is not None:
        model = map_model(like, model_conf)
        ex = Extractor(model, device)
    else:
        model = build_global_model(model_name, model_conf)
        ex = Extractor(model, device)
        if model.needs_fit:
            model.fit(lambda: ex.tensor_batches(paths, desc="vocabulary"), len(paths))
    if grid_codec != "pq":
        return ex, None
    if like is not None and like.grids is not None and like.grids.codec is not None:
        return ex, like.grids.codec
    c = {**PQ_DEFAULTS, **(pq or {})}
    gw, gh = model.local_grid
    if len(paths) * gw * gh < PQ_MIN_CELLS:  # a handful of coarse grids: float16 costs less than a codebook
        log.info(
            "map has %d grid cells, fewer than PQ needs (%d): grids stored as float16",
            len(paths) * gw * gh,
            PQ_MIN_CELLS,
        )
        return ex, None
    _, grids = ex.describe_paths(_sample(paths, int(c["sample_images"])), desc="grid codebook", local=True)
    return ex, train_pq(grids, int(c["m"]), int(c["train_cells"]), int(c["seed"]))


def describe_share(
    ex: Extractor, paths: list[Path], local: bool, codec: GridCodec | None, desc: str | None = "map descriptors"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Descriptors (float16) and grids (float16, or PQ codes with ``codec``) of some of a map's images."""
    encode = (lambda g: encode_pq(g, codec)) if codec is not None else None
    g, loc = ex.describe_paths(paths, desc=desc, local=local, encode=encode)
    bad = ~np.isfinite(g).all(axis=1)
    if bad.any():
        raise VprError(
            f"{paths[int(np.argmax(bad))]}: model '{ex.model.name}' produced NaN/Inf descriptors "
            f"({int(bad.sum())} images); check the weights"
        )
    return g.astype(np.float16), loc
