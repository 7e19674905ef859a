"""Compact local grids: product quantisation of the dense re-ranking grid, decoded on the device per frame.

A map image's dense grid (40x30 cells of 64-d unit vectors) costs 153.6 KB as float16. Each cell is rotated
(OPQ) and cut into ``m`` sub-vectors, each replaced by the index of its nearest of 256 centroids learnt from the
map's own grids: ``m`` bytes per cell (m=8: 9.6 KB per image, 16x smaller). At query time only the K candidates'
codes are gathered and decoded (one table lookup, one rotation) where the re-ranker runs; the decoded cells are
re-normalised, since RANSAC/DHE/GeoWarp compare them by cosine. bench/bench_maps.py measures R@1 against the
float16 grids.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
import torch

from ..errors import MapError
from ..io.files import tensor_view
from ..store.parts import GridCodec, GridStore

__all__ = [
    "GRID_CODECS",
    "GridCodec",
    "PQ_DEFAULTS",
    "PQ_MIN_CELLS",
    "PQ_M_WITH_SPARSE",
    "LocalGrids",
    "decode_pq",
    "encode_pq",
    "train_pq",
]

#: How a map stores its dense grids: PQ codes (default) or float16.
GRID_CODECS = ("pq", "fp16")
#: PQ: sub-quantisers per cell and how many cells train the codebook (sampled from the map's own grids).
PQ_DEFAULTS: dict[str, Any] = {"m": 8, "train_cells": 131072, "sample_images": 256, "seed": 0}
#: Bytes per cell when the map also stores sparse keypoints (``--local both``, already ~66 KB/image): the grids get
#: back DHE's precision for ``dhe+lighterglue`` (corridor R@1 at K=10, mean over 4 codebooks: m=8 92.6,
#: m=32 95.7, float16 93.7; bench/bench_maps.py --both) for 38.4 KB instead of 9.6 KB per image.
PQ_M_WITH_SPARSE = 32


#: Fewer cells than this in the whole map: a codebook (64 KB) would cost more than it saves; float16 is kept.
PQ_MIN_CELLS = 256 * 39


def _cells(grids: np.ndarray) -> np.ndarray:
    """(N, C, gh, gw) -> (N*gh*gw, C) float32 rows, one per cell."""
    n, c = grids.shape[:2]
    return np.ascontiguousarray(np.moveaxis(np.asarray(grids), 1, -1).reshape(-1, c), dtype=np.float32)


def train_pq(grids: np.ndarray, m: int = 8, train_cells: int = 131072, seed: int = 0) -> GridCodec:
    """OPQ rotation and codebook (m, 256, C/m) learnt from sample grids (N, C, gh, gw)."""
    x = _cells(grids)
    c = x.shape[1]
    if c % m:
        raise MapError(f"grid channels {c} are not divisible by pq m={m}; choose m among the divisors of {c}")
    if len(x) < 256:
        raise MapError(f"PQ needs at least 256 grid cells to learn its codebook, got {len(x)}; use --grid-codec fp16")
    rng = np.random.default_rng(seed)
    if len(x) > train_cells:
        x = x[np.sort(rng.choice(len(x), train_cells, replace=False))]
    opq = faiss.OPQMatrix(c, m)
    opq.niter = 25
    opq.train(x)
    rotation = faiss.vector_to_array(opq.A).reshape(c, c).astype(np.float32)
    pq = faiss.ProductQuantizer(c, m, 8)
    pq.cp.seed = seed
    pq.train(np.ascontiguousarray(x @ rotation.T))
    book = faiss.vector_to_array(pq.centroids).reshape(m, 256, c // m).astype(np.float32)
    return GridCodec(book, rotation)


def encode_pq(grids: np.ndarray | torch.Tensor, codec: GridCodec) -> np.ndarray:
    """Grids (B, C, gh, gw) -> codes (B, gh, gw, m) uint8: each rotated sub-vector's nearest centroid."""
    g = (grids if isinstance(grids, torch.Tensor) else tensor_view(grids)).float()
    b, c, gh, gw = g.shape
    cb = torch.from_numpy(codec.codebook)
    m, k, ds = cb.shape
    cells = g.permute(0, 2, 3, 1).reshape(-1, c) @ torch.from_numpy(codec.rotation).T
    x = cells.reshape(-1, m, ds).transpose(0, 1)  # (m, cells, ds)
    d = (cb * cb).sum(-1)[:, None, :] - 2 * torch.bmm(x, cb.transpose(1, 2))  # |c|^2 - 2 x.c per sub-space
    codes = d.argmin(-1).transpose(0, 1)  # (cells, m)
    return codes.to(torch.uint8).reshape(b, gh, gw, m).numpy()


def decode_pq(codes: torch.Tensor, codebook: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Codes (K, gh, gw, m) uint8 -> unit-norm grids (K, C, gh, gw) float32, on the codes' device."""
    m, k, ds = codebook.shape
    idx = codes.long() + torch.arange(m, device=codes.device) * k  # row of each sub-vector in the flat codebook
    sub = torch.nn.functional.embedding(idx, codebook.reshape(m * k, ds))  # (K, gh, gw, m, ds): one gather
    cells = torch.nn.functional.normalize(sub.flatten(-2) @ rotation, dim=-1)  # rotated back: rotation is orthonormal
    return cells.permute(0, 3, 1, 2).contiguous()


class LocalGrids:
    """A map's dense grids on one device, gathered per frame: float16 grids as stored, or PQ codes decoded there.

    ``device`` holds the stored form (codes are 16x smaller than the grids, so a map's codes fit on a GPU whose
    grids would not); ``gather`` returns float32 grids of the K candidates on ``out``.
    """

    def __init__(self, grids: GridStore | None, device: torch.device | str = "cpu") -> None:
        device = torch.device(device)
        if grids is None:
            raise MapError("the map has no local grids; rebuild it with --local grid")
        self.codec: tuple[torch.Tensor, torch.Tensor] | None = None
        if grids.codec is not None:
            book, rot = grids.codec.codebook, grids.codec.rotation
            self.codec = (torch.from_numpy(book).to(device), torch.from_numpy(rot).to(device))
        t = tensor_view(grids.data)  # on the CPU: the memory map itself, paged in per candidate
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if t.numel() * t.element_size() < 0.5 * free:
                t = t.to(device)
        self.stored = t
        self.shape = grids.shape

    def __len__(self) -> int:
        return len(self.stored)

    def gather(self, ids: np.ndarray | torch.Tensor, out: torch.device | str) -> torch.Tensor:
        """Float32 grids (K, C, gh, gw) of map images ``ids`` on ``out``; decoding happens on the stored device."""
        sel = torch.as_tensor(np.asarray(ids) if not isinstance(ids, torch.Tensor) else ids, dtype=torch.long)
        picked = self.stored.index_select(0, sel.to(self.stored.device))
        if self.codec is not None:
            return decode_pq(picked, *self.codec).to(out, non_blocking=True)
        return picked.to(out, torch.float32, non_blocking=True)
