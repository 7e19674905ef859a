"""Recall@N by the standard VPR protocol, localization error, per-stage latency, plots.

A query counts as localized at N when any of its top-N map images lies within
``threshold`` metres of the query's true position (UTM, in the map's zone).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from tqdm import tqdm

from ..io.geoset import GeoSet
from ..io.images import load_image
from ..localize.localizer import Estimate, Localizer

RECALL_NS = (1, 5, 10, 20)


def recalls(ranked_xy: list[np.ndarray], true_xy: np.ndarray, threshold: float, ns=RECALL_NS) -> dict[str, float]:
    """Recall@N in percent; ``ranked_xy[q]`` holds the positions of query q's candidates, best first."""
    hits = np.zeros(len(ns))
    for cand, t in zip(ranked_xy, true_xy):
        d = np.linalg.norm(cand - t, axis=1) <= threshold
        first = int(np.argmax(d)) if d.any() else 10**9
        hits += np.array([first < n for n in ns])
    return {f"recall@{n}": float(100.0 * h / max(len(true_xy), 1)) for n, h in zip(ns, hits)}


def latency_summary(timings: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    keys = list(timings[0]) if timings else []
    return {
        k: {
            "p50": float(np.percentile([t[k] for t in timings], 50)),
            "p95": float(np.percentile([t[k] for t in timings], 95)),
        }
        for k in keys
    }


#: chi-square quantile of 2 degrees of freedom at 95 %: a 2-D point lies in the 2-sigma (95 %) ellipse below it.
CHI2_2D_95 = 5.991464547107979


def covariance_consistency(estimates: list[Estimate], true_xy: np.ndarray, min_confidence: float) -> dict[str, Any]:
    """Is the published covariance honest? Over the fixes that are STATUS_FIX (confidence >= ``min_confidence``):
    the percentage whose true position lies inside the 95 % ellipse, and the mean NEES (2 when consistent in 2-D)."""
    nees = []
    for e, t in zip(estimates, true_xy):
        if e.confidence < min_confidence:
            continue
        d = np.array([t[0] - e.east, t[1] - e.north])
        nees.append(float(d @ np.linalg.solve(e.covariance[:2, :2], d)))
    n = len(nees)
    return {
        "coverage_2sigma": float(100.0 * np.mean(np.array(nees) <= CHI2_2D_95)) if n else float("nan"),
        "nees": float(np.mean(nees)) if n else float("nan"),
        "n": n,
        "min_confidence": min_confidence,
    }


def summarize(
    estimates: list[Estimate], true_xy: np.ndarray, threshold: float, map_xy: np.ndarray, min_confidence: float = 0.5
) -> dict[str, Any]:
    ranked = [np.array([[m.east, m.north] for m in e.matches]) for e in estimates]
    err = np.array([np.hypot(e.east - t[0], e.north - t[1]) for e, t in zip(estimates, true_xy)])
    has_pos = np.array([(np.linalg.norm(map_xy - t, axis=1) <= threshold).any() for t in true_xy])
    report: dict[str, Any] = recalls(ranked, true_xy, threshold)
    report |= {
        "threshold_m": threshold,
        "num_queries": len(estimates),
        "queries_without_positive": int((~has_pos).sum()),
        "median_error_m": float(np.median(err)) if len(err) else float("nan"),
        "p90_error_m": float(np.percentile(err, 90)) if len(err) else float("nan"),
        "mean_confidence": float(np.mean([e.confidence for e in estimates])) if estimates else float("nan"),
        "latency_ms": latency_summary([e.timings for e in estimates]),
        "covariance": covariance_consistency(estimates, true_xy, min_confidence),
    }
    return report


def evaluate(
    localizer: Localizer, queries: GeoSet, threshold: float, progress: bool = True, frame_period: float = 1.0
) -> tuple[dict[str, Any], list[Estimate]]:
    """Localize every query image one at a time, in the given order (as the robot would), and score the result.
    Folders and CSVs carry no stamps: frame i is taken at ``i * frame_period`` seconds (for a temporal filter)."""
    k = max(localizer.top_k, max(RECALL_NS))
    estimates: list[Estimate] = []
    for i, path in enumerate(tqdm(queries.paths, desc="queries", unit="img", disable=not progress)):
        t0 = time.perf_counter()
        img = load_image(path)
        load_ms = (time.perf_counter() - t0) * 1e3
        est = localizer.localize(img, k=k, stamp=i * frame_period)
        est.timings = {"load": load_ms, **est.timings}
        estimates.append(est)
    report = summarize(estimates, queries.xy, threshold, localizer.map.xy, localizer.config.min_confidence)
    mc = localizer.config.min_confidence
    return report | localizer_info(localizer) | sequence_info(estimates, queries.xy, threshold, mc), estimates


def sequence_info(
    estimates: list[Estimate], true_xy: np.ndarray, threshold: float, min_confidence: float = 0.5
) -> dict[str, Any]:
    """How a run starts and what the temporal filter did: the first frame whose estimate is right, the first right
    STATUS_FIX, the frame from which 10 in a row are right (lock), and the share of frames its track answered."""
    ok = [bool(np.hypot(e.east - t[0], e.north - t[1]) <= threshold) for e, t in zip(estimates, true_xy)]
    first = next((i for i, o in enumerate(ok) if o), -1)
    fix = next((i for i, (o, e) in enumerate(zip(ok, estimates)) if o and e.confidence >= min_confidence), -1)
    lock = next((i for i in range(max(len(ok) - 9, 0)) if all(ok[i : i + 10])), -1)
    tracked = sum(e.source == "track" for e in estimates)
    return {
        "tracked_pct": 100.0 * tracked / max(len(estimates), 1),
        "first_correct_frame": first,
        "first_correct_fix": fix,
        "locked_frame": lock,
    }


def localizer_info(localizer: Localizer) -> dict[str, Any]:
    rr = localizer.reranker
    return {
        "model": localizer.map.model,
        "map_size": len(localizer.map),
        "device": str(localizer.extractor.device),
        "reranker": rr.name,
        "reranker_conf": {**rr.conf, "frame": list(rr.frame)} if rr.needs_local else {},
        "reranker_trained": bool(rr.trained),
        "reranker_weights": rr.source,
        "backend": localizer.runner.name,
        "retrieval": f"{localizer.index.kind}{' (gpu)' if localizer.index.on_gpu else ''}",
        "temporal": localizer.config.temporal,
    }
