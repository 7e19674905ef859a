"""The query's heading from its matches to a map image of known heading: the relative rotation of the two cameras.

Matched points (query, map) in one pixel frame, the intrinsics from a horizontal field of view, an essential matrix
by RANSAC and its decomposition (cv2) give the rotation query -> map camera; its yaw (about the camera's vertical
axis) added to the map image's heading is the query's. The variance is measured, not assumed: the yaw spread over
random halves of the inliers (half the data doubles a variance, so it is halved), plus a floor for the grid's
quantisation. Too few inliers (a weak or wrong match): no heading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["HEADING_DEFAULTS", "RelativeYaw", "intrinsics", "relative_yaw", "wrap"]

HEADING_DEFAULTS = {
    "min_inliers": 30,  # fewer essential-matrix inliers: no heading
    "threshold_px": 4.0,  # RANSAC threshold in the nominal frame (the grid cell is 8 px at 320x240)
    "halves": 8,  # random inlier halves for the measured variance
    "floor_deg": 0.5,  # added standard deviation: the grid's quantisation, the map heading's own error
}


@dataclass
class RelativeYaw:
    yaw: float  # radians, query heading minus map heading (ENU: counter-clockwise positive)
    var: float  # rad^2, measured
    inliers: int


def wrap(a: float) -> float:
    """An angle to [-pi, pi)."""
    return (a + math.pi) % (2 * math.pi) - math.pi


def intrinsics(frame: tuple[int, int], fov_deg: float) -> np.ndarray:
    """A pinhole K for a ``frame`` (W, H) in pixels with horizontal field of view ``fov_deg``, principal point at
    the centre, square pixels."""
    w, h = frame
    f = (w / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([[f, 0.0, w / 2.0], [0.0, f, h / 2.0], [0.0, 0.0, 1.0]])


def _yaw_of(e: np.ndarray, q: np.ndarray, m: np.ndarray, k: np.ndarray) -> float | None:
    """Yaw of the query camera in the map camera's frame from an essential matrix (cv2 picks the cheirality-valid
    decomposition): its forward axis R[:, 2] seen from above, turning right (camera +x) is clockwise."""
    if e is None or e.shape != (3, 3):
        return None
    _, r, _, _ = cv2.recoverPose(e, q, m, k)
    return -math.atan2(float(r[0, 2]), float(r[2, 2]))


def relative_yaw(
    q: np.ndarray,
    m: np.ndarray,
    frame: tuple[int, int],
    fov_deg: float,
    cell_px: float = 0.0,
    conf: dict | None = None,
    seed: int = 0,
) -> RelativeYaw | None:
    """The yaw of the query camera relative to the map camera from matched points ``q``, ``m`` ((N, 2), pixels of
    ``frame``; ``cell_px`` their quantisation, a dense grid's cell), or None when fewer than ``min_inliers`` matches
    agree with one relative pose. The variance floor is the larger of ``floor_deg`` and one cell's angle: a turn
    smaller than a cell moves few matches, and the halves then agree on a yaw the grid cannot resolve."""
    c = {**HEADING_DEFAULTS, **(conf or {})}
    if len(q) < c["min_inliers"]:
        return None
    k = intrinsics(frame, fov_deg)
    q64, m64 = np.ascontiguousarray(q, np.float64), np.ascontiguousarray(m, np.float64)
    try:
        e, mask = cv2.findEssentialMat(q64, m64, k, cv2.RANSAC, 0.999, float(c["threshold_px"]))
    except cv2.error:
        return None
    if e is None or mask is None:
        return None
    e = e[:3]
    inl = np.flatnonzero(mask.ravel())
    if len(inl) < c["min_inliers"]:
        return None
    yaw = _yaw_of(e, q64[inl], m64[inl], k)
    if yaw is None:
        return None
    rng = np.random.default_rng(seed)
    halves = []
    for _ in range(int(c["halves"])):
        pick = rng.choice(inl, size=len(inl) // 2, replace=False)
        try:  # a degenerate half (points on a line) has no essential matrix: skipped
            eh, _ = cv2.findEssentialMat(q64[pick], m64[pick], k, cv2.RANSAC, 0.999, float(c["threshold_px"]))
            yh = _yaw_of(eh[:3] if eh is not None else None, q64[pick], m64[pick], k)
        except cv2.error:
            yh = None
        if yh is not None:
            halves.append(wrap(yh - yaw))
    spread = float(np.var(halves)) / 2.0 if len(halves) >= 2 else math.radians(10.0) ** 2
    floor = max(math.radians(float(c["floor_deg"])), math.atan(cell_px / k[0, 0]))
    return RelativeYaw(float(yaw), spread + floor**2, len(inl))
