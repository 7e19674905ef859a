"""Re-ranker interface: dense grid features of the query and of K candidates -> scores.

Re-rankers get the query's local feature grid (C, gh, gw) and the candidates' grids
(K, C, gh, gw) - the same features the map stores - and return one score per
candidate (higher is better) plus an inlier count. The Localizer re-orders the
top ``top_k`` candidates by score.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..errors import VprError
from ..registry import Registry


@dataclass
class RerankResult:
    scores: torch.Tensor  # (K,) higher is better
    inliers: torch.Tensor  # (K,) int; geometric support (0 where the method has none)
    parts: dict[str, torch.Tensor] = field(default_factory=dict)  # (K,) inputs of a score fused over the K

    def head(self, k: int) -> RerankResult:
        """The first ``k`` candidates' result; a fused score must be re-made with ``Reranker.fuse`` (its units
        depend on the K candidates)."""
        return RerankResult(self.scores[:k], self.inliers[:k], {n: v[:k] for n, v in self.parts.items()})


class Reranker:
    name: ClassVar[str] = ""
    default_conf: ClassVar[dict[str, Any]] = {"top_k": 10}
    needs_local: ClassVar[bool] = True  # scores the dense grids the map stores (score())
    needs_sparse: ClassVar[bool] = False  # matches sparse keypoints: the query image and map rows (rerank_image())
    counts_inliers: ClassVar[bool] = True  # False: scores carry no inlier count (GeoWarp)
    #: numeric options' allowed ranges (keys of RANGES), checked with the types of ``default_conf`` at construction
    ranges: ClassVar[dict[str, str]] = {}

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        unknown = set(conf or {}) - set(self.default_conf)
        if unknown:
            raise VprError(
                f"re-ranker '{self.name}': unknown option(s) {sorted(unknown)}; known: {sorted(self.default_conf)}"
            )
        self.conf = {**copy.deepcopy(self.default_conf), **(conf or {})}
        for key, rule in {"top_k": ">=1", **self.ranges}.items():
            self.conf[key] = checked_number(self.name, key, self.conf[key], self.default_conf[key], rule)
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

    def rerank(self, rgb, qloc: torch.Tensor | None, ids, cands: torch.Tensor | None, sims) -> RerankResult:
        """The localizer's one call per frame: the query image ``rgb``, its grid ``qloc`` and the candidates' grids
        ``cands`` (with ``needs_local``), map rows ``ids`` and their global similarities ``sims`` (K,)."""
        res = self.rerank_image(rgb, ids) if self.needs_sparse else self.score(qloc, cands)
        return self.fuse(res, sims)

    def fuse(self, res: RerankResult, sims) -> RerankResult:
        """The ranking score from the method's evidence and the K global similarities; by default the method's
        own score (it does not depend on the other candidates, so a slice of a deeper result stays valid)."""
        return res


RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    ">0": (lambda v: v > 0, "above 0"),
    ">=0": (lambda v: v >= 0, "0 or more"),
    ">=1": (lambda v: v >= 1, "1 or more"),
    "(0,1)": (lambda v: 0 < v < 1, "between 0 and 1"),
}


def checked_number(method: str, key: str, value: Any, default: Any, rule: str) -> int | float:
    """A numeric re-ranker option as the type of its default, in its range; else one line naming the option.
    Why: options arrive as text from --rerank-set and ROS parameters, and a bad one must fail at start-up, not as a
    traceback on the first frame."""
    ok, what = RANGES[rule]
    want_int = isinstance(default, int) and not isinstance(default, bool)
    try:
        if isinstance(value, bool):
            raise ValueError
        v = float(value)
        if want_int and not v.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise VprError(
            f"re-ranker '{method}': option {key}={value!r} is not {'an integer' if want_int else 'a number'}; "
            f"give {'an integer' if want_int else 'a number'} {what} (default {default})"
        ) from None
    if not ok(v):
        raise VprError(f"re-ranker '{method}': option {key}={value!r} must be {what} (default {default})")
    return int(v) if want_int else v


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
    needs_local = False
