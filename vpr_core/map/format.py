"""The map file: descriptors + geotags + model identity, as safetensors (never pickle).

One file, arrays in the safetensors container and every non-array field as JSON in
its header metadata. Loading a map cannot execute code; saving writes a temporary
file beside the target and renames it, so a crash never leaves a half-written map.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from ..errors import MapError
from ..geodesy import LocalFrame
from ..io.files import atomic_write

__all__ = ["FORMAT_VERSION", "VprMap", "load_map", "map_info", "save_map"]

FORMAT = "vpr_ros.map"
FORMAT_VERSION = 1
_GEO = ("lat", "lon", "alt", "east", "north")


@dataclass
class VprMap:
    descriptors: np.ndarray  # (N, D) float32, L2-normalised
    lat: np.ndarray
    lon: np.ndarray
    alt: np.ndarray  # NaN where unknown
    east: np.ndarray  # ENU metres in ``frame`` (the local tangent plane at ``origin``)
    north: np.ndarray
    origin: tuple[float, float, float]  # (lat, lon, h) of the ENU frame: the first image unless given
    names: list[str]
    model: str
    model_conf: dict[str, Any]
    fingerprint: str
    model_state: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # provenance: source, created, counts
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. calibration tables
    local: np.ndarray | None = None  # (N, C, gh, gw) float16 dense grids for re-ranking

    def __len__(self) -> int:
        return len(self.descriptors)

    @property
    def xy(self) -> np.ndarray:
        return np.stack([self.east, self.north], axis=1)

    @property
    def frame(self) -> LocalFrame:
        """The map's metric frame: ENU at ``origin`` (WGS-84); poses, distances and covariances are in it."""
        return LocalFrame(*self.origin)

    @property
    def origin_lla(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.origin)


def save_map(m: VprMap, path: str | Path) -> None:
    path = Path(path)
    n = len(m)
    tensors = {"descriptors": np.ascontiguousarray(m.descriptors, dtype=np.float32)}
    for k in _GEO:
        arr = np.ascontiguousarray(getattr(m, k), dtype=np.float64)
        if arr.shape != (n,):
            raise ValueError(f"{k} has shape {arr.shape}, expected ({n},)")
        tensors[f"geo.{k}"] = arr
    tensors |= {f"model.{k}": np.ascontiguousarray(v) for k, v in m.model_state.items()}
    tensors |= {f"extra.{k}": np.ascontiguousarray(v) for k, v in m.extras.items()}
    if m.local is not None:
        if len(m.local) != n or m.local.ndim != 4:
            raise ValueError(f"local features have shape {m.local.shape}, expected ({n}, C, gh, gw)")
        tensors["local.features"] = np.ascontiguousarray(m.local, dtype=np.float16)
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": m.model,
        "model_conf": m.model_conf,
        "fingerprint": m.fingerprint,
        "origin": [float(v) for v in m.origin],
        "names": m.names,
        "info": m.info,
    }
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"vpr_map": json.dumps(meta)}))


def _read_header_meta(path: Path) -> dict[str, str]:
    """Parse only the safetensors JSON header (8-byte little-endian length + JSON)."""
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise MapError(f"{path}: file too short to be a map (truncated?); rebuild it with 'vpr map build'")
        size = int.from_bytes(head, "little")
        if size <= 0 or size > 100_000_000 or size > path.stat().st_size - 8:
            raise MapError(
                f"{path}: not a vpr map (bad header; a pickle or other file?); rebuild it with 'vpr map build'"
            )
        try:
            header = json.loads(f.read(size))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise MapError(f"{path}: not a vpr map (header is not JSON); rebuild it with 'vpr map build'") from None
    if not isinstance(header, dict):
        raise MapError(f"{path}: not a vpr map; rebuild it with 'vpr map build'")
    return header.get("__metadata__") or {}


def _check_local(path: Path, local: np.ndarray | None, n: int) -> np.ndarray | None:
    if local is not None and (local.ndim != 4 or len(local) != n):
        raise MapError(f"{path}: local features have shape {local.shape} for {n} images; rebuild the map")
    return local


