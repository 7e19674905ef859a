"""The per-frame pipeline: image -> global descriptor -> faiss top-K -> position estimate.

``Localizer`` owns the model, the index and the map; it is what the ROS node, the
evaluator and the bag tools all call, so they measure exactly the same thing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MapError, VprError
from .estimate import ESTIMATE_DEFAULTS, estimate_position
from .extract import Extractor
from .geodesy import UtmZone, from_utm
from .images import to_rgb
from .mapdb import VprMap, load_map
from .models import build_global_model
from .rerank import RERANKERS
from .retrieval import Index


@dataclass
class Match:
    index: int
    name: str
    score: float
    east: float
    north: float


@dataclass
class Estimate:
    lat: float
    lon: float
    alt: float  # NaN when the map has no altitude
    east: float
    north: float
    zone: UtmZone
    enu: tuple[float, float, float]  # metres from the map origin (x east, y north, z up)
    covariance: np.ndarray  # (3, 3) ENU, m^2
    confidence: float
    matches: list[Match]
    timings: dict[str, float] = field(default_factory=dict)  # stage -> ms


class Localizer:
    def __init__(
        self,
        vmap: VprMap,
        device: str = "auto",
        top_k: int = 10,
        index: str = "flat",
        global_model: str | None = None,
        model_overrides: dict[str, Any] | None = None,
        estimate: dict[str, float] | None = None,
        reranker: str = "none",
    ) -> None:
        if global_model and global_model != vmap.model:
            raise MapError(
                f"map was built with global model '{vmap.model}' but '{global_model}' is configured; "
                f"set global_model to '{vmap.model}' or rebuild the map with --model {global_model}"
            )
        if top_k < 1:
            raise VprError(f"top_k must be >= 1, got {top_k}")
        self.map = vmap
        self.top_k = top_k
        self.reranker = RERANKERS.get(reranker)()
        model = build_global_model(vmap.model, {**vmap.model_conf, **(model_overrides or {})})
        model.load_map_state(vmap.model_state)
        fp = model.fingerprint()
        if fp != vmap.fingerprint:
            raise MapError(
                f"map fingerprint {vmap.fingerprint} does not match the '{vmap.model}' weights here ({fp}); "
                "use the weights the map was built with or rebuild the map"
            )
        if model.dim != vmap.descriptors.shape[1]:
            raise MapError(f"map descriptors are {vmap.descriptors.shape[1]}-d but '{vmap.model}' gives {model.dim}-d; rebuild the map")
        self.extractor = Extractor(model, device)
        self.index = Index(vmap.descriptors, kind=index, gpu="auto" if self.extractor.device.type == "cuda" else "cpu")
        self.estimate_conf = {**ESTIMATE_DEFAULTS, **(estimate or {})}
        self.origin = vmap.origin

    @classmethod
    def from_file(cls, path: str | Path, **kw: Any) -> Localizer:
        return cls(load_map(path), **kw)

    @property
    def model(self):
        return self.extractor.model

    def localize(self, image: np.ndarray, k: int | None = None) -> Estimate:
        """Localize one RGB (or gray/RGBA) uint8 image."""
        t0 = time.perf_counter()
        x = self.extractor.to_tensor([to_rgb(image)])
        t1 = time.perf_counter()
        desc = self.extractor(x)
        t2 = time.perf_counter()
        scores, ids = self.index.search(desc, k or self.top_k)
        t3 = time.perf_counter()
        s, i = self.reranker.rerank(scores[0], ids[0])
        t3b = time.perf_counter()
        est = self._estimate(i, s)
        t4 = time.perf_counter()
        est.timings = {
            "preprocess": (t1 - t0) * 1e3,
            "global": (t2 - t1) * 1e3,
            "search": (t3 - t2) * 1e3,
            "rerank": (t3b - t3) * 1e3,
            "estimate": (t4 - t3b) * 1e3,
            "total": (t4 - t0) * 1e3,
        }
        return est

    def _estimate(self, ids: np.ndarray, scores: np.ndarray) -> Estimate:
        m = self.map
        valid = ids >= 0
        ids, scores = ids[valid], scores[valid].astype(np.float64)
        xy = m.xy[ids]
        pos = estimate_position(ids, scores, xy, self.estimate_conf)
        i = pos.index
        lat, lon = from_utm(pos.east, pos.north, m.zone)
        alt = float(m.alt[i])
        cov = np.zeros((3, 3))
        cov[:2, :2] = pos.cov_xy
        cov[2, 2] = self.estimate_conf["unknown_alt_var"] if math.isnan(alt) else pos.cov_xy[0, 0]
        ox, oy, oz = self.origin
        enu = (pos.east - ox, pos.north - oy, (0.0 if math.isnan(alt) else alt) - oz)
        matches = [Match(int(j), m.names[j], float(s), float(m.east[j]), float(m.north[j])) for j, s in zip(ids, scores)]
        return Estimate(float(lat[0]), float(lon[0]), alt, pos.east, pos.north, m.zone, enu, cov, pos.confidence, matches)
