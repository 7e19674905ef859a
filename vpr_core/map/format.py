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
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from ..errors import MapError
from ..geodesy import LocalFrame
from ..io.files import atomic_write
from ..store.parts import Calibration, DheHead, GridStore, Headings, SparseKeypoints
from ..store.vmap import VprMap

__all__ = ["FORMAT_VERSION", "VprMap", "file_parts", "load_map", "map_info", "map_origin", "save_map", "verify_map"]

FORMAT = "vpr_ros.map"
#: 2: float16 descriptors, PQ-coded grids and a stored search index may appear. 3: every optional part has its own
#: array names (``grid.``, ``sparse.``, ``dhe_head.``, ``calibration.NAME.``, ``heading.``) instead of ``local.``
#: and string-prefixed ``extra.`` arrays; versions 1 and 2 still load (``_upgrade_names``).
FORMAT_VERSION = 3
READS = (1, 2, 3)
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
    parts: dict[str, object] = {}
    if m.grids is not None:
        if len(m.grids) != n:
            raise ValueError(f"grids hold {len(m.grids)} images, expected {n}")
        tensors |= m.grids.to_tensors()
    if m.sparse is not None:
        if len(m.sparse) != n:
            raise ValueError(f"sparse keypoints hold {len(m.sparse)} images, expected {n}")
        tensors |= m.sparse.to_tensors()
    if m.dhe_head is not None:
        tensors |= m.dhe_head.to_tensors()
    for name, cal in sorted(m.calibrations.items()):
        tensors |= cal.to_tensors(name)
    if m.headings is not None:
        if m.headings.yaw.shape != (n,):
            raise ValueError(f"headings have shape {m.headings.yaw.shape}, expected ({n},)")
        tensors |= m.headings.to_tensors()
        parts["headings"] = m.headings.conf
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
        "parts": parts,
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


def map_origin(path: str | Path) -> tuple[float, float, float]:
    """The map's ENU origin (lat, lon, h) from the file's header alone (a launch file reads it for a datum); files
    written before the origin was stored are loaded to find it (their first image)."""
    path = Path(path)
    if not path.is_file():
        raise MapError(f"{path}: map not found; build one with 'vpr map build' or fix the path")
    try:
        origin = json.loads(_read_header_meta(path).get("vpr_map", "{}")).get("origin")
    except json.JSONDecodeError:
        origin = None
    if isinstance(origin, list) and len(origin) == 3 and all(_is_number(v) for v in origin):
        return float(origin[0]), float(origin[1]), float(origin[2])
    lat, lon, h = load_map(path).origin
    return float(lat), float(lon), float(h)


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
        key = _upgrade_names([name])[name].split(".")[0]
        key = {"model": "model_state", "heading": "headings"}.get(key, key)
        parts[key] = parts.get(key, 0) + int(hi) - int(lo)
    return parts


#: Array names of format 1-2 files and what format 3 calls them (the calibration of a re-ranker NAME was
#: ``extra.calibration.NAME`` and its covariance scale ``extra.covariance.NAME``).
_OLD_PREFIXES = {
    "local.features": "grid.features",
    "local.codes": "grid.codes",
    "local.codebook": "grid.codebook",
    "local.rotation": "grid.rotation",
    "extra.sparse.": "sparse.",
    "extra.dhe_head.": "dhe_head.",
}


def _upgrade_names(names) -> dict[str, str]:
    """Each array name of a map file -> its format-3 name (unchanged for format-3 names)."""
    out = {}
    for name in names:
        new = name
        for old, now in _OLD_PREFIXES.items():
            if name.startswith(old):
                new = now + name[len(old) :]
                break
        else:
            if name.startswith("extra.calibration."):
                new = f"calibration.{name[len('extra.calibration.') :]}.coef"
            elif name.startswith("extra.covariance."):
                new = f"calibration.{name[len('extra.covariance.') :]}.covariance_scale"
        out[name] = new
    return out


def _index(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any] | None:
    conf = meta.get("index")
    if conf is None:
        return None
    shards = sorted(k for k in arrays if k.startswith("index.shard."))
    if not isinstance(conf, dict) or conf.get("shards") != len(shards):
        raise MapError(f"{path}: the stored index is incomplete ({len(shards)} shards); rebuild the map")
    return {**conf, "shards": [arrays[k] for k in shards]}


def load_map(path: str | Path) -> VprMap:  # noqa: C901 (every field of an untrusted file checked in order, each a one-line error)
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
    if meta["version"] < 3:
        arrays = {new: arrays[old] for old, new in _upgrade_names(arrays).items()}
    known = ("descriptors", "geo.", "model.", "index.", "grid.", "sparse.", "dhe_head.", "calibration.", "heading.")
    unknown = sorted(k for k in arrays if not k.startswith(known))
    if unknown:
        raise MapError(
            f"{path}: map holds arrays this vpr_ros does not know ({', '.join(unknown[:3])}); update vpr_ros"
        )
    try:
        parts = _parts(arrays, n, meta.get("parts") or {})
    except MapError as e:
        raise MapError(f"{path}: {e}") from None
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
        **parts,
        index=_index(path, meta, arrays),
        info=dict(meta.get("info") or {}),
    )


def _parts(arrays: dict[str, np.ndarray], n: int, confs: dict[str, Any]) -> dict[str, Any]:
    """The map's optional parts, one constructor each (a one-line MapError names what is wrong)."""
    return {
        "grids": GridStore.from_tensors(arrays, n),
        "sparse": SparseKeypoints.from_tensors(arrays, n),
        "dhe_head": DheHead.from_tensors(arrays),
        "calibrations": Calibration.from_tensors(arrays),
        "headings": Headings.from_tensors(arrays, n, confs.get("headings")),
    }


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
    for key in ("info", "index", "checksums", "parts"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise MapError(f"{path}: map metadata field '{key}' is not an object; rebuild the map")


def _check_arrays(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray], max_bytes: float) -> None:
    """Arrays up to ``max_bytes`` each: stored checksum and finite values (the parts check their own shapes and
    ranges when they are built from the arrays)."""
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
        own_check = name.startswith(("calibration.", "extra.calibration.", "extra.covariance."))  # a named message
        # NaN is "unknown" in geo.alt and heading.yaw (Headings checks its own: no Inf, within 4 pi)
        if name not in ("geo.alt", "heading.yaw") and not own_check and arr.dtype.kind == "f" and not _finite(arr):
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
        "parts": m.parts(),
        "local_grid": None if m.grids is None else {"shape": list(m.grids.shape), "codec": m.grids.kind},
        "sparse": None if m.sparse is None else m.sparse.conf,
        "headings": None if m.headings is None else m.headings.conf,
        "index": None if m.index is None else {k: v for k, v in m.index.items() if k != "shards"},
        **m.info,
    }
