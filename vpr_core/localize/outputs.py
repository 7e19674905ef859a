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


@dataclass
class PoseFields:
    position: tuple[float, float, float]
    covariance: list[float]  # 36, row-major (x, y, z, roll, pitch, yaw)


def fix_frame_id(configured: str, camera_frame: str) -> str:
    """The frame_id of a fix: the configured one, else the camera frame of the image it answers."""
    return configured or camera_frame


def publishes_pose(fix: FixFields, when_lost: bool = False) -> bool:
    """A pose goes with every STATUS_FIX fix and, unless asked, with no other: a pose has no status to check."""
    return fix.status == STATUS_FIX or when_lost


def fix_fields(est: Estimate, min_confidence: float) -> FixFields:
    cov = np.array(est.covariance, dtype=np.float64)
    if math.isnan(est.alt):
        cov[2, 2] = max(cov[2, 2], UNOBSERVED_VAR)
    return FixFields(
        status=STATUS_FIX if est.confidence >= min_confidence else STATUS_NO_FIX,
        latitude=float(est.lat),
        longitude=float(est.lon),
        altitude=0.0 if math.isnan(est.alt) else float(est.alt),
        covariance=[float(v) for v in np.nan_to_num(cov, nan=UNOBSERVED_VAR).reshape(-1)],
    )


def pose_fields(est: Estimate) -> PoseFields:
    cov = np.diag([0.0, 0.0, 0.0, UNOBSERVED_VAR, UNOBSERVED_VAR, UNOBSERVED_VAR])
    cov[:3, :3] = est.covariance
    cov[2, 2] = max(cov[2, 2], 1e-6)
    x, y, z = est.enu
    return PoseFields(
        (float(x), float(y), float(z)), [float(v) for v in np.nan_to_num(cov, nan=UNOBSERVED_VAR).reshape(-1)]
    )
