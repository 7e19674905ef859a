"""VLAD aggregation (Jegou et al.) in torch, with its vocabulary learned by faiss k-means.

Tensor-first so the same module exports to ONNX/TensorRT with the map's vocabulary
baked in. Normalisation follows Arandjelovic & Zisserman "All about VLAD":
signed square root (power), per-cluster L2 (intra), then global L2; an optional
PCA-whitening learned on the database descriptors follows.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VprError


def kmeans(x: np.ndarray, k: int, iters: int = 25, seed: int = 0) -> np.ndarray:
    """Spherical-friendly k-means on L2-normalised rows; returns (k, D) float32 centres."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) < k:
        raise VprError(
            f"clusters={k}: the database gives only {len(x)} local features to learn a {k}-word vocabulary; "
            f"lower --set clusters (at most {len(x)}) or add images"
        )
    # one thread: faiss's threaded k-means gives a vocabulary that depends on the thread count
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        km = faiss.Kmeans(x.shape[1], k, niter=iters, seed=seed, verbose=False, spherical=False)
        km.train(x)
    finally:
        faiss.omp_set_num_threads(threads)
    return km.centroids.astype(np.float32)


class VLAD(nn.Module):
    def __init__(self, clusters: int, dim: int, power_norm: bool = True, intra_norm: bool = True) -> None:
        super().__init__()
        self.power_norm = power_norm
        self.intra_norm = intra_norm
        self.register_buffer("centers", torch.zeros(clusters, dim))

    @property
    def out_dim(self) -> int:
        return int(self.centers.numel())

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """feats (B, N, D) local descriptors -> (B, K*D) VLAD; ``mask`` (B, N) weights, optional."""
        c = self.centers.to(feats.dtype)
        assign = F.one_hot((feats @ c.t()).argmax(dim=-1), c.shape[0]).to(feats.dtype)  # (B, N, K) hard
        if mask is not None:
            assign = assign * mask.unsqueeze(-1)
        v = assign.transpose(1, 2) @ feats - assign.sum(dim=1).unsqueeze(-1) * c  # (B, K, D) residual sums
        if self.power_norm:
            v = v.sign() * v.abs().clamp(min=1e-12).sqrt()
        if self.intra_norm:
            v = F.normalize(v, dim=-1)
        return F.normalize(v.flatten(1), dim=-1)


class PCAWhitening(nn.Module):
    """y = L2norm(W (x - mean)); W rows are principal axes divided by sqrt(eigenvalue)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim_in))
        self.register_buffer("proj", torch.zeros(dim_out, dim_in))

    def fit(self, x: np.ndarray, eps: float = 1e-6) -> None:
        x = x.astype(np.float64)
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        k = self.proj.shape[0]
        if k > len(s):
            raise ValueError(f"PCA to {k} dims needs at least {k + 1} database images, got {len(x)}")
        var = s[:k] ** 2 / max(len(x) - 1, 1)
        proj = vt[:k] / np.sqrt(var + eps)[:, None]
        self.mean.copy_(torch.from_numpy(mean).float())
        self.proj.copy_(torch.from_numpy(proj).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize((x - self.mean.to(x.dtype)) @ self.proj.to(x.dtype).t(), dim=-1)
