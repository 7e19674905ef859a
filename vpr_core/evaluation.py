"""Recall@N by the standard VPR protocol, localization error, per-stage latency, plots.

A query counts as localized at N when any of its top-N map images lies within
``threshold`` metres of the query's true position (UTM, in the map's zone).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .dataset import GeoSet
from .images import load_image
from .localizer import Estimate, Localizer
from .mapdb import atomic_write

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
    return {k: {"p50": float(np.percentile([t[k] for t in timings], 50)), "p95": float(np.percentile([t[k] for t in timings], 95))} for k in keys}


def summarize(estimates: list[Estimate], true_xy: np.ndarray, threshold: float, map_xy: np.ndarray) -> dict[str, Any]:
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
    }
    return report


def evaluate(localizer: Localizer, queries: GeoSet, threshold: float, progress: bool = True) -> tuple[dict[str, Any], list[Estimate]]:
    """Localize every query image one at a time (as the robot would) and score the result."""
    k = max(localizer.top_k, max(RECALL_NS))
    estimates: list[Estimate] = []
    for path in tqdm(queries.paths, desc="queries", unit="img", disable=not progress):
        t0 = time.perf_counter()
        img = load_image(path)
        load_ms = (time.perf_counter() - t0) * 1e3
        est = localizer.localize(img, k=k)
        est.timings = {"load": load_ms, **est.timings}
        estimates.append(est)
    report = summarize(estimates, queries.xy, threshold, localizer.map.xy) | localizer_info(localizer)
    return report, estimates


def localizer_info(localizer: Localizer) -> dict[str, Any]:
    rr = localizer.reranker
    return {
        "model": localizer.map.model,
        "map_size": len(localizer.map),
        "device": str(localizer.extractor.device),
        "reranker": rr.name,
        "reranker_conf": {k: v for k, v in rr.conf.items()} if rr.needs_local else {},
        "reranker_trained": bool(rr.trained),
        "reranker_weights": rr.source,
        "backend": localizer.runner.name,
        "retrieval": f"{localizer.index.kind}{' (gpu)' if localizer.index.on_gpu else ''}",
    }


def write_json(report: dict[str, Any], path: str | Path) -> None:
    atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))


def plot_report(report: dict[str, Any], estimates: list[Estimate], true_xy: np.ndarray, map_xy: np.ndarray, path: str | Path) -> None:
    """Left: map, queries coloured by top-1 error, a line to each wrong top-1. Right: Recall@N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thr = report["threshold_m"]
    o = map_xy.mean(axis=0)
    est_xy = np.array([[e.east, e.north] for e in estimates]) - o
    tq = true_xy - o
    err = np.linalg.norm(est_xy - tq, axis=1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [2, 1]})
    a.scatter(*(map_xy - o).T, s=6, c="lightgray", label="map images")
    for t, e, ok in zip(tq, est_xy, err <= thr):
        if not ok:
            a.plot([t[0], e[0]], [t[1], e[1]], color="tab:red", lw=0.6, alpha=0.6)
    sc = a.scatter(*tq.T, s=14, c=np.minimum(err, 4 * thr), cmap="RdYlGn_r", vmin=0, vmax=4 * thr, label="queries (top-1 error)")
    fig.colorbar(sc, ax=a, label="top-1 error [m]")
    a.set_aspect("equal", adjustable="datalim")
    a.set_xlabel("east [m]")
    a.set_ylabel("north [m]")
    a.legend(loc="best", fontsize=8)
    a.set_title(f"{report.get('model', '')}: R@1 {report['recall@1']:.1f}% at {thr:g} m")
    ns = [int(k.split("@")[1]) for k in report if k.startswith("recall@")]
    b.plot(ns, [report[f"recall@{n}"] for n in ns], "o-")
    b.set_xscale("log")
    b.set_xticks(ns, [str(n) for n in ns])
    b.set_ylim(0, 101)
    b.set_xlabel("N")
    b.set_ylabel("Recall@N [%]")
    b.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def plot_trajectory(report: dict[str, Any], estimates: list[Estimate], true_xy: np.ndarray, map_xy: np.ndarray, origin: tuple[float, float], path: str | Path) -> None:
    """A replayed run on a metric ENU grid (metres from the map origin): ground truth as a line, estimates coloured by error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    o = np.asarray(origin[:2])
    thr = report["threshold_m"]
    est = np.array([[e.east, e.north] for e in estimates]) - o
    gt = true_xy - o
    err = np.linalg.norm(est - gt, axis=1)
    fig, ax = plt.subplots(figsize=(8, 6.5))
    ax.scatter(*(map_xy - o).T, s=5, c="lightgray", label="map images")
    ax.plot(*gt.T, "-", color="black", lw=1.2, label="ground truth (bag fixes)")
    sc = ax.scatter(*est.T, s=16, c=np.minimum(err, 4 * thr), cmap="RdYlGn_r", vmin=0, vmax=4 * thr, label="estimates", zorder=3)
    fig.colorbar(sc, ax=ax, label="error [m]")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)
    ax.set_xlabel("east [m]")
    ax.set_ylabel("north [m]")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(f"{report.get('model', '')} + {report.get('reranker', 'none')}: R@1 {report['recall@1']:.1f}% at {thr:g} m, median error {np.median(err):.1f} m")
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
