"""``vpr calibrate``: fit the confidence of one re-ranker on a labelled run and store it in the map."""

from __future__ import annotations

import numpy as np

from ..errors import VprError
from ..io.geoset import load_geoset
from ..localize.calibration import FEATURES, fit_logistic, predict, reliability
from ..localize.config import LocalizerConfig
from ..localize.localizer import Localizer
from ..map.format import load_map, save_map
from .plots import plot_reliability
from .recall import evaluate

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
    vmap = load_map(map_path)
    geo = load_geoset(queries, csv, vmap.frame)
    vmap.extras.pop(f"calibration.{reranker}", None)  # evidence from the uncalibrated localizer
    loc = Localizer(vmap, config)
    _, est = evaluate(loc, geo, threshold)
    x = np.stack([e.evidence for e in est])
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
    vmap.extras[f"calibration.{reranker}"] = coef
    vmap.info[f"calibration.{reranker}"] = {
        "queries": str(queries or csv),
        "threshold_m": threshold,
        "num_queries": len(y),
    }
    save_map(vmap, out or map_path)
    print(f"map {out or map_path}: calibration for '{reranker}' stored")
    if plot:
        plot_reliability(before, p, y, plot, reranker)
        print(f"plot: {plot}")
    return coef
