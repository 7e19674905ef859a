"""The per-frame pipeline: image -> global descriptor -> faiss top-K -> position estimate.

``Localizer`` owns the model, the index and the map; it is what the ROS node, the
evaluator and the bag tools all call, so they measure exactly the same thing.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import MapError
from ..io.images import to_rgb
from ..map.codec import LocalGrids
from ..map.format import load_map
from ..map.model import map_model
from ..rerank import build_reranker
from ..rerank.base import MAP_PART_NAMES, rebuild_hint
from ..rerank.geometry import grid_keypoints, mutual_nn
from ..runtime.backends import make_runner
from ..runtime.extractor import Extractor
from ..store.parts import Calibration
from ..store.vmap import VprMap
from .budget import AUTO, AutoChoice, choose_reranker
from .calibration import FEATURES, evidence, predict
from .config import LocalizerConfig
from .estimate import ESTIMATE_DEFAULTS, MapMoments, estimate_position, margin_confidence, spatial_margin
from .frames import inside_ellipse
from .heading import relative_yaw, wrap
from .retrieval import make_index
from .temporal import TEMPORAL_FILTERS, Motion

__all__ = ["Estimate", "Localizer", "Match"]

#: Keyword arguments of earlier releases -> their LocalizerConfig field.
RENAMED = {"reranker_conf": "reranker_options", "model_overrides": "model_options"}


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
    east: float  # ENU metres in the map's frame (local tangent plane at its origin)
    north: float
    enu: tuple[float, float, float]  # (east, north, up) metres from the map origin
    covariance: np.ndarray  # (3, 3) ENU, m^2
    confidence: float
    matches: list[Match]
    timings: dict[str, float] = field(default_factory=dict)  # stage -> ms
    inliers: int = 0  # geometric support of the top-1 (0 without a geometric re-ranker)
    evidence: np.ndarray | None = None  # calibration features of this frame
    source: str = "frame"  # "frame": this frame alone; "track": the temporal filter's track
    yaw: float = math.nan  # ENU heading of the camera, radians (counter-clockwise from east); NaN: unknown
    yaw_var: float = math.nan  # rad^2, measured (vpr_core.localize.heading)
    yaw_inliers: int = 0  # matches that agreed on it


class Localizer:
    """Frame in, estimate out; built from a map and one :class:`LocalizerConfig` (keyword overrides allowed)."""

    def __init__(self, vmap: VprMap, config: LocalizerConfig | None = None, **overrides: Any) -> None:
        for old, new in RENAMED.items():
            if old in overrides:
                warnings.warn(f"Localizer({old}=...) is deprecated; use {new}=...", DeprecationWarning, stacklevel=2)
                overrides[new] = overrides.pop(old) or {}
        c = LocalizerConfig(**{**(config.__dict__ if config else {}), **overrides}).validate()
        if c.global_model and c.global_model != vmap.model:
            raise MapError(
                f"map was built with global model '{vmap.model}' but '{c.global_model}' is configured; "
                f"set global_model to '{vmap.model}' or rebuild the map with --model {c.global_model}"
            )
        self.config = c
        self.map = vmap
        self.top_k = c.top_k
        self.extractor = Extractor(map_model(vmap, c.model_options), c.device)
        device = self.extractor.device
        self.index = make_index(vmap.descriptors, c.index, device, c.retrieval, stored=vmap.index)
        self.runner = make_runner(self.extractor, c.backend, vmap.fingerprint)
        name, rconf = c.reranker, c.reranker_conf()
        self.auto: AutoChoice | None = None
        if name == AUTO:
            grids = LocalGrids(vmap.grids).gather(np.arange(min(len(vmap), 9)), "cpu") if vmap.grids else None
            self.auto = choose_reranker(c.target_rate, self.runner, self.extractor, self.index, grids, vmap, rconf)
            name, rconf = self.auto.reranker, self.auto.options
        self.reranker = build_reranker(name, rconf)
        missing = self.reranker.missing(vmap)
        if missing:
            raise MapError(
                f"re-ranker '{name}' needs the map's {' and '.join(MAP_PART_NAMES[p] for p in missing)}, but this map "
                f"has none; rebuild it with {rebuild_hint(self.reranker.needs)}"
            )
        if self.reranker.needs_local:
            gw, gh = self.extractor.model.local_grid
            _, mgh, mgw = vmap.grids.shape
            if (mgh, mgw) != (gh, gw):
                raise MapError(
                    f"map local features hold a {mgw}x{mgh} grid but '{vmap.model}' "
                    f"gives {gw}x{gh} (option local_grid); rebuild the map with this model's settings"
                )
        self.reranker.bind(vmap, device, self.extractor.model.input_size)
        # The map's grids (or their PQ codes) go where the re-ranker runs once, here; per frame only the K candidates
        # are gathered (and decoded) there.
        self.local = LocalGrids(vmap.grids, device) if self.reranker.needs_local else None
        cal = vmap.calibrations.get(name, Calibration())
        if cal.coef is not None and np.shape(cal.coef) != (len(FEATURES),):
            raise MapError(
                f"map calibration.{name} has shape {np.shape(cal.coef)}, not ({len(FEATURES)},) (one per "
                f"evidence feature); run 'vpr calibrate' again"
            )
        self.calibration = cal.coef
        # a covariance scale fitted by `vpr calibrate` for this re-ranker (1 = the model as it is)
        self.covariance_scale = cal.covariance_scale
        self.map_moments = MapMoments.of(vmap.xy)
        self.camera_fov = c.camera_fov
        self.estimate_conf = {**ESTIMATE_DEFAULTS, **c.estimate}
        self.temporal = (
            TEMPORAL_FILTERS.get(c.temporal)(vmap.xy, vmap.descriptors, c.temporal_options)
            if c.temporal != "none"
            else None
        )
        self._frames = 0  # frames seen, the clock of frames that come without a stamp

    def reset(self) -> None:
        """Forget the temporal state (``~/relocalize``, a new run): the next frames start a new track."""
        if self.temporal is not None:
            self.temporal.reset()

    @classmethod
    def from_file(cls, path: str | Path, config: LocalizerConfig | None = None, **overrides: Any) -> Localizer:
        """The localizer over the map file ``path``; a map that cannot serve the configuration is named in the error."""
        vmap = load_map(path)
        try:
            return cls(vmap, config, **overrides)
        except MapError as e:
            raise MapError(f"{path}: {e}") from None

    @property
    def rerank_depth(self) -> int:
        """Candidates re-ranked per frame now: auto's current K (its feedback moves it), else the method's K."""
        if not self.reranker.needs:
            return 0
        return self.auto.top_k if self.auto is not None else self.reranker.top_k

    @property
    def model(self):
        return self.extractor.model

    def localize(
        self,
        image: np.ndarray,
        k: int | None = None,
        rerank_k: int | None = None,
        stamp: float | None = None,
        motion: Motion | None = None,
        prior: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Estimate:
        """Localize one RGB (or gray/RGBA) uint8 image; ``k``/``rerank_k`` widen this frame's search (retrieval and
        re-ranking depth) beyond the configured ones. With a temporal filter, frames must come in order: ``stamp``
        (seconds; default one second after the previous frame) and ``motion`` (odometry since the previous frame).
        ``prior`` (ENU mean, 2x2 covariance) restricts the candidates to the map images inside its 95 % ellipse
        (a relocalization near a known pose); an ellipse holding no image leaves the search whole."""
        t0 = time.perf_counter()
        rgb = to_rgb(image)
        x = self.extractor.to_tensor([rgb])
        t1 = time.perf_counter()
        rr = self.reranker
        desc, qloc = self.runner(x, local=rr.needs_local)
        t2 = time.perf_counter()
        reranks = bool(rr.needs)
        depth = rerank_k or self.rerank_depth
        want = max(k or self.top_k, depth if reranks else 0)
        inside = np.flatnonzero(inside_ellipse(self.map.xy, *prior)) if prior is not None else np.empty(0, int)
        if len(inside):  # exact scores over the few places the prior allows
            s = np.asarray(self.map.descriptors[inside], dtype=np.float32) @ desc[0].float().cpu().numpy()
            top = np.argsort(-s, kind="stable")[:want]
            scores, ids = s[top].astype(np.float64), inside[top]
        else:
            scores, ids = self.index.search(desc, want)
            scores, ids = scores[0].astype(np.float64), ids[0]
        valid = ids >= 0
        scores, ids = scores[valid], ids[valid]
        t3 = time.perf_counter()
        rscores = inliers = None
        if reranks and len(ids):
            kk = min(depth, len(ids))
            cands = self.local.gather(ids[:kk], rr.device) if rr.needs_local else None
            q = qloc[0].to(rr.device) if qloc is not None else None
            res = rr.rerank(rgb, q, ids[:kk], cands, torch.from_numpy(scores[:kk]))
            rs, inl = res.scores.double().cpu().numpy(), res.inliers.cpu().numpy()
            order = np.lexsort((-scores[:kk], -rs))  # by re-rank score, ties by global score
            ids[:kk], scores[:kk], rscores = ids[:kk][order], scores[:kk][order], rs[order]
            inliers = inl[order] if rr.counts_inliers else None
        t3b = time.perf_counter()
        est = self._estimate(ids, scores, rscores, inliers)
        t4 = time.perf_counter()
        if self.temporal is not None:
            self._frames += 1
            t = float(self._frames if stamp is None else stamp)
            q = desc[0].float().cpu().numpy()
            track = self.temporal.step(q, ids, t, motion)
            if track is not None:
                self._apply_track(est, track, q)
        t5 = time.perf_counter()
        heading = qloc is not None and self.camera_fov > 0 and self.map.headings is not None
        if heading:
            self._heading(est, qloc[0])
        t6 = time.perf_counter()
        est.timings = {
            "preprocess": (t1 - t0) * 1e3,
            "global": (t2 - t1) * 1e3,
            "search": (t3 - t2) * 1e3,
            "rerank": (t3b - t3) * 1e3,
            "estimate": (t4 - t3b) * 1e3,
            **({"temporal": (t5 - t4) * 1e3} if self.temporal is not None else {}),
            **({"heading": (t6 - t5) * 1e3} if heading else {}),
            "total": (t6 - t0) * 1e3,
        }
        if self.auto is not None and rerank_k is None:
            self.auto.observe(est.timings["total"])
        return est

    def _heading(self, est: Estimate, qgrid: torch.Tensor) -> None:
        """The camera's heading: the leading map image's, turned by the relative rotation of the two views
        (essential matrix from mutual nearest neighbours of their dense grids); unknown without enough support."""
        i = est.matches[0].index if est.matches else -1
        if i < 0 or not math.isfinite(float(self.map.headings.yaw[i])):
            return
        cand = self.local.gather(np.array([i]), self.reranker.device)
        q = qgrid.to(cand.device)
        _, gh, gw = q.shape
        frame = self.extractor.model.input_size
        kp = grid_keypoints(gh, gw, frame, cand.device)
        nn, mask = mutual_nn(q.flatten(1).t().float(), cand.flatten(2).transpose(1, 2).float())
        idx = torch.nonzero(mask[0]).squeeze(1)
        rel = relative_yaw(kp[idx].cpu().numpy(), kp[nn[0, idx]].cpu().numpy(), frame, self.camera_fov, frame[0] / gw)
        if rel is not None:
            est.yaw = wrap(float(self.map.headings.yaw[i]) + rel.yaw)
            est.yaw_var, est.yaw_inliers = rel.var, rel.inliers

    def set_camera_fov(self, degrees: float) -> None:
        """The horizontal field of view for headings (from CameraInfo at run time); 0 turns headings off."""
        self.camera_fov = float(degrees)

    def _apply_track(self, est: Estimate, track, query: np.ndarray) -> None:
        """The filtered position replaces the frame's: ENU, lat/lon, covariance, confidence; its place leads the
        matches (recall@1 scores the track), the frame's ranking follows."""
        m = self.map
        i = track.index
        lat, lon, _ = m.frame.lla(track.east, track.north)
        alt = float(m.alt[i])
        est.lat, est.lon, est.alt = float(lat[0]), float(lon[0]), alt
        est.east, est.north = track.east, track.north
        est.enu = (track.east, track.north, 0.0 if math.isnan(alt) else alt - m.origin[2])
        cov = np.zeros((3, 3))
        cov[:2, :2] = track.cov_inlier if self.config.covariance == "inlier" else track.cov_xy * self.covariance_scale
        cov[2, 2] = self.estimate_conf["unknown_alt_var"] if math.isnan(alt) else cov[0, 0]
        est.covariance, est.confidence, est.source = cov, track.confidence, "track"
        lead = Match(int(i), m.names[i], float(m.descriptors[i] @ query), float(m.east[i]), float(m.north[i]))
        est.matches = [lead, *[x for x in est.matches if x.index != i]]

    def _confidence(self, scores: np.ndarray, xy: np.ndarray, inliers: np.ndarray | None) -> tuple[float, np.ndarray]:
        c = self.estimate_conf
        g_margin = spatial_margin(scores, xy, c["confidence_radius_m"])
        inl1 = float(inliers[0]) if inliers is not None else 0.0
        inl_margin = (
            float(spatial_margin(inliers.astype(np.float64), xy[: len(inliers)], c["confidence_radius_m"]))
            if inliers is not None
            else 0.0
        )
        ev = evidence(inl1, inl_margin, g_margin)
        if self.calibration is not None:
            return float(predict(self.calibration, ev)[0]), ev
        if inliers is not None:
            return 1.0 - float(np.exp(-inl_margin / c["inlier_tau"])), ev
        return margin_confidence(g_margin, c["confidence_tau"]), ev

    def _estimate(
        self, ids: np.ndarray, scores: np.ndarray, rscores: np.ndarray | None = None, inliers: np.ndarray | None = None
    ) -> Estimate:
        m = self.map
        # the estimate uses the configured top-K, as the node publishes it; a deeper search (recalls) only adds matches
        kk = self.top_k
        xy = m.xy[ids[:kk]]
        confidence, ev = self._confidence(scores[:kk], xy, inliers[:kk] if inliers is not None else None)
        pos = estimate_position(
            ids[:kk], scores[:kk], xy, self.estimate_conf, confidence=confidence, map_moments=self.map_moments
        )
        # the calibrated scale is fitted to the mixture; the inlier spread is the chosen place's own
        pos.cov_xy = pos.cov_inlier if self.config.covariance == "inlier" else pos.cov_xy * self.covariance_scale
        i = pos.index
        lat, lon, alt = float(m.lat[i]), float(m.lon[i]), float(m.alt[i])
        cov = np.zeros((3, 3))
        cov[:2, :2] = pos.cov_xy
        cov[2, 2] = self.estimate_conf["unknown_alt_var"] if math.isnan(alt) else pos.cov_xy[0, 0]
        enu = (pos.east, pos.north, 0.0 if math.isnan(alt) else alt - m.origin[2])
        matches = [
            Match(int(j), m.names[j], float(s), float(m.east[j]), float(m.north[j])) for j, s in zip(ids, scores)
        ]
        for j, r in enumerate(rscores if rscores is not None else ()):
            matches[j].rerank_score = float(r)
            matches[j].inliers = int(inliers[j]) if inliers is not None else None
        est = Estimate(lat, lon, alt, pos.east, pos.north, enu, cov, pos.confidence, matches)
        est.inliers = int(inliers[0]) if inliers is not None else 0
        est.evidence = ev
        return est
