"""Decode raw camera buffers (sensor_msgs/Image layout) to RGB uint8 without cv_bridge.

ROS-agnostic on purpose: the node and the bag tools both call it with the message's
fields. cv_bridge is not pip-installable and breaks on NumPy 2; this covers the
encodings cameras actually publish. Every problem raises a one-line ImageError.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import ImageError
from .images import decode_image, jpeg_complete, to_rgb

# encoding -> (channels, bytes per channel, OpenCV conversion to RGB or None)
_ENCODINGS: dict[str, tuple[int, int, int | None]] = {
    "rgb8": (3, 1, None),
    "bgr8": (3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": (4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": (1, 1, None),
    "8UC1": (1, 1, None),
    "8UC3": (3, 1, cv2.COLOR_BGR2RGB),
    "mono16": (1, 2, None),
    "16UC1": (1, 2, None),
    "rgb16": (3, 2, None),
    "bgr16": (3, 2, cv2.COLOR_BGR2RGB),
    # cv_bridge's mapping: ROS names the first row, OpenCV the second.
    "bayer_rggb8": (1, 1, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": (1, 1, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": (1, 1, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": (1, 1, cv2.COLOR_BayerGB2RGB),
    "bayer_rggb16": (1, 2, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr16": (1, 2, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg16": (1, 2, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg16": (1, 2, cv2.COLOR_BayerGB2RGB),
    # packed 4:2:2, 2 bytes per pixel
    "yuv422": (2, 1, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": (2, 1, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, 1, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": (2, 1, cv2.COLOR_YUV2RGB_YUY2),
}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)


def decode_raw(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: bytes | bytearray | memoryview | np.ndarray,
    is_bigendian: bool = False,
    source: str = "image",
) -> np.ndarray:
    """Raw buffer -> contiguous RGB uint8 (H, W, 3), downscaled if huge."""
    spec = _ENCODINGS.get(encoding)
    if spec is None:
        raise ImageError(
            f"{source}: unsupported encoding '{encoding}'; publish one of {', '.join(SUPPORTED_ENCODINGS[:6])}, "
            "bayer_*, yuv422 or use input: compressed"
        )
    ch, bpc, conv = spec
    if height <= 0 or width <= 0:
        raise ImageError(f"{source}: zero-sized image {width}x{height}")
    row = width * ch * bpc
    if step < row:
        raise ImageError(
            f"{source}: step {step} < width*bytes per pixel {row} for {encoding} {width}x{height}; the driver fills "
            "the message wrongly"
        )
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).reshape(-1)
    if buf.size < step * (height - 1) + row:
        raise ImageError(
            f"{source}: truncated data ({buf.size} bytes, {encoding} {width}x{height} with step {step} needs "
            f"{step * height})"
        )
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row), strides=(step, 1))
    if bpc == 2:
        dt = np.dtype(">u2" if is_bigendian else "<u2")
        img = np.ascontiguousarray(rows).view(dt).astype(np.uint16).reshape(height, width, ch)
        img = (img >> 8).astype(np.uint8) if encoding.startswith(("mono", "16U", "rgb", "bgr")) else img
    else:
        img = rows.reshape(height, width, ch)
    if ch == 1:
        img = img[:, :, 0]
    if encoding.startswith("bayer") and img.dtype == np.uint16:
        img = (cv2.cvtColor(np.ascontiguousarray(img), conv) >> 8).astype(np.uint8)
        conv = None
    if conv is not None:
        if ch == 2 and width % 2:
            raise ImageError(
                f"{source}: {encoding} packs pixel pairs but the width {width} is odd; the driver is wrong"
            )
        img = cv2.cvtColor(np.ascontiguousarray(img), conv)
    return to_rgb(img, source)


def decode_image_msg(msg, source: str = "image") -> np.ndarray:
    """A sensor_msgs/Image (ROS 1 or 2, rclpy or rosbags) -> RGB uint8; errors name ``source`` and the format."""
    return decode_raw(
        msg.encoding,
        msg.height,
        msg.width,
        msg.step,
        msg.data,
        bool(msg.is_bigendian),
        source=f"{source} ({msg.encoding} {msg.width}x{msg.height})",
    )


def decode_compressed(fmt: str, data: bytes | bytearray | memoryview | np.ndarray, source: str = "image") -> np.ndarray:
    """sensor_msgs/CompressedImage payload (jpeg/png) -> RGB uint8."""
    raw = bytes(data) if not isinstance(data, np.ndarray) else data.tobytes()
    if raw[:2] == b"\xff\xd8" and not jpeg_complete(raw):
        raise ImageError(f"{source}: truncated JPEG ({len(raw)} bytes, no end-of-image marker after its last scan)")
    return decode_image(raw, f"{source} ({fmt or 'unknown format'})")
