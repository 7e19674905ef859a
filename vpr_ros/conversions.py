"""sensor_msgs/geometry_msgs <-> vpr_core types. No logic beyond field mapping."""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped
from sensor_msgs.msg import CompressedImage, Image, NavSatFix
from std_msgs.msg import Header

from vpr_core.io.camera import decode_compressed, decode_image_msg
from vpr_core.localize.localizer import Estimate
from vpr_core.localize.outputs import FixFields, fix_fields, pose_fields


def image_to_rgb(msg: Image, topic: str) -> np.ndarray:
    return decode_image_msg(msg, topic)


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


def to_pose(est: Estimate, header: Header) -> PoseWithCovarianceStamped:
    f = pose_fields(est)
    msg = PoseWithCovarianceStamped(header=header)
    msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = f.position
    msg.pose.pose.orientation.w = 1.0
    msg.pose.covariance = f.covariance
    return msg
