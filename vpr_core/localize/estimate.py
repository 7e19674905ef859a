"""From ranked candidates to a position with a covariance and a confidence.

Uncalibrated confidence is a documented monotone function of the *spatial margin*:
the top-1 score minus the best score of any candidate farther than
``confidence_radius_m`` from the top-1 place. Neighbouring frames of the same place
score alike, so the plain top-1/top-2 gap would call every good match ambiguous;
a rival *elsewhere* is what makes a match doubtful.

    confidence = 1 - exp(-margin / confidence_tau)

Horizontal covariance = sigma_floor^2 I + score-weighted spread of the candidates
around the top-1 place, inflated by 1 / max(confidence, 0.01): a doubtful fix gets a
large ellipse instead of being silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ESTIMATE_DEFAULTS = {
    "confidence_radius_m": 10.0,
    "confidence_tau": 0.05,
    "inlier_tau": 8.0,  # with a geometric re-ranker: confidence = 1 - exp(-inlier margin / inlier_tau)
    "sigma_floor_m": 2.0,
    "spread_temperature": 0.02,
    "unknown_alt_var": 1.0e6,
}


@dataclass
class PositionEstimate:
    index: int  # map row of the chosen place
    east: float
    north: float
    cov_xy: np.ndarray  # (2, 2) m^2
    confidence: float


def spatial_margin(scores: np.ndarray, xy: np.ndarray, radius_m: float) -> float:
    """Top-1 score minus the best score farther than ``radius_m`` (or minus the last score if none is)."""
    far = np.linalg.norm(xy - xy[0], axis=1) > radius_m
    rival = scores[far].max() if far.any() else scores[-1]
    return float(max(scores[0] - rival, 0.0))


def margin_confidence(margin: float, tau: float) -> float:
    return float(1.0 - np.exp(-margin / tau))


def estimate_position(
    ids: np.ndarray, scores: np.ndarray, xy: np.ndarray, conf: dict, confidence: float | None = None
) -> PositionEstimate:
    """``ids``/``scores`` ranked best first; ``xy`` their UTM positions (K, 2)."""
    c = {**ESTIMATE_DEFAULTS, **conf}
    if confidence is None:
        confidence = margin_confidence(spatial_margin(scores, xy, c["confidence_radius_m"]), c["confidence_tau"])
    w = np.exp((scores - scores[0]) / c["spread_temperature"])
    w = w / w.sum()
    d = xy - xy[0]
    spread = (w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(axis=0)
    cov = (spread + c["sigma_floor_m"] ** 2 * np.eye(2)) / max(confidence, 0.01)
    return PositionEstimate(int(ids[0]), float(xy[0, 0]), float(xy[0, 1]), cov, float(np.clip(confidence, 0.0, 1.0)))
