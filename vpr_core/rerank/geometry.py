"""Tensor-first geometry for re-ranking: grid keypoints, mutual nearest neighbours, homographies.

Dense local features live on a regular grid; a cell's keypoint is its centre in a
nominal image frame (``frame`` = (W, H) pixels), as in the DHE reference where a
24x24 grid of 16-px patches covers a 384x384 image.
"""

from __future__ import annotations

import kornia
import torch


def grid_keypoints(gh: int, gw: int, frame: tuple[int, int], device=None) -> torch.Tensor:
    """(gh*gw, 2) x, y centres of the cells, row-major (x fastest), in ``frame`` pixels."""
    w, h = frame
    xs = (torch.arange(gw, device=device, dtype=torch.float32) + 0.5) * (w / gw)
    ys = (torch.arange(gh, device=device, dtype=torch.float32) + 0.5) * (h / gh)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def mutual_nn(q: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mutual nearest neighbours by dot product.

    q (L, C) query descriptors, c (K, M, C) candidates' -> (nn_of_q (K, L), mutual mask (K, L)).
    Query cell i matches candidate cell nn_of_q[k, i] where mask[k, i].
    """
    sim = torch.matmul(c, q.t())  # (K, M, L): one batched GEMM
    nn_q = sim.argmax(dim=1)  # best candidate cell per query cell, (K, L)
    nn_c = sim.argmax(dim=2)  # best query cell per candidate cell, (K, M)
    back = torch.gather(nn_c, 1, nn_q)
    mask = back == torch.arange(q.shape[0], device=q.device).unsqueeze(0)
    return nn_q, mask


def transfer(h: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Apply homographies h (K, 3, 3) to points (K, N, 2) or (N, 2) -> (K, N, 2)."""
    if pts.dim() == 2:
        pts = pts.unsqueeze(0).expand(h.shape[0], -1, -1)
    return kornia.geometry.linalg.transform_points(h, pts)


def reprojection_errors(h: torch.Tensor, kq: torch.Tensor, nn_q: torch.Tensor, kc: torch.Tensor) -> torch.Tensor:
    """Distance between H(query keypoint) and its matched candidate keypoint: (K, L) pixels."""
    proj = transfer(h, kq)  # (K, L, 2)
    target = kc[nn_q]  # (K, L, 2)
    err = (proj - target).norm(dim=-1)
    return torch.nan_to_num(err, nan=float("inf"), posinf=float("inf"))


def count_inliers(
    h: torch.Tensor, kq: torch.Tensor, nn_q: torch.Tensor, mask: torch.Tensor, kc: torch.Tensor, threshold: float
) -> torch.Tensor:
    """Mutual matches whose reprojection error under h is below ``threshold``: (K,) counts."""
    err = reprojection_errors(h, kq, nn_q, kc)
    return ((err < threshold) & mask).sum(dim=1)


def dlt(points_src: torch.Tensor, points_dst: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Homography from 4+ correspondences (B, N, 2) -> (B, 3, 3) by DLT (kornia)."""
    return kornia.geometry.homography.find_homography_dlt(points_src, points_dst, weights)
