"""Geodesy through the maintained ``utm`` package: WGS84 <-> UTM and a local ENU frame.

A map fixes one UTM zone (that of its first image) and expresses every position in
it, so distances are plain Euclidean metres even near zone borders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import utm


@dataclass(frozen=True)
class UtmZone:
    number: int
    letter: str

    @property
    def northern(self) -> bool:
        return self.letter.upper() >= "N"


def zone_of(lat: float, lon: float) -> UtmZone:
    _, _, number, letter = utm.from_latlon(lat, lon)
    return UtmZone(int(number), str(letter))


def to_utm(lat: np.ndarray, lon: np.ndarray, zone: UtmZone) -> tuple[np.ndarray, np.ndarray]:
    """Project lat/lon (degrees) into the given zone; returns (easting, northing) in metres."""
    lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    e, n, _, _ = utm.from_latlon(lat, lon, force_zone_number=zone.number, force_zone_letter=zone.letter)
    return np.asarray(e, dtype=np.float64), np.asarray(n, dtype=np.float64)


def from_utm(east: np.ndarray, north: np.ndarray, zone: UtmZone) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`to_utm`; returns (lat, lon) in degrees."""
    east = np.atleast_1d(np.asarray(east, dtype=np.float64))
    north = np.atleast_1d(np.asarray(north, dtype=np.float64))
    lat, lon = utm.to_latlon(east, north, zone.number, northern=zone.northern, strict=False)
    return np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)


def valid_latlon(lat: float, lon: float) -> bool:
    return bool(np.isfinite(lat) and np.isfinite(lon) and -80.0 <= lat <= 84.0 and -180.0 <= lon <= 180.0)
