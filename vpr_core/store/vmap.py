"""``VprMap``: a map in memory, with every stored part typed (``store.parts``); ``map.format`` reads and writes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..geodesy import LocalFrame
from .parts import Calibration, DheHead, GridStore, Headings, SparseKeypoints

__all__ = ["VprMap"]


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
    model_state: dict[str, np.ndarray] = field(default_factory=dict)  # what the model learnt on this map (vocabulary)
    info: dict[str, Any] = field(default_factory=dict)  # provenance: source, created, counts
    grids: GridStore | None = None  # dense grids for ransac / dhe / geowarp
    sparse: SparseKeypoints | None = None  # keypoints for the learned matchers
    dhe_head: DheHead | None = None  # a DHE head adapted to this map (``vpr map adapt``)
    calibrations: dict[str, Calibration] = field(default_factory=dict)  # per re-ranker (``vpr calibrate``)
    headings: Headings | None = None  # per-image camera heading
    index: dict[str, Any] | None = None  # a stored search index: its conf (kind, nprobe, ...) and "shards"

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
        return (float(self.origin[0]), float(self.origin[1]), float(self.origin[2]))

    def parts(self) -> list[str]:
        """The optional parts this map stores, by field name."""
        have = {"grids": self.grids, "sparse": self.sparse, "dhe_head": self.dhe_head, "headings": self.headings}
        return [k for k, v in have.items() if v is not None] + [f"calibration.{n}" for n in sorted(self.calibrations)]
