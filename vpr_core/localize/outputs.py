"""What an estimate publishes, as plain numbers: shared by the ROS node and the bag writer.

NavSatFix: FIX only when confident, covariance KNOWN (it has east/north cross terms),
never NaN. Pose: ENU metres from the map origin (REP-105 ``map`` frame), orientation
unobserved. Keeping the numbers here means a bag written offline carries exactly
what the node would have published for the same frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .localizer import Estimate

#: Variance given to axes the estimate does not observe (roll, pitch, yaw; z without altitude).
UNOBSERVED_VAR = 1.0e6
STATUS_NO_FIX, STATUS_FIX = -1, 0  # sensor_msgs/NavSatStatus
#: Default frame of poses: ENU at the map origin, a frame of its own beside the robot's ``map`` (REP-105).
MAP_FRAME = "vpr_map"
COVARIANCE_TYPE_KNOWN = 3  # sensor_msgs/NavSatFix


@dataclass
class FixFields:
    status: int
    latitude: float
    longitude: float
    altitude: float
    covariance: list[float]  # 9, row-major ENU m^2
    confidence: float  # ~/confidence: the estimate's, 0 where it cannot be trusted (never NaN)
    fault: str | None = None  # why the estimate is not published as a fix (``output_fault``)


@dataclass
class PoseFields:
    position: tuple[float, float, float]
    covariance: list[float]  # 36, row-major (x, y, z, roll, pitch, yaw)
    yaw: float = 0.0  # ENU heading, radians; 0 with its variance unobserved when unknown


def fix_frame_id(configured: str, camera_frame: str) -> str:
    """The frame_id of a fix: the configured one, else the camera frame of the image it answers."""
    return configured or camera_frame


def publishes_pose(fix: FixFields, when_lost: bool = False) -> bool:
    """A pose goes with every STATUS_FIX fix and, unless asked, with no other: a pose has no status to check."""
    return fix.status == STATUS_FIX or when_lost


def output_fault(est: Estimate) -> str | None:
    """Why an estimate must not be published as a fix, else None: the last check before a navigation filter
    trusts it (finite position and confidence, a positive-definite horizontal covariance)."""
    if not all(math.isfinite(float(v)) for v in (est.lat, est.lon, est.enu[0], est.enu[1])):
        return "non-finite position"
    if not (math.isfinite(est.confidence) and 0.0 <= est.confidence <= 1.0):
        return f"confidence {est.confidence} is not in [0, 1]"
    cov = np.asarray(est.covariance, dtype=np.float64)
    if cov.shape != (3, 3) or not np.isfinite(cov[:2, :2]).all() or np.linalg.eigvalsh(cov[:2, :2]).min() <= 0:
        return "horizontal covariance is not finite and positive definite"
    return None


def _finite_cov(cov: np.ndarray) -> list[float]:
    return [
        float(v)
        for v in np.nan_to_num(cov, nan=UNOBSERVED_VAR, posinf=UNOBSERVED_VAR, neginf=UNOBSERVED_VAR).reshape(-1)
    ]


def fix_fields(est: Estimate, min_confidence: float) -> FixFields:
    """STATUS_FIX only for a confident estimate that passes ``output_fault``; every number finite either way."""
    cov = np.array(est.covariance, dtype=np.float64)
    alt_known = math.isfinite(est.alt)
    if not alt_known:
        cov[2, 2] = max(np.nan_to_num(cov[2, 2], nan=0.0, posinf=0.0), UNOBSERVED_VAR)
    fault = output_fault(est)
    return FixFields(
        status=STATUS_FIX if fault is None and est.confidence >= min_confidence else STATUS_NO_FIX,
        latitude=float(est.lat) if math.isfinite(est.lat) else 0.0,
        longitude=float(est.lon) if math.isfinite(est.lon) else 0.0,
        altitude=float(est.alt) if alt_known else 0.0,
        covariance=_finite_cov(cov),
        confidence=0.0 if fault else float(est.confidence),
        fault=fault,
    )


def pose_fields(
    est: Estimate,
    xy: tuple[float, float] | None = None,
    cov_xy: np.ndarray | None = None,
    yaw: tuple[float, float] | None = None,
    unknown_yaw_var: float = UNOBSERVED_VAR,
) -> PoseFields:
    """The pose of the estimate, or of ``xy``/``cov_xy`` (the base's, a parent frame's) with its altitude. Heading:
    ``yaw`` (value, variance) when given, else the estimate's when it has one, else 0 with ``unknown_yaw_var``
    (unobserved; /initialpose uses pi^2 so AMCL spreads its particles over every heading)."""
    if yaw is None and math.isfinite(est.yaw) and math.isfinite(est.yaw_var):
        yaw = (est.yaw, est.yaw_var)
    cov = np.diag([0.0, 0.0, 0.0, UNOBSERVED_VAR, UNOBSERVED_VAR, unknown_yaw_var if yaw is None else yaw[1]])
    cov[:3, :3] = est.covariance
    x, y, z = (float(v) for v in est.enu)
    if xy is not None:
        x, y = float(xy[0]), float(xy[1])
    if cov_xy is not None:
        cov[:2, :2] = cov_xy
    if not math.isfinite(z):  # no usable altitude: z unobserved
        z, cov[2, 2] = 0.0, UNOBSERVED_VAR
    cov[2, 2] = max(np.nan_to_num(cov[2, 2], nan=UNOBSERVED_VAR), 1e-6)
    return PoseFields((x, y, z), _finite_cov(cov), 0.0 if yaw is None else float(yaw[0]))
