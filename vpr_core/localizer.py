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
import torch

from .accel import make_runner
from .calibration import evidence, predict
from .errors import MapError, VprError
from .estimate import ESTIMATE_DEFAULTS, estimate_position, margin_confidence, spatial_margin
from .extract import Extractor
from .geodesy import UtmZone, from_utm
from .images import to_rgb
from .mapdb import VprMap, load_map
from .models import build_global_model
from .rerank import build_reranker
from .retrieval import make_index


@dataclass
class Match:
    index: int
    name: str
    score: float  # global-descriptor similarity
    east: float
    north: float
    rerank_score: float | None = None
    inliers: int | None = None


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
    inliers: int = 0  # geometric support of the top-1 (0 without a geometric re-ranker)
    evidence: np.ndarray | None = None  # calibration features of this frame


def map_model(vmap: VprMap, overrides: dict[str, Any] | None = None):
    """The global model a map was built with, its map state loaded; refused unless weights and dimension match the map."""
    model = build_global_model(vmap.model, {**vmap.model_conf, **(overrides or {})})
    model.load_map_state(vmap.model_state)
    fp = model.fingerprint()
    if fp != vmap.fingerprint:
        raise MapError(
            f"map fingerprint {vmap.fingerprint} does not match the '{vmap.model}' weights here ({fp}); "
            "use the weights the map was built with or rebuild the map"
        )
    if model.dim != vmap.descriptors.shape[1]:
        raise MapError(f"map descriptors are {vmap.descriptors.shape[1]}-d but '{vmap.model}' gives {model.dim}-d; rebuild the map")
    return model


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
        reranker_conf: dict[str, Any] | None = None,
        backend: str = "auto",
        retrieval: str = "auto",
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
        self.reranker = build_reranker(reranker, reranker_conf)
        if self.reranker.needs_local and vmap.local is None:
            raise MapError(f"re-ranker '{reranker}' needs the map's local features, but this map has none; rebuild it without --no-local")
        model = map_model(vmap, model_overrides)
        self.extractor = Extractor(model, device)
        self.index = make_index(vmap.descriptors, kind=index, device=self.extractor.device, retrieval=retrieval)
        self.runner = make_runner(self.extractor, backend, vmap.fingerprint)
        if self.reranker.conf.get("frame", 0) is None:
            self.reranker.conf["frame"] = list(self.extractor.model.input_size)
        self.reranker.to(self.extractor.device)
        self.reranker.attach(vmap)
        self.local = torch.from_numpy(vmap.local) if vmap.local is not None else None
        self.calibration = vmap.extras.get(f"calibration.{reranker}")
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
        rr = self.reranker
        desc, qloc = self.runner(x, local=rr.needs_local)
        qloc = qloc if rr.needs_local else None
        t2 = time.perf_counter()
        scores, ids = self.index.search(desc, max(k or self.top_k, rr.top_k if rr.needs_local else 0))
        scores, ids = scores[0].astype(np.float64), ids[0]
        valid = ids >= 0
        scores, ids = scores[valid], ids[valid]
        t3 = time.perf_counter()
        rscores = inliers = None
        if qloc is not None and len(ids):
            kk = min(rr.top_k, len(ids))
            res = rr.score(qloc[0].to(self.extractor.device), self.local[torch.from_numpy(ids[:kk])].float().to(self.extractor.device))
            rs, inl = res.scores.double().cpu().numpy(), res.inliers.cpu().numpy()
            order = np.lexsort((-scores[:kk], -rs))  # by re-rank score, ties by global score
            ids[:kk], scores[:kk], rscores = ids[:kk][order], scores[:kk][order], rs[order]
            inliers = inl[order] if rr.counts_inliers else None
        t3b = time.perf_counter()
        est = self._estimate(ids, scores, rscores, inliers)
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

    def _confidence(self, scores: np.ndarray, xy: np.ndarray, inliers: np.ndarray | None) -> tuple[float, np.ndarray]:
        c = self.estimate_conf
        g_margin = spatial_margin(scores, xy, c["confidence_radius_m"])
        inl1 = float(inliers[0]) if inliers is not None else 0.0
        inl_margin = float(spatial_margin(inliers.astype(np.float64), xy[: len(inliers)], c["confidence_radius_m"])) if inliers is not None else 0.0
        ev = evidence(inl1, inl_margin, g_margin)
        if self.calibration is not None:
            return float(predict(self.calibration, ev)[0]), ev
        if inliers is not None:
            return 1.0 - float(np.exp(-inl_margin / c["inlier_tau"])), ev
        return margin_confidence(g_margin, c["confidence_tau"]), ev

    def _estimate(self, ids: np.ndarray, scores: np.ndarray, rscores: np.ndarray | None = None, inliers: np.ndarray | None = None) -> Estimate:
        m = self.map
        xy = m.xy[ids]
        confidence, ev = self._confidence(scores, xy, inliers)
        pos = estimate_position(ids, scores, xy, self.estimate_conf, confidence=confidence)
        i = pos.index
        lat, lon = from_utm(pos.east, pos.north, m.zone)
        alt = float(m.alt[i])
        cov = np.zeros((3, 3))
        cov[:2, :2] = pos.cov_xy
        cov[2, 2] = self.estimate_conf["unknown_alt_var"] if math.isnan(alt) else pos.cov_xy[0, 0]
        ox, oy, oz = self.origin
        enu = (pos.east - ox, pos.north - oy, (0.0 if math.isnan(alt) else alt) - oz)
        matches = [Match(int(j), m.names[j], float(s), float(m.east[j]), float(m.north[j])) for j, s in zip(ids, scores)]
        for j, r in enumerate(rscores if rscores is not None else ()):
            matches[j].rerank_score = float(r)
            matches[j].inliers = int(inliers[j]) if inliers is not None else None
        est = Estimate(float(lat[0]), float(lon[0]), alt, pos.east, pos.north, m.zone, enu, cov, pos.confidence, matches)
        est.inliers = int(inliers[0]) if inliers is not None else 0
        est.evidence = ev
        return est
