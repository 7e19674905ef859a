"""Re-ranker interface: dense grid features of the query and of K candidates -> scores.

Re-rankers get the query's local feature grid (C, gh, gw) and the candidates' grids
(K, C, gh, gw) - the same features the map stores - and return one score per
candidate (higher is better) plus an inlier count. The Localizer re-orders the
top ``top_k`` candidates by score.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..errors import VprError
from ..registry import Registry


@dataclass
class RerankResult:
    scores: torch.Tensor  # (K,) higher is better
    inliers: torch.Tensor  # (K,) int; geometric support (0 where the method has none)


class Reranker:
    name: ClassVar[str] = ""
    default_conf: ClassVar[dict[str, Any]] = {"top_k": 10}
    needs_local: ClassVar[bool] = True  # scores the dense grids the map stores (score())
    needs_sparse: ClassVar[bool] = False  # matches sparse keypoints: the query image and map rows (rerank_image())
    counts_inliers: ClassVar[bool] = True  # False: scores carry no inlier count (GeoWarp)

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        unknown = set(conf or {}) - set(self.default_conf)
        if unknown:
            raise VprError(
                f"re-ranker '{self.name}': unknown option(s) {sorted(unknown)}; known: {sorted(self.default_conf)}"
            )
        self.conf = {**copy.deepcopy(self.default_conf), **(conf or {})}
        self.trained = True
        self.source = "n/a"  # where the weights came from, for reports and diagnostics
        self.device = torch.device("cpu")
        self._frame: tuple[int, int] | None = None

    @property
    def top_k(self) -> int:
        return int(self.conf["top_k"])

    @property
    def frame(self) -> tuple[int, int]:
        """(w, h) nominal frame of pixel thresholds and points: ``conf['frame']`` if given, else the bound one."""
        if self.conf.get("frame"):
            w, h = self.conf["frame"]
            return int(w), int(h)
        if self._frame is None:
            raise VprError(f"re-ranker '{self.name}' has no frame: set conf['frame'] or bind() it to a map first")
        return self._frame

    def bind(self, vmap, device: torch.device | str = "cpu", frame: tuple[int, int] | None = None) -> Reranker:
        """Serve ``vmap`` on ``device``, with ``frame`` (the global model's input size) as the nominal frame; once,
        at start-up."""
        self.device = torch.device(device)
        self._frame = (int(frame[0]), int(frame[1])) if frame is not None else None
        self._bind_map(vmap)
        return self

    def _bind_map(self, vmap) -> None:
        """Take map-specific state (e.g. an adapted head) and move weights to ``self.device``; default: none."""

    def score(self, q: torch.Tensor, cands: torch.Tensor) -> RerankResult:
        raise NotImplementedError

    def rerank_image(self, rgb, ids) -> RerankResult:
        """Re-rankers with ``needs_sparse``: score map rows ``ids`` for the query image ``rgb`` (uint8 RGB)."""
        raise NotImplementedError


RERANKERS: Registry[type[Reranker]] = Registry("re-ranker")


@RERANKERS.register("none")
class NoRerank(Reranker):
    """Keep faiss's order: the global-descriptor similarity is the score."""

    name = "none"
    needs_local = False
