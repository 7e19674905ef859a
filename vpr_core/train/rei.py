"""DHE's re-projection error of inliers (REI) loss, as the reference defines it.

For each query-positive pair: mutual-NN matches of the grids; RANSAC (OpenCV,
threshold 1.5 cells) on them gives the inlier count K; the loss is the mean of the
K smallest reprojection errors of the matches under the *predicted* homography.
Pairs with fewer than 4 matches, or where RANSAC finds nothing, add 0. The head is
supervised by RANSAC's inlier count alone - no ground-truth homography.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..rerank.dhe import DHEHead, correlation
from ..rerank.geometry import dlt, grid_keypoints, mutual_nn, reprojection_errors


def pool_grid(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    w, h = grid
    return F.normalize(F.adaptive_avg_pool2d(x, (h, w)), dim=1)


def rei_loss(
    head: DHEHead,
    fq: torch.Tensor,
    fp: torch.Tensor,
    frame: tuple[int, int],
    head_grid: tuple[int, int],
    match_grid: tuple[int, int],
    generator: torch.Generator | None = None,
    ransac_cells: float = 1.5,
) -> tuple[torch.Tensor, dict[str, float]]:
    """fq, fp (B, C, gh, gw) frozen dense features of queries and positives -> (loss, stats)."""
    b = fq.shape[0]
    pts = head(correlation(pool_grid(fq, head_grid), pool_grid(fp, head_grid)))
    weights = (
        torch.rand(b, 4, generator=generator) ** 0.1
    )  # as the reference: random DLT weights avoid degenerate solves
    h = dlt(pts[:, :4], pts[:, 4:], weights.to(pts))
    mq, mp = pool_grid(fq, match_grid), pool_grid(fp, match_grid)
    mw, mh = match_grid
    kp = grid_keypoints(mh, mw, frame, device=fq.device)
    thr = ransac_cells * frame[0] / mw
    losses, inliers = [], []
    for i in range(b):  # RANSAC is per pair; everything differentiable above is batched
        nn_q, mask = mutual_nn(mq[i].flatten(1).t(), mp[i : i + 1].flatten(2).transpose(1, 2))
        idx = torch.nonzero(mask[0]).squeeze(1)
        if len(idx) < 4:
            losses.append(pts.sum() * 0.0)
            inliers.append(0)
            continue
        src, dst = kp[idx].cpu().numpy(), kp[nn_q[0, idx]].cpu().numpy()
        hr, inl = cv2.findHomography(src, dst, cv2.RANSAC, thr)
        k = int(inl.sum()) if hr is not None and inl is not None else 0
        inliers.append(k)
        if k == 0:
            losses.append(pts.sum() * 0.0)
            continue
        err = reprojection_errors(h[i : i + 1], kp[idx], nn_q[:, idx], kp)[0]
        err = torch.where(torch.isfinite(err), err, torch.full_like(err, 1e4))
        losses.append(torch.topk(err, k, largest=False).values.mean())
    loss = torch.stack(losses).mean()
    return loss, {"mean_inliers": float(np.mean(inliers))}
