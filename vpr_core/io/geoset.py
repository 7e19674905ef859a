"""Geotagged image lists from the public VPR folder convention or from a CSV.

The VPR convention (gmberton's VPR-datasets-downloader) encodes the geotag in the
file name: ``@utm_east@utm_north@zone@letter@lat@lon@pano@tile@heading@pitch@roll@height@...``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VprError
from ..geodesy import LocalFrame, UtmZone, utm_name_fields, utm_to_latlon, valid_latlon
from .images import list_images


@dataclass
class GeoImage:
    path: Path
    lat: float
    lon: float
    alt: float = math.nan
    heading: float = math.nan
    #: UTM from the file name, when the name carries it (the benchmarks' ground truth; lat/lon are derived from it).
    utm: tuple[float, float, int, str] | None = None


@dataclass
class GeoSet:
    """Images with positions in one local ENU frame (``east``/``north``: metres from ``frame``'s origin)."""

    images: list[GeoImage]
    frame: LocalFrame
    east: np.ndarray
    north: np.ndarray

    @property
    def paths(self) -> list[Path]:
        return [g.path for g in self.images]

    @property
    def lat(self) -> np.ndarray:
        return np.array([g.lat for g in self.images])

    @property
    def lon(self) -> np.ndarray:
        return np.array([g.lon for g in self.images])

    @property
    def alt(self) -> np.ndarray:
        return np.array([g.alt for g in self.images])

    @property
    def xy(self) -> np.ndarray:
        return np.stack([self.east, self.north], axis=1)


def _float(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        return math.nan


#: UTM latitude band letters (I and O are not used).
UTM_LETTERS = "CDEFGHJKLMNPQRSTUVWX"


def parse_vpr_name(path: Path) -> GeoImage:
    """Geotag of one file named in the VPR convention, or a VprError naming the file."""
    parts = path.stem.split("@")
    if len(parts) < 7 or parts[0] != "":
        raise VprError(
            f"{path}: file name carries no coordinates; expected '@utm_east@utm_north@zone@letter@lat@lon@...' "
            "(VPR convention) or use --csv FILE with image,lat,lon columns"
        )
    east, north, lat, lon = (_float(parts[i]) for i in (1, 2, 5, 6))
    if not valid_latlon(lat, lon):
        raise VprError(
            f"{path}: invalid latitude/longitude '{parts[5]}', '{parts[6]}' in the file name; fix or remove the file"
        )
    heading = _float(parts[9]) if len(parts) > 9 else math.nan
    alt = _float(parts[12]) if len(parts) > 12 else math.nan
    utm_tag = None
    if math.isfinite(east) and math.isfinite(north) and parts[3].isdigit() and parts[4].isalpha():
        utm_tag = (east, north, int(parts[3]), parts[4].upper())
        if not (1 <= utm_tag[2] <= 60 and utm_tag[3] in UTM_LETTERS and 0 < east < 1e6 and 0 <= north <= 1e7):
            raise VprError(
                f"{path}: invalid UTM '{parts[1]}@{parts[2]}@{parts[3]}@{parts[4]}' in the file name (zone 1-60, "
                "letter C-X, easting 0-1000000 m, northing 0-10000000 m); fix or remove the file"
            )
        # the name's UTM is the benchmark's ground truth (lat/lon fields are rounded): read it exactly
        lat, lon = utm_to_latlon(east, north, UtmZone(utm_tag[2], utm_tag[3]))
        if not valid_latlon(lat, lon):
            raise VprError(f"{path}: UTM in the file name is outside the zone's latitudes; fix or remove the file")
    return GeoImage(path, lat, lon, alt, heading, utm_tag)


def vpr_name(lat: float, lon: float, name: str, ext: str = ".jpg", heading: float | None = None) -> str:
    """A file name in the VPR convention: UTM in the point's own zone to the centimetre (NaN beyond UTM's
    latitudes), lat/lon to 1e-7 degree, and the compass heading (degrees clockwise from north) when given."""
    fields = utm_name_fields(lat, lon)
    east, north, number, letter = fields if fields else (math.nan, math.nan, 0, "Z")
    head = "" if heading is None else f"{heading % 360.0:.2f}"
    return f"@{east:.2f}@{north:.2f}@{number}@{letter}@{lat:.7f}@{lon:.7f}@{name}@@{head}@@@@@@{ext}"


def read_folder(folder: str | Path) -> list[GeoImage]:
    return [parse_vpr_name(p) for p in list_images(folder)]


REQUIRED_COLUMNS = ("image", "lat", "lon")


def read_csv(csv_path: str | Path, image_root: str | Path | None = None) -> list[GeoImage]:
    """Rows ``image,lat,lon[,alt,heading]``; image paths are relative to ``image_root`` (default: the CSV's folder)."""
    csv_path = Path(csv_path)
    root = Path(image_root) if image_root else csv_path.parent
    try:
        with csv_path.open(newline="") as f:
            reader = csv.DictReader(f)
            cols = [c.strip().lower() for c in (reader.fieldnames or [])]
            twice = sorted({c for c in cols if c and cols.count(c) > 1})
            if twice:
                raise VprError(
                    f"{csv_path}: column(s) {', '.join(twice)} appear more than once in the header; keep one"
                )
            missing = [c for c in REQUIRED_COLUMNS if c not in cols]
            if missing:
                raise VprError(
                    f"{csv_path}: missing column(s) {', '.join(missing)}; the header must have "
                    "image,lat,lon[,alt,heading]"
                )
            out = []
            for lineno, row in enumerate(reader, start=2):
                row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                lat, lon = _float(row["lat"]), _float(row["lon"])
                if not valid_latlon(lat, lon):
                    raise VprError(
                        f"{csv_path}:{lineno}: invalid lat/lon '{row['lat']}', '{row['lon']}'; fix or drop the row"
                    )
                p = Path(row["image"])
                out.append(
                    GeoImage(
                        p if p.is_absolute() else root / p,
                        lat,
                        lon,
                        _float(row.get("alt", "")),
                        _float(row.get("heading", "")),
                    )
                )
    except OSError as e:
        raise VprError(f"{csv_path}: cannot read ({e.strerror or e})") from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise VprError(f"{csv_path}: not a valid CSV ({e})") from None
    if not out:
        raise VprError(f"{csv_path}: no rows; add image,lat,lon rows")
    return out


def make_geoset(images: list[GeoImage], frame: LocalFrame | None = None) -> GeoSet:
    """Express all positions in ``frame`` (default: the ENU frame at the first image)."""
    if not images:
        raise VprError("no images to geotag")
    frame = frame or LocalFrame.at(images[0].lat, images[0].lon, images[0].alt)
    east, north, _ = frame.enu([g.lat for g in images], [g.lon for g in images], [g.alt for g in images])
    return GeoSet(images, frame, east, north)


def capture_order(gs: GeoSet) -> np.ndarray | None:
    """The order the images were taken in, from the natural order of the VPR names' original-name field (the 8th
    ``@`` field; never from coordinates); None when the names do not carry it (CSV rows keep their order)."""
    import re

    def natural(s: str) -> list:
        return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s)]

    fields = [g.path.stem.split("@") for g in gs.images]
    if not fields or not all(len(f) >= 8 and f[7] for f in fields):
        return None
    return np.array(sorted(range(len(fields)), key=lambda i: natural(fields[i][7])))


def in_sequence(gs: GeoSet, shuffle: int | None = None) -> GeoSet:
    """The images in the order they were taken, for sequence localization (:func:`capture_order`; anything else,
    e.g. CSV rows, as given); ``shuffle`` a seed for a fixed random order instead (the robustness check for
    unordered input)."""
    n = len(gs.images)
    order = capture_order(gs)
    order = np.arange(n) if order is None else order
    if shuffle is not None:
        order = order[np.random.default_rng(shuffle).permutation(n)]
    return GeoSet([gs.images[i] for i in order], gs.frame, gs.east[order], gs.north[order])


def load_geoset(
    images_dir: str | Path | None = None, csv_path: str | Path | None = None, frame: LocalFrame | None = None
) -> GeoSet:
    """Images with geotags from a VPR-convention folder or a CSV, in ``frame`` (a map's, to score against it)."""
    if csv_path:
        return make_geoset(read_csv(csv_path, images_dir), frame)
    if images_dir:
        return make_geoset(read_folder(images_dir), frame)
    raise VprError("give an image folder (--images/--queries) or a CSV (--csv)")
