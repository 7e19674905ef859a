"""The typed parts of a map beside its descriptors and geotags: each is one optional field of ``VprMap``.

Every part turns into named arrays and a small JSON conf (``to_tensors``/``conf``) and back (``from_tensors``),
checking shapes and values on the way in, so the map file, a build, a merge and an append each go through one
constructor per part. They sit below the models and re-rankers, which therefore take a typed map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import MapError

__all__ = ["Calibration", "DheHead", "GridCodec", "GridStore", "Headings", "SparseKeypoints"]

Arrays = dict[str, np.ndarray]


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise MapError(f"{what}; rebuild the map")


def _finite(arr: np.ndarray, chunk: int = 2**22) -> bool:
    """All values finite, read in chunks (a memory-mapped array is never copied whole)."""
    flat = np.asarray(arr).reshape(-1)
    return all(np.isfinite(flat[lo : lo + chunk]).all() for lo in range(0, flat.size, chunk))


@dataclass
class GridCodec:
    """What turns a grid cell into ``m`` bytes and back: an orthonormal rotation (OPQ) and a PQ codebook.

    The rotation spreads the cell's energy evenly over the ``m`` sub-spaces before quantising them: measured on
    corridor it lifts the decoded cells' cosine to the float16 ones from 0.94 to 0.97 at the same 8 bytes.
    """

    codebook: np.ndarray  # (m, 256, C/m) float32
    rotation: np.ndarray  # (C, C) float32: rotated = rotation @ cell

    @property
    def channels(self) -> int:
        return int(self.codebook.shape[0] * self.codebook.shape[2])

    def same(self, other: GridCodec | None) -> bool:
        return (
            other is not None
            and np.array_equal(self.codebook, other.codebook)
            and np.array_equal(self.rotation, other.rotation)
        )

    def tobytes(self) -> bytes:
        return np.ascontiguousarray(self.codebook).tobytes() + np.ascontiguousarray(self.rotation).tobytes()


@dataclass
class GridStore:
    """Each map image's dense local grid for the grid re-rankers (ransac, dhe, geowarp): float16 grids
    (N, C, gh, gw), or PQ codes (N, gh, gw, m) uint8 with their ``codec`` (16x smaller; ``map.codec``)."""

    data: np.ndarray
    codec: GridCodec | None = None

    @property
    def kind(self) -> str:
        """'pq' or 'fp16': how the grids are stored."""
        return "fp16" if self.codec is None else "pq"

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, gh, gw) of one decoded grid."""
        if self.codec is None:
            c, gh, gw = self.data.shape[1:]
            return int(c), int(gh), int(gw)
        return self.codec.channels, int(self.data.shape[1]), int(self.data.shape[2])

    def __len__(self) -> int:
        return len(self.data)

    @property
    def bytes_per_image(self) -> int:
        return int(self.data[0].nbytes) if len(self.data) else 0

    def take(self, rows: np.ndarray) -> GridStore:
        """The grids of map rows ``rows`` (same codec)."""
        return GridStore(np.asarray(self.data)[rows], self.codec)

    def to_tensors(self) -> Arrays:
        if self.codec is None:
            return {"grid.features": np.ascontiguousarray(self.data, dtype=np.float16)}
        return {
            "grid.codes": np.ascontiguousarray(self.data, dtype=np.uint8),
            "grid.codebook": np.ascontiguousarray(self.codec.codebook, dtype=np.float32),
            "grid.rotation": np.ascontiguousarray(self.codec.rotation, dtype=np.float32),
        }

    @classmethod
    def from_tensors(cls, arrays: Arrays, n: int) -> GridStore | None:
        feats, codes = arrays.get("grid.features"), arrays.get("grid.codes")
        if feats is not None:
            _need(feats.ndim == 4 and len(feats) == n, f"grid.features have shape {feats.shape} for {n} images")
            return cls(feats)
        if codes is None:
            return None
        book, rot = arrays.get("grid.codebook"), arrays.get("grid.rotation")
        _need(
            book is not None and book.ndim == 3 and book.shape[1] == 256 and codes.ndim == 4 and len(codes) == n
            and codes.shape[3] == book.shape[0],
            "grid.codes/grid.codebook disagree in shape",
        )  # fmt: skip
        c = int(book.shape[0] * book.shape[2])
        rot = np.eye(c, dtype=np.float32) if rot is None else np.array(rot, np.float32)
        _need(rot.shape == (c, c), f"grid.rotation is {rot.shape}, not ({c}, {c})")
        return cls(codes, GridCodec(np.array(book, np.float32), rot))

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return ("grid.features", "grid.codes", "grid.codebook", "grid.rotation")


