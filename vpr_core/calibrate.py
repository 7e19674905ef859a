"""``vpr calibrate``: fit the confidence of one re-ranker on a labelled run and store it in the map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .calibration import FEATURES, fit_logistic, predict, reliability
from .dataset import load_geoset
from .errors import VprError
from .evaluation import evaluate
from .localizer import Localizer
from .mapdb import atomic_write, load_map, save_map


def calibrate(
    map_path: str, queries: str | None, csv: str | None, threshold: float, reranker: str = "none", reranker_conf: dict[str, Any] | None = None,
    device: str = "auto", out: str | None = None, plot: str | None = None,
) -> np.ndarray:  # fmt: skip
    vmap = load_map(map_path)
    geo = load_geoset(queries, csv, vmap.zone)
    vmap.extras.pop(f"calibration.{reranker}", None)  # evidence from the uncalibrated localizer
    loc = Localizer(vmap, device=device, reranker=reranker, reranker_conf=reranker_conf)
    _, est = evaluate(loc, geo, threshold)
    x = np.stack([e.evidence for e in est])
    err = np.array([np.hypot(e.east - t[0], e.north - t[1]) for e, t in zip(est, geo.xy)])
    y = (err <= threshold).astype(np.float64)
    if y.min() == y.max():
        raise VprError(f"all {len(y)} queries are {'correct' if y[0] else 'wrong'} at {threshold:g} m: nothing to calibrate against; use a harder or larger run")
    coef = fit_logistic(x, y)
    p = predict(coef, x)
    before = np.array([e.confidence for e in est])
    print(f"calibrated '{reranker}' on {len(y)} queries ({int(y.sum())} correct at {threshold:g} m)")
    print("  coefficients: " + ", ".join(f"{n}={c:+.3f}" for n, c in zip(FEATURES, coef)))
    print(f"  Brier score: uncalibrated {np.mean((before - y) ** 2):.3f} -> calibrated {np.mean((p - y) ** 2):.3f} (in-sample)")
    print("  reliability (predicted -> observed, n):")
    for pm, ob, n in reliability(p, y):
        print(f"    {pm:5.2f} -> {ob:5.2f}  ({n})")
    vmap.extras[f"calibration.{reranker}"] = coef
    vmap.info[f"calibration.{reranker}"] = {"queries": str(queries or csv), "threshold_m": threshold, "num_queries": len(y)}
    save_map(vmap, out or map_path)
    print(f"map {out or map_path}: calibration for '{reranker}' stored")
    if plot:
        plot_reliability(before, p, y, plot, reranker)
        print(f"plot: {plot}")
    return coef


def plot_reliability(before: np.ndarray, after: np.ndarray, y: np.ndarray, path: str, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect")
    for pred, label in ((before, "uncalibrated"), (after, "calibrated")):
        r = reliability(pred, y)
        ax.plot([a for a, _, _ in r], [b for _, b, _ in r], "o-", label=label)
    ax.set_xlabel("predicted confidence")
    ax.set_ylabel("observed fraction correct")
    ax.set_title(f"reliability: {name}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
