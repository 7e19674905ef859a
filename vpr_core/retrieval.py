"""Nearest-neighbour search over map descriptors with faiss.

Exact inner product (== cosine on L2-normalised descriptors) by default; IVF-Flat or
IVF-PQ for large maps; moved to the GPU when faiss was built with CUDA support.
"""

from __future__ import annotations

import logging

import faiss
import numpy as np

from .errors import VprError

log = logging.getLogger(__name__)
INDEX_KINDS = ("flat", "ivf", "ivfpq")


class Index:
    def __init__(self, descriptors: np.ndarray, kind: str = "flat", nlist: int = 0, pq_m: int = 16, nprobe: int = 16, gpu: str = "auto") -> None:
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
            index.nprobe = min(nprobe, nlist)
        index.add(x)
        self.on_gpu = False
        if gpu != "cpu" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            self._res = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._res, 0, index)
            self.on_gpu = True
            log.info("faiss index on GPU")
        self.index = index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for each query row, best first."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise VprError(f"query descriptor dim {q.shape[1]} != map dim {self.dim}; the map was built with another model")
        return self.index.search(q, min(k, self.size))


def brute_force_search(db: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy exact search; the reference faiss is benchmarked against."""
    sims = np.atleast_2d(queries) @ db.T
    k = min(k, db.shape[0])
    ids = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    part = np.take_along_axis(sims, ids, axis=1)
    order = np.argsort(-part, axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(ids, order, axis=1)