@dataclass
class SparseKeypoints:
    """Each map image's XFeat keypoints at a fixed budget for the learned matchers (``rerank.sparse``): the best
    ``top_k`` of the image scaled to ``max_side``, float16 keypoints and descriptors, the valid count and the size
    they were extracted at."""

    keypoints: np.ndarray  # (N, M, 2) float16 px at the working size
    descriptors: np.ndarray  # (N, M, 64) float16
    count: np.ndarray  # (N,) int32 valid keypoints
    size: np.ndarray  # (N, 2) int32 working (w, h)
    top_k: int = 512
    max_side: int = 640

    PER_IMAGE: ClassVar[tuple[str, ...]] = ("keypoints", "descriptors", "count", "size")

    def __len__(self) -> int:
        return len(self.keypoints)

    @property
    def bytes_per_image(self) -> int:
        return int(sum(np.asarray(getattr(self, k)[0]).nbytes for k in self.PER_IMAGE)) if len(self) else 0

    @property
    def conf(self) -> dict[str, int]:
        return {"top_k": int(self.top_k), "max_side": int(self.max_side)}

    def take(self, rows: np.ndarray) -> SparseKeypoints:
        return SparseKeypoints(*(np.asarray(getattr(self, k))[rows] for k in self.PER_IMAGE), **self.conf)

    @classmethod
    def concat(cls, parts: list[SparseKeypoints]) -> SparseKeypoints | None:
        """One part of every map's rows in order; None unless all were extracted alike (same top_k, max_side)."""
        if not parts or any(
            p.conf != parts[0].conf or p.keypoints.shape[1:] != parts[0].keypoints.shape[1:] for p in parts
        ):
            return None
        arrays = (np.concatenate([np.asarray(getattr(p, k)) for p in parts]) for k in cls.PER_IMAGE)
        return cls(*arrays, **parts[0].conf)

    def to_tensors(self) -> Arrays:
        return {
            "sparse.keypoints": np.ascontiguousarray(self.keypoints, dtype=np.float16),
            "sparse.descriptors": np.ascontiguousarray(self.descriptors, dtype=np.float16),
            "sparse.count": np.ascontiguousarray(self.count, dtype=np.int32),
            "sparse.size": np.ascontiguousarray(self.size, dtype=np.int32),
            "sparse.conf": np.asarray([self.top_k, self.max_side], np.int32),
        }

    @classmethod
    def from_tensors(cls, arrays: Arrays, n: int) -> SparseKeypoints | None:
        if not any(k.startswith("sparse.") for k in arrays):
            return None
        missing = [k for k in cls.PER_IMAGE if f"sparse.{k}" not in arrays]
        _need(not missing, f"the sparse features lack {', '.join('sparse.' + k for k in missing)}")
        kp, desc = arrays["sparse.keypoints"], arrays["sparse.descriptors"]
        count, size = np.asarray(arrays["sparse.count"]), np.asarray(arrays["sparse.size"])
        _need(
            kp.ndim == 3 and kp.shape[0] == n and kp.shape[2] == 2 and desc.ndim == 3
            and desc.shape[:2] == kp.shape[:2] and count.shape == (n,) and size.shape == (n, 2),
            "the sparse features are malformed (keypoints, descriptors, count and size disagree)",
        )  # fmt: skip
        conf = np.asarray(arrays.get("sparse.conf", [kp.shape[1], 640])).reshape(-1)
        _need(conf.size >= 2, "sparse.conf must hold [top_k, max_side]")
        return cls(kp, desc, count, size, int(conf[0]), int(conf[1]))

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return (*(f"sparse.{k}" for k in cls.PER_IMAGE), "sparse.conf")


@dataclass
class DheHead:
    """A DHE homography head adapted to this map's own images (``vpr map adapt``): its weights by the key names of
    ``rerank.dhe.DHEHead``'s state dict (float32). ``--rerank dhe`` uses it when no weights are given."""

    state: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        """Grid positions the head was built for (the positional embedding's length)."""
        return int(self.state["pe"].shape[1])

    def to_tensors(self) -> Arrays:
        return {f"dhe_head.{k}": np.ascontiguousarray(v, dtype=np.float32) for k, v in self.state.items()}

    @classmethod
    def from_tensors(cls, arrays: Arrays) -> DheHead | None:
        state = {k[len("dhe_head.") :]: np.array(v) for k, v in arrays.items() if k.startswith("dhe_head.")}
        if not state:
            return None
        _need("pe" in state and state["pe"].ndim == 3, "the map's adapted DHE head is incomplete (no 3-d 'pe')")
        return cls(state)


