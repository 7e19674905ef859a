"""From ranked candidates to a position with a covariance and a confidence.

Uncalibrated confidence is a documented monotone function of the *spatial margin*:
the top-1 score minus the best score of any candidate farther than
``confidence_radius_m`` from the top-1 place. Neighbouring frames of the same place
score alike, so the plain top-1/top-2 gap would call every good match ambiguous;
a rival *elsewhere* is what makes a match doubtful.

    confidence = 1 - exp(-margin / confidence_tau)

Horizontal covariance: the moment-matched Gaussian of a two-hypothesis mixture. With
probability ``confidence`` the top-1 place is right and the error is local
(``sigma_floor^2 I`` plus the score-weighted spread of the candidates around it);
otherwise the robot is at some other place, whose second moment about the estimate is
taken half from the retrieved candidates and half from the whole map
(``map_prior_weight``). A doubtful fix therefore gets an ellipse as large as the
ambiguity, never a small one; ``vpr eval`` measures how honest it is (coverage of the
95 % ellipse, NEES) and ``vpr calibrate`` can scale it on a labelled run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ESTIMATE_DEFAULTS = {
    "confidence_radius_m": 10.0,
    "confidence_tau": 0.05,
    "inlier_tau": 8.0,  # with a geometric re-ranker: confidence = 1 - exp(-inlier margin / inlier_tau)
    "sigma_floor_m": 1.0,  # local error of a right match: about half the spacing of mapping images
    "spread_temperature": 0.02,
    "map_prior_weight": 0.5,  # wrong-place hypothesis: this share from the whole map, the rest from the candidates
    "unknown_alt_var": 1.0e6,
}


#: Covariance models of a published estimate (``LocalizerConfig.covariance``): mixture (the whole error) or inlier
#: (the error when the chosen place is right; for gated Kalman filters).
COVARIANCE_MODELS = ("mixture", "inlier")


@dataclass(frozen=True)
class MapMoments:
    """Mean and covariance of the map's positions: the second moment about any point follows from them."""

    mean: np.ndarray  # (2,)
    cov: np.ndarray  # (2, 2)

    @classmethod
    def of(cls, xy: np.ndarray) -> MapMoments:
        mean = xy.mean(axis=0)
        d = xy - mean
        return cls(mean, d.T @ d / max(len(xy), 1))

    def about(self, p: np.ndarray) -> np.ndarray:
        d = self.mean - p
        return self.cov + np.outer(d, d)


@dataclass
class PositionEstimate:
    index: int  # map row of the chosen place
    east: float
    north: float
    cov_xy: np.ndarray  # (2, 2) m^2, the mixture: right with the confidence, else one of the rivals
    confidence: float
    cov_inlier: np.ndarray | None = None  # (2, 2) m^2, the chosen place's spread alone (right match)


def spatial_margin(scores: np.ndarray, xy: np.ndarray, radius_m: float) -> float:
    """Top-1 score minus the best score farther than ``radius_m`` (or minus the last score if none is)."""
    far = np.linalg.norm(xy - xy[0], axis=1) > radius_m
    rival = scores[far].max() if far.any() else scores[-1]
    return float(max(scores[0] - rival, 0.0))


def margin_confidence(margin: float, tau: float) -> float:
    return float(1.0 - np.exp(-margin / tau))


def estimate_position(
    ids: np.ndarray,
    scores: np.ndarray,
    xy: np.ndarray,
    conf: dict,
    confidence: float | None = None,
    map_moments: MapMoments | None = None,
) -> PositionEstimate:
    """``ids``/``scores`` ranked best first; ``xy`` their ENU positions (K, 2); ``map_moments`` of the whole map."""
    c = {**ESTIMATE_DEFAULTS, **conf}
    if confidence is None:
        confidence = margin_confidence(spatial_margin(scores, xy, c["confidence_radius_m"]), c["confidence_tau"])
    confidence = float(np.clip(confidence, 0.0, 1.0))
    w = np.exp((scores - scores[0]) / c["spread_temperature"])
    w = w / w.sum()
    d = xy - xy[0]
    spread = (w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(axis=0)
    local = spread + c["sigma_floor_m"] ** 2 * np.eye(2)
    wrong = (d[:, :, None] * d[:, None, :]).mean(axis=0)  # the other retrieved places, about the estimate
    if map_moments is not None:
        a = float(c["map_prior_weight"])
        wrong = (1.0 - a) * wrong + a * map_moments.about(xy[0])
    cov = confidence * local + (1.0 - confidence) * wrong
    cov = 0.5 * (cov + cov.T) + 1e-9 * np.eye(2)
    return PositionEstimate(int(ids[0]), float(xy[0, 0]), float(xy[0, 1]), cov, confidence, 0.5 * (local + local.T))
