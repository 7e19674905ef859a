"""sensor_msgs/geometry_msgs <-> vpr_core types. No logic beyond field mapping."""

from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped
from sensor_msgs.msg import CompressedImage, Image, NavSatFix
from std_msgs.msg import Header

from vpr_core.io.camera import decode_compressed, decode_image_msg
from vpr_core.localize.localizer import Estimate
from vpr_core.localize.outputs import UNOBSERVED_VAR, FixFields, fix_fields, pose_fields


def image_to_rgb(msg: Image, topic: str) -> np.ndarray:
    return decode_image_msg(msg, topic)


def prior_from_pose(msg: PoseWithCovarianceStamped) -> tuple[tuple[float, float], np.ndarray]:
    """(x, y) and the 2x2 covariance of a pose message (its frame is the caller's to check)."""
    p = msg.pose.pose.position
    cov = np.asarray(msg.pose.covariance, dtype=np.float64).reshape(6, 6)[:2, :2]
    return (float(p.x), float(p.y)), cov


def prior_from_fix(msg: NavSatFix) -> tuple[tuple[float, float, float], np.ndarray]:
    """(lat, lon, alt) and the east/north covariance of a fix."""
    cov = np.asarray(msg.position_covariance, dtype=np.float64).reshape(3, 3)[:2, :2]
    return (float(msg.latitude), float(msg.longitude), float(msg.altitude)), cov


def compressed_to_rgb(msg: CompressedImage, topic: str) -> np.ndarray:
    return decode_compressed(msg.format, msg.data, source=topic)


def rgb_to_image(rgb: np.ndarray, header: Header) -> Image:
    msg = Image(
        header=header, height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0, step=rgb.shape[1] * 3
    )
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg


def navsatfix(f: FixFields, header: Header) -> NavSatFix:
    fix = NavSatFix(header=header)
    fix.status.status = f.status
    fix.status.service = 0  # not a GNSS constellation
    fix.latitude, fix.longitude, fix.altitude = f.latitude, f.longitude, f.altitude
    fix.position_covariance = f.covariance
    fix.position_covariance_type = NavSatFix.COVARIANCE_TYPE_KNOWN
    return fix


def to_navsatfix(est: Estimate, header: Header, min_confidence: float) -> NavSatFix:
    return navsatfix(fix_fields(est, min_confidence), header)


def to_pose(
    est: Estimate,
    header: Header,
    xy: tuple[float, float] | None = None,
    cov_xy: np.ndarray | None = None,
    yaw: tuple[float, float] | None = None,
    unknown_yaw_var: float = UNOBSERVED_VAR,
) -> PoseWithCovarianceStamped:
    f = pose_fields(est, xy, cov_xy, yaw, unknown_yaw_var)
    msg = PoseWithCovarianceStamped(header=header)
    msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = f.position
    msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = math.sin(f.yaw / 2.0), math.cos(f.yaw / 2.0)
    msg.pose.covariance = f.covariance
    return msg