@dataclass
class Calibration:
    """One re-ranker's calibration, fitted by ``vpr calibrate`` on a labelled run: the logistic coefficients that
    turn its evidence into a confidence (``localize.calibration``), and the scale that makes its covariance honest
    (1 = the model as it is)."""

    coef: np.ndarray | None = None  # (len(FEATURES),) float64
    covariance_scale: float = 1.0

    def to_tensors(self, name: str) -> Arrays:
        out = {f"calibration.{name}.covariance_scale": np.asarray([self.covariance_scale], np.float64)}
        if self.coef is not None:
            out[f"calibration.{name}.coef"] = np.asarray(self.coef, np.float64)
        return out

    @classmethod
    def from_tensors(cls, arrays: Arrays) -> dict[str, Calibration]:
        names = sorted({k.split(".")[1] for k in arrays if k.startswith("calibration.") and k.count(".") >= 2})
        out: dict[str, Calibration] = {}
        for name in names:
            coef = arrays.get(f"calibration.{name}.coef")
            scale = arrays.get(f"calibration.{name}.covariance_scale", np.ones(1))
            if coef is not None and not (coef.ndim == 1 and coef.size > 0 and _finite(coef)):
                raise MapError(
                    f"calibration.{name}.coef is not a vector of finite coefficients (shape {coef.shape}); "
                    "run 'vpr calibrate' again or rebuild the map"
                )
            if not (scale.shape == (1,) and _finite(scale) and 1e-6 <= float(scale[0]) <= 1e6):
                raise MapError(
                    f"calibration.{name}.covariance_scale must be one positive scale (shape {scale.shape}); "
                    "run 'vpr calibrate' again or rebuild the map"
                )
            out[name] = cls(None if coef is None else np.array(coef, np.float64), float(scale[0]))
        return out


#: Where a map's headings came from: the geotags (a CSV ``heading`` column or the file name's heading field), a
#: bag's orientation, or the direction of travel between consecutive geotags (an estimate, not a measurement).
HEADING_SOURCES = ("geotags", "bag", "travel")


@dataclass
class Headings:
    """Each map image's camera heading as ENU yaw (radians, 0 = east, counter-clockwise), NaN where unknown."""

    yaw: np.ndarray  # (N,) float64
    source: str = "geotags"

    def __post_init__(self) -> None:
        if self.source not in HEADING_SOURCES:
            raise MapError(f"heading source '{self.source}' unknown; one of {', '.join(HEADING_SOURCES)}")

    @classmethod
    def from_compass(cls, degrees: np.ndarray, source: str = "geotags") -> Headings | None:
        """From compass headings (degrees clockwise from north, as geotags give them); None when all unknown."""
        deg = np.asarray(degrees, np.float64)
        if not np.isfinite(deg).any():
            return None
        return cls(np.radians(90.0 - deg), source)

    @classmethod
    def from_travel(
        cls, east: np.ndarray, north: np.ndarray, order: np.ndarray, min_step_m: float = 0.2
    ) -> Headings | None:
        """The direction of travel between consecutive geotags (central differences along the capture ``order``):
        a forward camera's heading, marked ``travel`` (a side camera's differs by its mount). NaN where the
        neighbours are closer than ``min_step_m``; None for fewer than two images."""
        if len(order) < 2:
            return None
        xy = np.stack([np.asarray(east, np.float64), np.asarray(north, np.float64)], 1)[order]
        d = np.empty_like(xy)
        d[1:-1] = xy[2:] - xy[:-2]
        d[0], d[-1] = xy[1] - xy[0], xy[-1] - xy[-2]
        yaw_ordered = np.where(np.hypot(d[:, 0], d[:, 1]) >= min_step_m, np.arctan2(d[:, 1], d[:, 0]), np.nan)
        yaw = np.full(len(order), np.nan)
        yaw[order] = yaw_ordered
        return cls(yaw, "travel") if np.isfinite(yaw).any() else None

    def to_tensors(self) -> Arrays:
        return {"heading.yaw": np.ascontiguousarray(self.yaw, dtype=np.float64)}

    @property
    def conf(self) -> dict[str, str]:
        return {"source": self.source}

    @classmethod
    def from_tensors(cls, arrays: Arrays, n: int, conf: dict[str, Any] | None) -> Headings | None:
        yaw = arrays.get("heading.yaw")
        if yaw is None:
            return None
        yaw = np.array(yaw, np.float64)
        _need(yaw.shape == (n,), f"heading.yaw has shape {yaw.shape} for {n} images")
        _need(not np.isinf(yaw).any() and bool((np.abs(yaw[np.isfinite(yaw)]) <= 4 * math.pi).all()),
              "heading.yaw holds Inf or values beyond 4 pi")  # fmt: skip
        source = (conf or {}).get("source", "geotags")
        _need(source in HEADING_SOURCES, f"heading source '{source}' unknown")
        return cls(yaw, source)
