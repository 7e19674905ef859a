"""Confidence a robot can use: P(top-1 within the threshold | match evidence).

Evidence per frame: inliers of the top-1 (after re-ranking), its inlier margin over
the best candidate elsewhere, and the global spatial margin. ``vpr calibrate`` fits
a logistic model of correctness on a labelled run and stores it in the map, one
per re-ranker (the map's ``Calibration`` part). Without one, confidence is the
documented monotone fallback of :mod:`vpr_core.localize.estimate`.
"""

from __future__ import annotations

import numpy as np

FEATURES = ("bias", "log1p_inliers", "log1p_inlier_margin", "global_margin")


def evidence(inliers_top1: float, inlier_margin: float, global_margin: float) -> np.ndarray:
    return np.array(
        [1.0, np.log1p(max(inliers_top1, 0.0)), np.log1p(max(inlier_margin, 0.0)), global_margin], dtype=np.float64
    )


def predict(coef: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.atleast_2d(x) @ coef, -40, 40)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 100) -> np.ndarray:
    """Ridge-regularised logistic regression by Newton's method (IRLS); x includes the bias column."""
    w = np.zeros(x.shape[1])
    reg = l2 * np.eye(x.shape[1])
    reg[0, 0] = 0.0
    for _ in range(iters):
        p = predict(w, x)
        g = x.T @ (p - y) + reg @ w
        h = (x * (p * (1 - p))[:, None]).T @ x + reg + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def reliability(pred: np.ndarray, y: np.ndarray, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted, observed frequency, count) per confidence bin."""
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (pred >= lo) & ((pred < hi) | (hi == 1.0))
        if m.any():
            out.append((float(pred[m].mean()), float(y[m].mean()), int(m.sum())))
    return out
