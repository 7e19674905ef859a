"""Re-ranker interface: dense grid features of the query and of K candidates -> scores.

Re-rankers get the query's local feature grid (C, gh, gw) and the candidates' grids
(K, C, gh, gw) - the same features the map stores - and return one score per
candidate (higher is better) plus an inlier count. The Localizer re-orders the
top ``top_k`` candidates by score.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..config import check_options
from ..errors import VprError
from ..registry import Registry
from ..store.vmap import VprMap


@dataclass
class RerankResult:
    scores: torch.Tensor  # (K,) higher is better
    inliers: torch.Tensor  # (K,) int; geometric support (0 where the method has none)
    parts: dict[str, torch.Tensor] = field(default_factory=dict)  # (K,) inputs of a score fused over the K

    def head(self, k: int) -> RerankResult:
        """The first ``k`` candidates' result; a fused score must be re-made with ``Reranker.fuse`` (its units
        depend on the K candidates)."""
        return RerankResult(self.scores[:k], self.inliers[:k], {n: v[:k] for n, v in self.parts.items()})


#: What a re-ranker may need of a map: its dense grids, its sparse keypoints, or its image files on disk.
MAP_NEEDS = ("grid", "sparse", "images")
MAP_PART_NAMES = {"grid": "local features (dense grids)", "sparse": "sparse keypoints", "images": "image folder"}


def rebuild_hint(needs: frozenset[str]) -> str:
    """The ``vpr map build`` flag that stores what a re-ranker ``needs``."""
    if {"grid", "sparse"} <= needs:
        return "--local both"
    if "sparse" in needs:
        return "--local sparse (or --local both to keep the dense grids too)"
    return "--local grid"


class Reranker:
    """A re-ranking method; its capabilities are declared here, on the class, and read from nowhere else."""

    name: ClassVar[str] = ""
    default_conf: ClassVar[dict[str, Any]] = {"top_k": 10}
    #: What it reads of the map (``MAP_NEEDS``). Only "grid": it scores the grids (``score()``); otherwise it takes
    #: the query image and map rows (``rerank_image()``).
    needs: ClassVar[frozenset[str]] = frozenset({"grid"})
    counts_inliers: ClassVar[bool] = True  # False: scores carry no inlier count (GeoWarp)
    #: What its ``weights`` option loads ("" = it takes none); methods sharing a kind share a head (a DHE head serves
    #: dhe and dhe+lighterglue).
    weights_kind: ClassVar[str] = ""
    #: ``reranker: auto``'s preference, most accurate first (0); None = never chosen automatically.
    auto_rank: ClassVar[int | None] = None
    #: auto takes it only at its default K where the map's grids offer a grid re-ranker instead (with fewer
    #: candidates it falls below dhe); on a map without grids any K from ``budget.MIN_K`` will do.
    auto_full_k: ClassVar[bool] = False
    #: options' rules (``config.check_option``: a RULES name, "pair>=N", a set of names); every option is checked
    #: against the type of its ``default_conf`` value at construction
    ranges: ClassVar[dict[str, Any]] = {}

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        rules = {"top_k": ">=1", **self.ranges}
        self.conf = check_options(f"re-ranker '{self.name}'", copy.deepcopy(self.default_conf), conf, rules)
        self.trained = True
        self.source = "n/a"  # where the weights came from, for reports and diagnostics
        self.device = torch.device("cpu")
        self._frame: tuple[int, int] | None = None

    @classmethod
    def takes_weights(cls) -> bool:
        return bool(cls.weights_kind)

    @classmethod
    def missing(cls, vmap: VprMap) -> list[str]:
        """The stored parts it needs that ``vmap`` lacks (the image folder is checked at ``bind``)."""
        have = {"grid": vmap.grids is not None, "sparse": vmap.sparse is not None, "images": True}
        return [n for n in MAP_NEEDS if n in cls.needs and not have[n]]

    @property
    def needs_local(self) -> bool:
        """Scores the map's dense grids: the localizer gathers the K candidates' grids for it."""
        return "grid" in self.needs

    @property
    def scores_image(self) -> bool:
        """Takes the query image and map rows (learned matchers) rather than grids alone."""
        return bool(self.needs - {"grid"})

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

    def bind(self, vmap: VprMap, device: torch.device | str = "cpu", frame: tuple[int, int] | None = None) -> Reranker:
        """Serve ``vmap`` on ``device``, with ``frame`` (the global model's input size) as the nominal frame; once,
        at start-up."""
        self.device = torch.device(device)
        self._frame = (int(frame[0]), int(frame[1])) if frame is not None else None
        self._bind_map(vmap)
        return self

    def _bind_map(self, vmap: VprMap) -> None:
        """Take map-specific state (e.g. an adapted head) and move weights to ``self.device``; default: none."""

    def score(self, q: torch.Tensor, cands: torch.Tensor) -> RerankResult:
        raise NotImplementedError

    def rerank_image(self, rgb, ids) -> RerankResult:
        """Re-rankers with ``scores_image``: score map rows ``ids`` for the query image ``rgb`` (uint8 RGB)."""
        raise NotImplementedError

    def rerank(self, rgb, qloc: torch.Tensor | None, ids, cands: torch.Tensor | None, sims) -> RerankResult:
        """The localizer's one call per frame: the query image ``rgb``, its grid ``qloc`` and the candidates' grids
        ``cands`` (with ``needs_local``), map rows ``ids`` and their global similarities ``sims`` (K,)."""
        res = self.rerank_image(rgb, ids) if self.scores_image else self.score(qloc, cands)
        return self.fuse(res, sims)

    def fuse(self, res: RerankResult, sims) -> RerankResult:
        """The ranking score from the method's evidence and the K global similarities; by default the method's
        own score (it does not depend on the other candidates, so a slice of a deeper result stays valid)."""
        return res


def spread_units(x: torch.Tensor) -> torch.Tensor:
    """Scores relative to the best, in units of their spread over the K candidates (0 for the best; all 0 when
    the K are equal): makes scores of different methods and maps commensurable without a per-map scale."""
    x = x.double()
    sd = x.std(unbiased=False) if x.numel() > 1 else x.new_zeros(())
    return (x - x.max()) / sd if float(sd) > 1e-12 else torch.zeros_like(x)


RERANKERS: Registry[type[Reranker]] = Registry("re-ranker")


@RERANKERS.register("none")
class NoRerank(Reranker):
    """Keep faiss's order: the global-descriptor similarity is the score."""

    name = "none"
    needs = frozenset()
