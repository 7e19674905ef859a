"""``reranker: auto``: the most accurate re-ranker whose per-frame cost, measured here at start-up, fits the rate.

Accuracy order (measured on real data, README "Re-rankers"): dhe+lighterglue > lighterglue at its default K (10)
> dhe > ransac > none, and for one method more candidates re-ranked is no worse. So the choice is made by
*time* on this device: the global model and the search are timed on a frame of the model's input size, each
re-ranker's cost per candidate on what the map stores for it (its grids; for the learned matcher its sparse
keypoints, against the frame's own extraction), and the largest K that fits ``1 / target_rate`` (with headroom
for decoding and publishing) is taken, preferring dhe+lighterglue (maps with grids and sparse keypoints), then
lighterglue (maps with sparse keypoints; beside grids only where its default K fits: with fewer candidates it
falls below dhe), then dhe, then ransac, then none. A GPU therefore gets the learned matcher or a larger K than a
2-core CPU, and a slower robot computer falls back to a cheaper method rather than missing its rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import VprError
from ..rerank import RERANKERS, build_reranker
from ..rerank.base import Reranker
from ..store.vmap import VprMap

__all__ = ["AUTO", "AUTO_WEIGHTS_KIND", "AutoChoice", "auto_options", "candidates", "choose_reranker"]

AUTO = "auto"
MIN_K = 4  # fewer candidates than this is hardly a re-ranking
#: The weights given with ``reranker: auto`` are a DHE head: every candidate method that runs one gets them.
AUTO_WEIGHTS_KIND = "dhe-head"


def candidates() -> list[type[Reranker]]:
    """The re-rankers auto may choose, most accurate first (each class declares its ``auto_rank``; README
    "Re-rankers" gives the R@1 behind the order)."""
    ranks = {n: RERANKERS.get(n).auto_rank for n in RERANKERS.names()}
    return [RERANKERS.get(n) for n, r in sorted(ranks.items(), key=lambda kv: kv[1] or 0) if r is not None]


def auto_options(cls: type[Reranker], given: dict[str, Any]) -> dict[str, Any]:
    """The options given with auto that apply to ``cls``: those it declares, and the weights when they are its
    kind (a DHE head serves dhe and dhe+lighterglue, never LighterGlue's own weights)."""
    return {
        k: v
        for k, v in given.items()
        if k in cls.default_conf and (k != "weights" or cls.weights_kind == AUTO_WEIGHTS_KIND)
    }


HEADROOM = 0.75  # share of the frame period the pipeline may use; the rest is decoding, DDS, publishing, jitter
# (measured on 2 cores with 640x480 frames: decode + transport ~12 % of a 100 ms period, start-up timing ~8 % low)


@dataclass
class AutoChoice:
    reranker: str
    top_k: int
    budget_ms: float
    base_ms: float
    per_candidate_ms: dict[str, float] = field(default_factory=dict)
    max_k: int = 0  # the method's default K: the most the feedback may give it
    recent: list[float] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # the chosen method's options (K included)

    def observe(self, total_ms: float, every: int = 10) -> int:
        """Feedback on real frames (decoding and cold caches included): every ``every`` frames, one candidate fewer
        while the median frame exceeds the budget, one more while it stays under 70 % of it; returns K."""
        if self.reranker == "none":
            return 0
        self.recent.append(total_ms)
        if len(self.recent) >= every:
            med = float(np.median(self.recent))
            self.recent.clear()
            if med > self.budget_ms and self.top_k > MIN_K:
                self.top_k -= 1
            elif med < 0.7 * self.budget_ms and self.top_k < self.max_k:
                self.top_k += 1
        return self.top_k

    def summary(self) -> str:
        costs = ", ".join(f"{k} {v:.1f} ms/candidate" for k, v in self.per_candidate_ms.items())
        k = f" K={self.top_k}" if self.reranker != "none" else ""
        return (
            f"reranker auto -> {self.reranker}{k}: frame budget {self.budget_ms:.0f} ms, global+search "
            f"{self.base_ms:.0f} ms, {costs or 'no re-ranker possible'}"
        )


def _median_ms(fn, repeat: int = 5) -> float:
    fn()  # warm-up: allocations, lazy init, cold caches (a first start measured once is often 2x slow)
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def choose_reranker(
    target_rate: float, runner, extractor, index, local: torch.Tensor | None, vmap: VprMap, given: dict[str, Any]
) -> AutoChoice:
    """Time this device and pick (re-ranker, K) for ``target_rate`` frames per second; ``given``: the options
    configured with auto (``auto_options`` says which apply to each method)."""
    known = {k for cls in candidates() for k in cls.default_conf}
    unknown = sorted(set(given) - known)
    if unknown:
        raise VprError(
            f"reranker auto: option(s) {unknown} belong to none of the re-rankers it chooses from; known: "
            f"{', '.join(sorted(known))}"
        )
    w, h = extractor.model.input_size
    frame = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    x = extractor.to_tensor([frame])
    desc = [None]

    def base() -> None:
        desc[0], _ = runner(x, local=local is not None)
        index.search(desc[0], 10)

    base_ms = _median_ms(base)
    budget = 1e3 / target_rate * HEADROOM
    choice = AutoChoice("none", 0, budget, base_ms)
    if len(vmap) < 3 or (local is None and vmap.sparse is None):
        return choice
    device = extractor.device
    n = min(len(vmap) - 1, 8)
    q = local[0].to(device, torch.float32) if local is not None else None  # map row 0 stands for the query
    grids = local[1 : 1 + n].to(device, torch.float32) if local is not None else None  # rows 1..n: candidates
    for cls in candidates():
        if cls.missing(vmap) or ("grid" in cls.needs and local is None):
            continue
        name = cls.name
        rr = build_reranker(name, auto_options(cls, given))
        rr.bind(vmap, device, extractor.model.input_size)
        if not rr.trained:  # an untrained head re-ranks meaninglessly: never chosen automatically
            continue

        def run(ids: np.ndarray, rr=rr) -> None:
            """One frame's re-ranking of map rows ``ids`` as the localizer calls it (sparse matchers extract the
            frame's keypoints and match the map's stored ones; grid re-rankers score the stored grids)."""
            dense = rr.needs_local
            sims = torch.ones(len(ids), dtype=torch.float64)
            rr.rerank(frame, q if dense else None, ids, grids[: len(ids)] if dense else None, sims)

        t_small = _median_ms(lambda run=run: run(np.arange(1, 3)))
        t_large = _median_ms(lambda run=run: run(np.arange(1, 1 + n)))
        per = max((t_large - t_small) / max(n - 2, 1), 1e-3)
        fixed = max(t_small - 2 * per, 0.0)
        choice.per_candidate_ms[name] = per
        k = int((budget - base_ms - fixed) // per)
        max_k = int(rr.default_conf["top_k"])
        if k >= (max_k if cls.auto_full_k and local is not None else MIN_K):
            choice.max_k = max_k
            choice.reranker, choice.top_k = name, min(k, max_k)
            choice.options = {"top_k": choice.top_k, **auto_options(cls, given)}
            return choice
    return choice