def load_map(path: str | Path) -> VprMap:
    path = Path(path)
    if not path.is_file():
        raise MapError(f"{path}: map not found; build one with 'vpr map build --images DIR --out {path}'")
    raw = _read_header_meta(path).get("vpr_map")
    if raw is None:
        raise MapError(f"{path}: a safetensors file but not a vpr map (no 'vpr_map' metadata); rebuild it")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise MapError(f"{path}: map metadata is corrupt; rebuild it") from None
    if meta.get("format") != FORMAT:
        raise MapError(f"{path}: not a vpr map (format {meta.get('format')!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise MapError(
            f"{path}: map format version {meta.get('version')} but this vpr_ros reads version {FORMAT_VERSION}; "
            "rebuild the map"
        )
    for key, kind in (("model", str), ("model_conf", dict), ("fingerprint", str), ("names", list)):
        if not isinstance(meta.get(key), kind):
            raise MapError(f"{path}: map metadata field '{key}' is missing or not a {kind.__name__}; rebuild the map")
    origin = meta.get("origin")
    if origin is not None and not (
        isinstance(origin, list) and len(origin) == 3 and all(isinstance(v, int | float) for v in origin)
        and all(np.isfinite(origin)) and abs(origin[0]) <= 90 and abs(origin[1]) <= 180
    ):  # fmt: skip
        raise MapError(f"{path}: map metadata field 'origin' must be [lat, lon, h] in range; rebuild the map")
    try:
        arrays = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise MapError(
            f"{path}: map data is corrupt or truncated ({str(e).splitlines()[0][:120]}); rebuild it"
        ) from None
    try:
        desc = arrays["descriptors"]
        geo = {k: arrays[f"geo.{k}"] for k in _GEO}
    except KeyError as e:
        raise MapError(f"{path}: map lacks array {e}; rebuild it") from None
    n = len(desc)
    names = meta.get("names", [])
    if desc.ndim != 2 or any(v.shape != (n,) for v in geo.values()) or len(names) != n:
        raise MapError(f"{path}: map arrays disagree in length ({n} descriptors, {len(names)} names); rebuild it")
    if n == 0:
        raise MapError(f"{path}: map is empty; rebuild it from a folder with images")
    if not np.isfinite(desc).all():
        raise MapError(f"{path}: map descriptors contain NaN/Inf; rebuild it")
    lat, lon, alt = geo["lat"], geo["lon"], geo["alt"]
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()) or (np.abs(lat) > 90).any() or (np.abs(lon) > 180).any():
        raise MapError(f"{path}: map geotags (geo.lat/geo.lon) contain NaN, Inf or out-of-range values; rebuild it")
    # version 1 files kept UTM in east/north and no origin: their ENU frame is at the first image, as before
    origin = meta.get("origin") or [float(lat[0]), float(lon[0]), float(alt[0]) if np.isfinite(alt[0]) else 0.0]
    frame = LocalFrame(*map(float, origin))
    east, north, _ = frame.enu(lat, lon, alt)
    return VprMap(
        descriptors=desc.astype(np.float32, copy=False),
        lat=lat,
        lon=lon,
        alt=alt,
        east=east,
        north=north,
        origin=(frame.lat0, frame.lon0, frame.h0),
        names=list(names),
        model=str(meta["model"]),
        model_conf=dict(meta["model_conf"]),
        fingerprint=str(meta["fingerprint"]),
        model_state={k[6:]: v for k, v in arrays.items() if k.startswith("model.")},
        extras={k[6:]: v for k, v in arrays.items() if k.startswith("extra.")},
        local=_check_local(path, arrays.get("local.features"), n),
        info=dict(meta.get("info", {})),
    )


def map_info(m: VprMap) -> dict[str, Any]:
    """What ``vpr map info`` prints: size, model identity, zone, stored parts and provenance."""
    return {
        "images": len(m),
        "model": m.model,
        "dim": int(m.descriptors.shape[1]),
        "fingerprint": m.fingerprint,
        "origin": {
            "lat": m.origin[0],
            "lon": m.origin[1],
            "h": m.origin[2],
            "frame": "ENU (WGS-84 local tangent plane)",
        },
        "model_conf": m.model_conf,
        "model_state": {k: list(v.shape) for k, v in m.model_state.items()},
        "extras": sorted(m.extras),
        **m.info,
    }
