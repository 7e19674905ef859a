"""The map file: descriptors + geotags + model identity, as safetensors (never pickle).

One file, arrays in the safetensors container and every non-array field as JSON in
its header metadata. Loading a map cannot execute code; saving writes a temporary
file beside the target and renames it, so a crash never leaves a half-written map.
Loading memory-maps the arrays: a robot pages in only the rows it touches (the K
candidates' grids, the shortlist's descriptors), so a map far larger than RAM serves.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from ..errors import MapError
from ..geodesy import LocalFrame
from ..io.files import atomic_write
from .codec import GridCodec

__all__ = ["FORMAT_VERSION", "VprMap", "file_parts", "load_map", "map_info", "save_map", "verify_map"]

FORMAT = "vpr_ros.map"
#: 2: float16 descriptors, PQ-coded grids and a stored search index may appear; version 1 files still load.
FORMAT_VERSION = 2
READS = (1, 2)
_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32, "I16": np.int16,
    "I8": np.int8, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64, "BOOL": np.bool_,
}  # fmt: skip
_GEO = ("lat", "lon", "alt", "east", "north")
#: The marker file of a map's image folder (``MAP.images/``): its owner, the id both carry, whether complete.
IMAGES_MARKER = ".vpr-map-images"
#: Arrays up to this size have their checksum and finiteness verified on every load (milliseconds); larger ones
#: (descriptors, grids, sparse features of big maps) by ``vpr map verify``.
VERIFY_ON_LOAD_BYTES = 64 * 2**20


def checksum(arr: np.ndarray) -> str:
    """SHA-256 of an array's bytes as stored (C order, little-endian), 32 hex digits."""
    a = np.ascontiguousarray(arr)
    return hashlib.sha256(memoryview(a.reshape(-1).view(np.uint8))).hexdigest()[:32]


