"""sensor_msgs/geometry_msgs <-> vpr_core types. No logic beyond field mapping."""

from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped
from sensor_msgs.msg import CompressedImage, Image, NavSatFix, NavSatStatus
from std_msgs.msg import Header

from vpr_core.localizer import Estimate
from vpr_core.rawimage import decode_compressed, decode_raw

#: Variance given to axes the estimate does not observe (roll, pitch, yaw; z without altitude).
UNOBSERVED_VAR = 1.0e6


def image_to_rgb(msg: Image, topic: str) -> np.ndarray:
    return decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian), source=f"{topic} ({msg.encoding} {msg.width}x{msg.height})")


def compressed_to_rgb(msg: CompressedImage, topic: str) -> np.ndarray:
    return decode_compressed(msg.format, msg.data, source=topic)


def rgb_to_image(rgb: np.ndarray, header: Header) -> Image:
    msg = Image(header=header, height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0, step=rgb.shape[1] * 3)
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg


def to_navsatfix(est: Estimate, header: Header, min_confidence: float) -> NavSatFix:
    """FIX only when confident; covariance KNOWN (it has east/north cross terms); never NaN."""
    fix = NavSatFix(header=header)
    fix.status.status = NavSatStatus.STATUS_FIX if est.confidence >= min_confidence else NavSatStatus.STATUS_NO_FIX
    fix.status.service = 0  # not a GNSS constellation
    fix.latitude, fix.longitude = float(est.lat), float(est.lon)
    fix.altitude = 0.0 if math.isnan(est.alt) else float(est.alt)
    cov = np.array(est.covariance, dtype=np.float64)
    if math.isnan(est.alt):
        cov[2, 2] = max(cov[2, 2], UNOBSERVED_VAR)
    fix.position_covariance = [float(v) for v in np.nan_to_num(cov, nan=UNOBSERVED_VAR).reshape(-1)]
    fix.position_covariance_type = NavSatFix.COVARIANCE_TYPE_KNOWN
    return fix


def to_pose(est: Estimate, header: Header) -> PoseWithCovarianceStamped:
    """ENU metres from the map origin (REP-105 ``map`` frame); orientation unobserved."""
    msg = PoseWithCovarianceStamped(header=header)
    x, y, z = est.enu
    msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = float(x), float(y), float(z)
    msg.pose.pose.orientation.w = 1.0
    cov = np.diag([0.0, 0.0, 0.0, UNOBSERVED_VAR, UNOBSERVED_VAR, UNOBSERVED_VAR])
    cov[:3, :3] = est.covariance
    cov[2, 2] = max(cov[2, 2], 1e-6)
    msg.pose.covariance = [float(v) for v in np.nan_to_num(cov, nan=UNOBSERVED_VAR).reshape(-1)]
    return msg
