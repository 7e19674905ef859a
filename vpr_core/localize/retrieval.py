"""Nearest-neighbour search over map descriptors: faiss, or torch top-k on the GPU.

Exact inner product (== cosine on L2-normalised descriptors) by default; IVF-Flat or
IVF-PQ for large maps. On a CUDA device (``make_index``): a faiss GPU index when faiss
was built with CUDA, else an exact torch matmul + top-k on the GPU when the map fits
in half the free GPU memory, else faiss on the CPU.
"""

from __future__ import annotations

import logging
from typing import Any

import faiss
import numpy as np
import torch

from ..errors import VprError
from ..map.search import StoredIndex

__all__ = ["INDEX_KINDS", "RETRIEVALS", "Index", "TorchIndex", "brute_force_search", "make_index"]

log = logging.getLogger(__name__)
#: Index kinds: auto (the map's stored index if it has one, else exact), exact inner product, or IVF-Flat /
#: IVF-PQ trained at load.
INDEX_KINDS = ("auto", "flat", "ivf", "ivfpq")
#: Search implementations a user may force (auto: GPU when it helps).
RETRIEVALS = ("auto", "faiss", "torch")

Queries = np.ndarray | torch.Tensor


def _host(queries: Queries) -> np.ndarray:
    """faiss-cpu reads host memory: a device tensor is copied once, here."""
    if isinstance(queries, torch.Tensor):
        queries = queries.detach().float().cpu().numpy()
    return np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)


class Index:
    def __init__(
        self,
        descriptors: np.ndarray,
        kind: str = "flat",
        nlist: int = 0,
        pq_m: int = 16,
        nprobe: int = 16,
        gpu: str = "auto",
    ) -> None:
        if kind == "auto":
            kind = "flat"
        if kind not in INDEX_KINDS:
            raise VprError(f"index kind '{kind}' unknown; choose one of {', '.join(INDEX_KINDS)}")
        x = np.ascontiguousarray(descriptors, dtype=np.float32)
        n, d = x.shape
        self.kind, self.dim, self.size = kind, d, n
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        else:
            nlist = nlist or max(1, min(4096, int(4 * np.sqrt(n))))
            if n < 39 * nlist:  # faiss wants ~39 training points per list
                nlist = max(1, n // 39)
            quant = faiss.IndexFlatIP(d)
            if kind == "ivf":
                index = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
            else:
                if d % pq_m:
                    raise VprError(f"ivfpq: descriptor dim {d} is not divisible by pq_m={pq_m}")
                index = faiss.IndexIVFPQ(quant, d, nlist, pq_m, 8, faiss.METRIC_INNER_PRODUCT)
            index.train(x)
            faiss.extract_index_ivf(index).nprobe = min(nprobe, nlist)
        index.add(x)
        self.on_gpu = False
        if gpu != "cpu" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            self._res = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._res, 0, index)
            self.on_gpu = True
            log.info("faiss index on GPU")
        self.index = index

    def search(self, queries: Queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for each query row, best first."""
        q = _host(queries)
        if q.shape[1] != self.dim:
            raise VprError(
                f"query descriptor dim {q.shape[1]} != map dim {self.dim}; the map was built with another model"
            )
        return self.index.search(q, min(k, self.size))


class TorchIndex:
    """Exact search as one matmul + top-k on ``device`` (the GPU path when faiss has no CUDA build)."""

    kind = "torch"

    def __init__(self, descriptors: np.ndarray, device: str | torch.device = "cpu") -> None:
        self.db = torch.from_numpy(np.ascontiguousarray(descriptors, dtype=np.float32)).to(device)
        self.size, self.dim = self.db.shape
        self.on_gpu = self.db.device.type == "cuda"

    @torch.inference_mode()
    def search(self, queries: Queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids); a query tensor already on the index's device is used in place."""
        q = queries if isinstance(queries, torch.Tensor) else torch.from_numpy(_host(queries))
        q = torch.atleast_2d(q).to(self.db.device, torch.float32)
        if q.shape[1] != self.dim:
            raise VprError(
                f"query descriptor dim {q.shape[1]} != map dim {self.dim}; the map was built with another model"
            )
        s, i = torch.topk(q @ self.db.T, min(k, self.size), dim=1)
        return s.cpu().numpy(), i.cpu().numpy()  # K numbers: the estimate is computed on the host


def make_index(
    descriptors: np.ndarray,
    kind: str = "auto",
    device: torch.device | None = None,
    retrieval: str = "auto",
    stored: dict[str, Any] | None = None,
) -> Index | TorchIndex | StoredIndex:
    """The map's stored index (``kind`` auto, when it has one) > faiss GPU > torch top-k on the GPU (map fits) >
    faiss CPU; ``retrieval`` 'faiss' or 'torch' forces one of the exact ones."""
    if retrieval not in RETRIEVALS:
        raise VprError(f"retrieval '{retrieval}' unknown; choose one of {', '.join(RETRIEVALS)}")
    if kind == "auto" and stored is not None and retrieval == "auto":
        return StoredIndex(stored, descriptors)
    kind = "flat" if kind == "auto" else kind
    cuda = device is not None and device.type == "cuda"
    faiss_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if retrieval == "torch" or (
        retrieval == "auto" and cuda and kind == "flat" and not faiss_gpu and _fits_gpu(descriptors)
    ):
        return TorchIndex(descriptors, device if device is not None else "cpu")
    return Index(descriptors, kind=kind, gpu="auto" if cuda else "cpu")


def _fits_gpu(descriptors: np.ndarray) -> bool:
    free, _ = torch.cuda.mem_get_info()
    return descriptors.size * 4 < 0.5 * free


def brute_force_search(db: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy exact search; the reference faiss is benchmarked against."""
    sims = np.atleast_2d(queries) @ db.T
    k = min(k, db.shape[0])
    ids = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    part = np.take_along_axis(sims, ids, axis=1)
    order = np.argsort(-part, axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(ids, order, axis=1)
