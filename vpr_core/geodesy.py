"""Geodesy: every metre is in a local East-North-Up tangent plane (WGS-84) at a map's origin, through pymap3d.

A map's metric frame is the ENU plane at its origin (its first image unless stored
otherwise): distances, covariances, poses and plots are in it, so a map may span UTM
zones or reach the poles, and north is true north everywhere (UTM grid north turns
by about dlon*sin(lat) away from the central meridian). UTM survives only in the
file names of the VPR dataset convention, read and written through the ``utm`` package.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymap3d
import utm

__all__ = ["LocalFrame", "UtmZone", "frame_offset", "utm_name_fields", "utm_to_latlon", "valid_latlon"]


@dataclass(frozen=True)
class LocalFrame:
    """ENU local tangent plane at (lat0, lon0, h0) on the WGS-84 ellipsoid; degrees and metres."""

    lat0: float
    lon0: float
    h0: float = 0.0

    def enu(self, lat, lon, h=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(east, north, up) metres of points given in degrees (``h`` None or NaN: at the origin's height)."""
        lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        hh = np.full_like(lat, self.h0) if h is None else np.atleast_1d(np.asarray(h, dtype=np.float64))
        hh = np.where(np.isfinite(hh), hh, self.h0)
        e, n, u = pymap3d.geodetic2enu(lat, lon, hh, self.lat0, self.lon0, self.h0)
        return np.asarray(e, np.float64), np.asarray(n, np.float64), np.asarray(u, np.float64)

    def lla(self, east, north, up=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lat, lon, h) of ENU points (``up`` None: on the origin's height)."""
        east = np.atleast_1d(np.asarray(east, dtype=np.float64))
        north = np.atleast_1d(np.asarray(north, dtype=np.float64))
        up = np.zeros_like(east) if up is None else np.atleast_1d(np.asarray(up, dtype=np.float64))
        lat, lon, h = pymap3d.enu2geodetic(east, north, up, self.lat0, self.lon0, self.h0)
        return np.asarray(lat, np.float64), np.asarray(lon, np.float64), np.asarray(h, np.float64)

    @classmethod
    def at(cls, lat: float, lon: float, h: float = float("nan")) -> LocalFrame:
        """The frame at a point; an unknown height (NaN) puts the origin on the ellipsoid."""
        return cls(float(lat), float(lon), float(h) if np.isfinite(h) else 0.0)


def frame_offset(parent: LocalFrame, child: LocalFrame) -> tuple[float, float, float, float]:
    """The transform parent -> child between two ENU planes, as a static transform takes it: the child's origin in
    the parent (x, y, z metres) and the yaw of the child's east axis in the parent (radians; the planes' norths
    differ by about dlon*sin(lat)). What ``map_frame_parent -> vpr_map`` is when the parent frame sits at a datum."""
    x, y, z = (float(v[0]) for v in parent.enu(child.lat0, child.lon0, child.h0))
    lat, lon, h = child.lla(100.0, 0.0)  # 100 m along the child's east axis
    ex, ey, _ = (float(v[0]) for v in parent.enu(lat, lon, h))
    return x, y, z, float(np.arctan2(ey - y, ex - x))


@dataclass(frozen=True)
class UtmZone:
    """A UTM zone, as the VPR file-name convention writes it."""

    number: int
    letter: str

    @property
    def northern(self) -> bool:
        return self.letter.upper() >= "N"


def utm_to_latlon(east: float, north: float, zone: UtmZone) -> tuple[float, float]:
    """The exact inverse of a UTM position in ``zone`` (degrees)."""
    lat, lon = utm.to_latlon(east, north, zone.number, northern=zone.northern, strict=False)
    return float(lat), float(lon)


def utm_name_fields(lat: float, lon: float) -> tuple[float, float, int, str] | None:
    """(east, north, zone number, letter) in the point's own zone, or None where UTM is undefined (beyond 84N/80S)."""
    if not -80.0 <= lat <= 84.0:
        return None
    e, n, number, letter = utm.from_latlon(lat, lon)
    return float(e), float(n), int(number), str(letter)


def valid_latlon(lat: float, lon: float) -> bool:
    return bool(np.isfinite(lat) and np.isfinite(lon) and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0)
