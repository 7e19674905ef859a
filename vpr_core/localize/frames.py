"""Frames around the estimate, as plain numbers: the robot's base from the camera's position, the map's datum and
the static transform from a user's map frame to ``vpr_map``. The ROS node and the launch files call these; the
maths is tested here, without TF."""

from __future__ import annotations

import math

import numpy as np

from ..errors import VprError
from ..geodesy import LocalFrame, frame_offset

__all__ = [
    "CHI2_2D_95",
    "base_from_camera",
    "datum_of",
    "from_parent",
    "inside_ellipse",
    "map_to_vpr_map",
    "mount_yaw",
    "to_parent",
]

#: Squared Mahalanobis radius of the 95 % ellipse of a 2-D Gaussian (chi-square, 2 degrees of freedom).
CHI2_2D_95 = -2.0 * math.log(0.05)


def datum_of(
    map_path: str, datum: str | list[float] | tuple[float, ...] = "", label: str = "datum"
) -> tuple[float, float, float]:
    """The datum (lat, lon, alt): ``datum`` as "lat,lon[,alt]" or a sequence, else the map's ENU origin; errors
    name it as ``label`` (the launch argument or the parameter)."""
    vals: list[float]
    if isinstance(datum, str):
        if not datum.strip():
            from ..map.format import map_origin

            return map_origin(map_path)
        try:
            vals = [float(v) for v in datum.split(",")]
        except ValueError:
            vals = []
    else:
        vals = [float(v) for v in datum]
        if not vals:
            from ..map.format import map_origin

            return map_origin(map_path)
    if len(vals) not in (2, 3) or not all(math.isfinite(v) for v in vals) or abs(vals[0]) > 90 or abs(vals[1]) > 180:
        raise VprError(f"{label} {datum!r}: give lat,lon or lat,lon,alt (degrees, metres), e.g. 45.4642,9.19,120")
    return vals[0], vals[1], vals[2] if len(vals) == 3 else 0.0


def map_to_vpr_map(
    datum: tuple[float, float, float], origin: tuple[float, float, float], map_yaw: float = 0.0
) -> tuple[float, float, float, float]:
    """The static transform parent -> vpr_map (x, y, z, yaw) for a parent frame on the ENU plane at ``datum`` whose
    x axis is ``map_yaw`` radians from east (0: an ENU map frame); ``origin`` is the map's."""
    x, y, z, rot = frame_offset(LocalFrame(*datum), LocalFrame(*origin))
    c, s = math.cos(-map_yaw), math.sin(-map_yaw)
    return c * x - s * y, s * x + c * y, z, math.atan2(math.sin(rot - map_yaw), math.cos(rot - map_yaw))


def _rotation(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s], [s, c]])


def to_parent(
    xy: tuple[float, float], cov_xy: np.ndarray, transform: tuple[float, float, float, float]
) -> tuple[tuple[float, float], np.ndarray]:
    """A vpr_map position and its 2x2 covariance in the parent frame of ``transform`` (x, y, z, yaw)."""
    r = _rotation(transform[3])
    p = r @ np.asarray(xy, dtype=np.float64) + transform[:2]
    return (float(p[0]), float(p[1])), r @ np.asarray(cov_xy, dtype=np.float64) @ r.T


def from_parent(
    xy: tuple[float, float], cov_xy: np.ndarray, transform: tuple[float, float, float, float]
) -> tuple[tuple[float, float], np.ndarray]:
    """The inverse of :func:`to_parent`: a parent-frame position and covariance in vpr_map."""
    r = _rotation(transform[3]).T
    p = r @ (np.asarray(xy, dtype=np.float64) - transform[:2])
    return (float(p[0]), float(p[1])), r @ np.asarray(cov_xy, dtype=np.float64) @ r.T


def inside_ellipse(points: np.ndarray, mean: np.ndarray, cov: np.ndarray, radius2: float = CHI2_2D_95) -> np.ndarray:
    """Which (N, 2) points lie inside the ellipse of ``mean``/``cov`` (default: its 95 % ellipse)."""
    d = np.asarray(points, dtype=np.float64) - np.asarray(mean, dtype=np.float64)
    inv = np.linalg.inv(np.asarray(cov, dtype=np.float64) + 1e-9 * np.eye(2))
    return np.einsum("ni,ij,nj->n", d, inv, d) <= radius2


def base_from_camera(
    xy: tuple[float, float],
    cov_xy: np.ndarray,
    camera_in_base: tuple[float, float],
    yaw: float | None = None,
    yaw_var: float = 0.0,
) -> tuple[tuple[float, float], np.ndarray]:
    """The base's position from the camera's: the camera sits at ``camera_in_base`` (x forward, y left, metres, from
    TF base -> camera). With the robot's yaw, subtract the rotated lever arm and add the yaw uncertainty it carries;
    without it the base lies on a circle of that radius around the camera: the position stays, each axis's variance
    grows by r^2/2 (the circle's spread), so the covariance stays honest."""
    tx, ty = (float(v) for v in camera_in_base)
    cov = np.array(cov_xy, dtype=np.float64)
    if yaw is None or not math.isfinite(yaw):
        r2 = tx * tx + ty * ty
        return (float(xy[0]), float(xy[1])), cov + np.eye(2) * r2 / 2.0
    c, s = math.cos(yaw), math.sin(yaw)
    lever = np.array([c * tx - s * ty, s * tx + c * ty])
    jac = np.array([-s * tx - c * ty, c * tx - s * ty])  # d lever / d yaw
    cov = cov + np.outer(jac, jac) * float(yaw_var)
    return (float(xy[0] - lever[0]), float(xy[1] - lever[1])), cov


def mount_yaw(quaternion: tuple[float, float, float, float], optical: bool = False) -> float:
    """The heading of a camera's viewing direction in the base frame, from the TF rotation base -> camera (x, y, z,
    w): the camera looks along its +x (REP-103 body frame) or, for an ``optical`` frame, along +z."""
    x, y, z, w = quaternion
    r = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip
    forward = r[:, 2] if optical else r[:, 0]
    return math.atan2(float(forward[1]), float(forward[0]))
