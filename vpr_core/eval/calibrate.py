"""``vpr calibrate``: fit the confidence of one re-ranker, and the scale of its covariance, on a labelled run.

Both are stored in the map (its ``Calibration`` part of that re-ranker, ``store.parts``): the
confidence becomes P(top-1 within the threshold | evidence), and the covariance is scaled so that 95 % of the
fixes published as STATUS_FIX lie inside their 95 % ellipse on this run.
"""

from __future__ import annotations

import numpy as np

from ..errors import VprError
from ..io.geoset import load_geoset
from ..localize.calibration import FEATURES, fit_logistic, predict, reliability
from ..localize.config import LocalizerConfig
from ..localize.localizer import Localizer
from ..map.format import load_map, save_map
from ..store.parts import Calibration
from .plots import plot_reliability
from .recall import CHI2_2D_95, covariance_consistency, evaluate

__all__ = ["calibrate"]


def calibrate(
    map_path: str,
    queries: str | None,
    csv: str | None,
    threshold: float,
    config: LocalizerConfig | None = None,
    out: str | None = None,
    plot: str | None = None,
) -> np.ndarray:
    """Fit ``config.reranker``'s confidence on a labelled run, store it in the map (``out`` or in place); returns the
    coefficients."""
    config = config or LocalizerConfig()
    reranker = config.reranker
    if reranker == "auto":
        raise VprError("calibrate fits one re-ranker: pass --rerank dhe, ransac or none (not auto)")
    vmap = load_map(map_path)
    geo = load_geoset(queries, csv, vmap.frame)
    vmap.calibrations.pop(reranker, None)  # evidence from the uncalibrated localizer
    loc = Localizer(vmap, config)
    _, est = evaluate(loc, geo, threshold)
    x = np.stack([np.asarray(e.evidence) for e in est])
    err = np.array([np.hypot(e.east - t[0], e.north - t[1]) for e, t in zip(est, geo.xy)])
    y = (err <= threshold).astype(np.float64)
    if y.min() == y.max():
        raise VprError(
            f"all {len(y)} queries are {'correct' if y[0] else 'wrong'} at {threshold:g} m: nothing to calibrate "
            "against; use a harder or larger run"
        )
    coef = fit_logistic(x, y)
    p = predict(coef, x)
    before = np.array([e.confidence for e in est])
    print(f"calibrated '{reranker}' on {len(y)} queries ({int(y.sum())} correct at {threshold:g} m)")
    print("  coefficients: " + ", ".join(f"{n}={c:+.3f}" for n, c in zip(FEATURES, coef)))
    print(
        f"  Brier score: uncalibrated {np.mean((before - y) ** 2):.3f} -> calibrated {np.mean((p - y) ** 2):.3f} "
        "(in-sample)"
    )
    print("  reliability (predicted -> observed, n):")
    for pm, ob, n in reliability(p, y):
        print(f"    {pm:5.2f} -> {ob:5.2f}  ({n})")
    scale, cov_before, cov_after = fit_covariance_scale(loc, coef, est, geo.xy, config.min_confidence)
    print(
        f"  covariance: {cov_before['coverage_2sigma']:.1f}% of {cov_before['n']} FIX fixes inside their 95% ellipse "
        f"(NEES {cov_before['nees']:.2f}) -> scaled x{scale:.3g}: {cov_after['coverage_2sigma']:.1f}% "
        f"(NEES {cov_after['nees']:.2f}) (in-sample)"
    )
    vmap.calibrations[reranker] = Calibration(np.asarray(coef, np.float64), float(scale))
    vmap.info[f"calibration.{reranker}"] = {
        "queries": str(queries or csv),
        "threshold_m": threshold,
        "num_queries": len(y),
        "covariance_scale": scale,
    }
    save_map(vmap, out or map_path)
    print(f"map {out or map_path}: calibration for '{reranker}' stored")
    if plot:
        plot_reliability(before, p, y, plot, reranker)
        print(f"plot: {plot}")
    return coef


def fit_covariance_scale(loc: Localizer, coef: np.ndarray, estimates: list, true_xy: np.ndarray, min_confidence: float):
    """The factor that puts 95 % of the STATUS_FIX fixes (calibrated confidence) inside their 95 % ellipse.

    The estimates are recomputed from the candidates they kept, with the calibrated confidence; the
    scale is the 95th percentile of their NEES over the chi-square 95 % quantile, within [0.05, 100].
    """
    loc.calibration = coef
    again = []
    for e in estimates:
        ids = np.array([m.index for m in e.matches])
        scores = np.array([m.score for m in e.matches], dtype=np.float64)
        kk = sum(m.rerank_score is not None for m in e.matches)
        rs = np.array([m.rerank_score for m in e.matches[:kk]]) if kk else None
        inl = np.array([m.inliers for m in e.matches[:kk]]) if kk and e.matches[0].inliers is not None else None
        again.append(loc._estimate(ids, scores, rs, inl))
    before = covariance_consistency(again, true_xy, min_confidence)
    nees = []
    for e, t in zip(again, true_xy):
        if e.confidence >= min_confidence:
            d = np.array([t[0] - e.east, t[1] - e.north])
            nees.append(float(d @ np.linalg.solve(e.covariance[:2, :2], d)))
    scale = float(np.clip(np.percentile(nees, 95) / CHI2_2D_95, 0.05, 100.0)) if nees else 1.0
    for e in again:
        e.covariance = e.covariance.copy()
        e.covariance[:2, :2] *= scale
    return scale, before, covariance_consistency(again, true_xy, min_confidence)