@dataclass
class VprMap:
    descriptors: np.ndarray  # (N, D) float32 or float16 (as stored), L2-normalised; memory-mapped when loaded
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
    local_codes: np.ndarray | None = None  # (N, gh, gw, m) uint8: the grids PQ-coded (map.codec)
    local_codebook: np.ndarray | None = None  # (m, 256, C/m) float32
    local_rotation: np.ndarray | None = None  # (C, C) float32 OPQ rotation (identity when absent)
    index: dict[str, Any] | None = None  # a stored search index: its conf (kind, nprobe, ...) and "shards"

    def __len__(self) -> int:
        return len(self.descriptors)

    @property
    def grid_codec(self) -> GridCodec | None:
        """The PQ codec of the stored grid codes (None for float16 grids or none)."""
        if self.local_codes is None:
            return None
        book = np.asarray(self.local_codebook, np.float32)
        c = book.shape[0] * book.shape[2]
        rot = (
            np.eye(c, dtype=np.float32) if self.local_rotation is None else np.asarray(self.local_rotation, np.float32)
        )
        return GridCodec(book, rot)

    @property
    def local_shape(self) -> tuple[int, int, int] | None:
        """(C, gh, gw) of the stored dense grids, however they are stored; None without grids."""
        if self.local is not None:
            return tuple(int(v) for v in self.local.shape[1:])
        if self.local_codes is not None:
            m, _, ds = self.local_codebook.shape
            return (int(m * ds), int(self.local_codes.shape[1]), int(self.local_codes.shape[2]))
        return None

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
    desc = np.asarray(m.descriptors)
    tensors = {"descriptors": np.ascontiguousarray(desc, dtype=np.float16 if desc.dtype == np.float16 else np.float32)}
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
    if m.local_codes is not None:
        if len(m.local_codes) != n or m.local_codes.ndim != 4 or m.local_codebook is None:
            raise ValueError(f"local codes have shape {m.local_codes.shape}, expected ({n}, gh, gw, m) and a codebook")
        tensors["local.codes"] = np.ascontiguousarray(m.local_codes, dtype=np.uint8)
        tensors["local.codebook"] = np.ascontiguousarray(m.local_codebook, dtype=np.float32)
        if m.local_rotation is not None:
            tensors["local.rotation"] = np.ascontiguousarray(m.local_rotation, dtype=np.float32)
    index = None
    if m.index is not None:
        index = {k: v for k, v in m.index.items() if k != "shards"}
        index["shards"] = len(m.index["shards"])
        tensors |= {f"index.shard.{i:04d}": np.asarray(b, np.uint8) for i, b in enumerate(m.index["shards"])}
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": m.model,
        "model_conf": m.model_conf,
        "fingerprint": m.fingerprint,
        "origin": [float(v) for v in m.origin],
        "names": m.names,
        "info": m.info,
        "index": index,
        "checksums": {k: checksum(v) for k, v in tensors.items()},
    }
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"vpr_map": json.dumps(meta)}))


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The safetensors JSON header (8-byte little-endian length + JSON) and where the data starts."""
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
    return header, 8 + size


def _read_header_meta(path: Path) -> dict[str, str]:
    return _read_header(path)[0].get("__metadata__") or {}


def _memmap_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the file, memory-mapped read-only (no copy); offsets and sizes checked against the file."""
    header, start = _read_header(path)
    total = path.stat().st_size
    out: dict[str, np.ndarray] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = np.dtype(_DTYPES[spec["dtype"]])
            shape = tuple(int(v) for v in spec["shape"])
            lo, hi = (int(v) for v in spec["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise MapError(f"{path}: array '{name}' has a corrupt header entry; rebuild the map") from None
        if hi - lo != int(np.prod(shape)) * dtype.itemsize or lo < 0 or start + hi > total:
            raise MapError(f"{path}: map data is corrupt or truncated (array '{name}'); rebuild it")
        if hi == lo:
            out[name] = np.zeros(shape, dtype)
        else:
            out[name] = np.memmap(path, dtype=dtype, mode="r", offset=start + lo, shape=shape)
    return out


def file_parts(path: str | Path) -> dict[str, int]:
    """Bytes of the map file by part (descriptors, geotags, local grids, sparse features, index, ...)."""
    path = Path(path)
    header, start = _read_header(path)
    parts: dict[str, int] = {"header": start}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        lo, hi = spec["data_offsets"]
        key = name.split(".")[0]
        if name.startswith("extra."):
            key = "sparse" if name.startswith("extra.sparse.") else "extras"
        elif key == "model":
            key = "model_state"
        parts[key] = parts.get(key, 0) + int(hi) - int(lo)
    return parts


def _check_local(path: Path, local: np.ndarray | None, n: int) -> np.ndarray | None:
    if local is not None and (local.ndim != 4 or len(local) != n):
        raise MapError(f"{path}: local features have shape {local.shape} for {n} images; rebuild the map")
    return local


def _check_codes(path: Path, arrays: dict[str, np.ndarray], n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    codes, book = arrays.get("local.codes"), arrays.get("local.codebook")
    if codes is None:
        return None, None
    if book is None or book.ndim != 3 or codes.ndim != 4 or len(codes) != n or codes.shape[3] != book.shape[0]:
        raise MapError(f"{path}: local.codes/local.codebook disagree in shape; rebuild the map")
    rot, c = arrays.get("local.rotation"), book.shape[0] * book.shape[2]
    if rot is not None and rot.shape != (c, c):
        raise MapError(f"{path}: local.rotation is {rot.shape}, not ({c}, {c}); rebuild the map")
    return codes, book


def _index(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any] | None:
    conf = meta.get("index")
    if conf is None:
        return None
    shards = sorted(k for k in arrays if k.startswith("index.shard."))
    if not isinstance(conf, dict) or conf.get("shards") != len(shards):
        raise MapError(f"{path}: the stored index is incomplete ({len(shards)} shards); rebuild the map")
    return {**conf, "shards": [arrays[k] for k in shards]}


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
    if meta.get("version") not in READS:
        raise MapError(
            f"{path}: map format version {meta.get('version')} but this vpr_ros reads versions "
            f"{', '.join(map(str, READS))}; rebuild the map or update vpr_ros"
        )
    _check_meta(path, meta)
    arrays = _memmap_arrays(path)
    _check_arrays(path, meta, arrays, VERIFY_ON_LOAD_BYTES)
    try:
        desc = arrays["descriptors"]
        geo = {k: np.array(arrays[f"geo.{k}"]) for k in _GEO}
    except KeyError as e:
        raise MapError(f"{path}: map lacks array {e}; rebuild it") from None
    n = len(desc)
    names = meta.get("names", [])
    if desc.ndim != 2 or any(v.shape != (n,) for v in geo.values()) or len(names) != n:
        raise MapError(f"{path}: map arrays disagree in length ({n} descriptors, {len(names)} names); rebuild it")
    if n == 0:
        raise MapError(f"{path}: map is empty; rebuild it from a folder with images")
    if desc.dtype not in (np.float32, np.float16):
        raise MapError(f"{path}: map descriptors are {desc.dtype}, not float32/float16; rebuild it")
    for lo in range(0, n, 16384):  # chunked: a large map is checked without holding it all in RAM
        if not np.isfinite(desc[lo : lo + 16384]).all():
            raise MapError(f"{path}: map descriptors contain NaN/Inf; rebuild it")
    lat, lon, alt = geo["lat"], geo["lon"], geo["alt"]
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()) or (np.abs(lat) > 90).any() or (np.abs(lon) > 180).any():
        raise MapError(f"{path}: map geotags (geo.lat/geo.lon) contain NaN, Inf or out-of-range values; rebuild it")
    if np.isinf(alt).any() or (np.abs(alt[np.isfinite(alt)]) > 1e5).any():  # NaN: unknown altitude
        raise MapError(f"{path}: map altitudes (geo.alt) hold Inf or values beyond 100 km; rebuild it")
    # version 1 files kept UTM in east/north and no origin: their ENU frame is at the first image, as before
    origin = meta.get("origin") or [float(lat[0]), float(lon[0]), float(alt[0]) if np.isfinite(alt[0]) else 0.0]
    frame = LocalFrame(*map(float, origin))
    east, north, _ = frame.enu(lat, lon, alt)
    codes, book = _check_codes(path, arrays, n)
    return VprMap(
        descriptors=desc,
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
        model_state={k[6:]: np.array(v) for k, v in arrays.items() if k.startswith("model.")},
        extras={k[6:]: v for k, v in arrays.items() if k.startswith("extra.")},
        local=_check_local(path, arrays.get("local.features"), n),
        local_codes=codes,
        local_codebook=None if book is None else np.array(book),
        local_rotation=np.array(arrays["local.rotation"]) if "local.rotation" in arrays and book is not None else None,
        index=_index(path, meta, arrays),
        info=dict(meta.get("info") or {}),
    )


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_meta(path: Path, meta: dict[str, Any]) -> None:
    """Every metadata field of the JSON header has its type and range, or one MapError names it."""
    for key, kind in (("model", str), ("model_conf", dict), ("fingerprint", str), ("names", list)):
        if not isinstance(meta.get(key), kind):
            raise MapError(f"{path}: map metadata field '{key}' is missing or not a {kind.__name__}; rebuild the map")
    if not all(isinstance(n, str) and n for n in meta["names"]):
        raise MapError(f"{path}: map metadata field 'names' holds entries that are not file names; rebuild the map")
    origin = meta.get("origin")
    if origin is not None and not (
        isinstance(origin, list) and len(origin) == 3 and all(_is_number(v) for v in origin)
        and abs(origin[0]) <= 90 and abs(origin[1]) <= 180 and abs(origin[2]) <= 1e5
    ):  # fmt: skip
        raise MapError(f"{path}: map metadata field 'origin' must be [lat, lon, h] in range; rebuild the map")
    for key in ("info", "index", "checksums"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise MapError(f"{path}: map metadata field '{key}' is not an object; rebuild the map")


def _check_arrays(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray], max_bytes: float) -> None:
    """Arrays up to ``max_bytes`` each: stored checksum and finite values; the calibration and covariance tables
    of each re-ranker whatever their size (a NaN or negative one would publish a wrong covariance)."""
    for name, arr in arrays.items():
        if name.startswith("extra.calibration.") and not (arr.ndim == 1 and arr.size > 0 and _finite(arr)):
            raise MapError(
                f"{path}: {name[6:]} is not a vector of finite coefficients (shape {arr.shape}); "
                f"run 'vpr calibrate' again or rebuild the map"
            )
        if name.startswith("extra.covariance.") and not (
            arr.shape == (1,) and _finite(arr) and 1e-6 <= float(arr[0]) <= 1e6
        ):
            raise MapError(
                f"{path}: {name[6:]} must be one positive covariance scale (shape {arr.shape}); "
                "run 'vpr calibrate' again or rebuild the map"
            )
    sums = meta.get("checksums") or {}
    for name, arr in arrays.items():
        if arr.nbytes > max_bytes:
            continue
        want = sums.get(name)
        if want is not None and checksum(arr) != want:
            raise MapError(
                f"{path}: array '{name}' does not match its checksum (the file was damaged after it was written); "
                "restore the map from a copy or rebuild it"
            )
        if name != "geo.alt" and arr.dtype.kind == "f" and not _finite(arr):
            raise MapError(f"{path}: array '{name}' holds NaN or Inf; rebuild the map")


def _finite(arr: np.ndarray, chunk: int = 2**22) -> bool:
    """All values finite, read in chunks (a memory-mapped array is never copied whole)."""
    flat = arr.reshape(-1)
    return all(np.isfinite(flat[lo : lo + chunk]).all() for lo in range(0, flat.size, chunk))


def verify_map(path: str | Path) -> dict[str, Any]:
    """Everything ``load_map`` checks, plus the checksum and finiteness of every array whatever its size and the
    map's image folder (present, owned by this map). Raises a one-line MapError; returns what was checked."""
    path = Path(path)
    m = load_map(path)
    meta = json.loads(_read_header_meta(path)["vpr_map"])
    arrays = _memmap_arrays(path)
    _check_arrays(path, meta, arrays, math.inf)
    sums = meta.get("checksums") or {}
    report: dict[str, Any] = {
        "arrays": len(arrays),
        "checksummed": sum(name in sums for name in arrays),
        "bytes": sum(a.nbytes for a in arrays.values()),
    }
    images_id, source = m.info.get("images_id"), m.info.get("source")
    if images_id and isinstance(source, str):
        try:
            owner = json.loads((Path(source) / IMAGES_MARKER).read_text())
        except (OSError, ValueError):
            owner = None
        if not isinstance(owner, dict) or owner.get("id") != images_id:
            raise MapError(
                f"{path}: its image folder {source} is missing or holds another map's images (id {images_id}); "
                "restore the folder or pass the node map_images_dir"
            )
        report["images"] = source
    return report


def map_info(m: VprMap, path: str | Path | None = None) -> dict[str, Any]:
    """What ``vpr map info`` prints: size, model identity, zone, stored parts, bytes per image and provenance."""
    size: dict[str, Any] = {}
    if path is not None:
        parts = file_parts(path)
        total = sum(parts.values())
        size = {
            "bytes": {
                "file": total,
                "per_image": round(total / len(m), 1),
                "per_image_by_part": {k: round(v / len(m), 1) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])},
            }
        }
    return {
        "images": len(m),
        **size,
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
        "local_grid": None
        if m.local_shape is None
        else {"shape": list(m.local_shape), "codec": "pq" if m.local_codes is not None else "fp16"},
        "index": None if m.index is None else {k: v for k, v in m.index.items() if k != "shards"},
        **m.info,
    }
