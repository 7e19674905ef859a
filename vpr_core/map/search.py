"""The search index a large map stores: projection + IVF-PQ shards, trained at build, then an exact re-score.

Exact search over N descriptors of D dims costs N*D multiply-adds per frame and N*D*4 bytes of RAM (1M x 2048:
8 GB). Above ``min_images`` a map stores instead, trained once at build:

- an orthonormal projection to ``proj_dim`` dims (the leading eigenvectors of the descriptors' uncentred
  second moment: inner products are kept, minus the dropped energy);
- an inverted file of ``nlist`` lists over it, residuals product-quantised to ``pq_m`` bytes per image;
- shards of at most ``shard_size`` images sharing those trained parts, so merged or appended maps add shards
  (or fill the last one) instead of retraining.

A query probes ``nprobe`` lists per shard, takes the ``refine`` best per shard and re-scores them exactly with the
map's own descriptors (memory-mapped float16: only those rows are read). RAM is the codes, about
``pq_m + 8`` bytes per image. bench/bench_scale.py measures latency and top-1 agreement with exact search.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import faiss
import numpy as np

from ..errors import MapError, VprError

__all__ = ["BUILD_INDEX", "SEARCH_DEFAULTS", "StoredIndex", "append_index", "stored_index", "train_index"]

log = logging.getLogger(__name__)
#: What ``vpr map build --index`` stores: auto (IVF-PQ from ``min_images`` on), always, or never (exact search).
BUILD_INDEX = ("auto", "ivfpq", "flat")
SEARCH_DEFAULTS: dict[str, Any] = {
    "kind": "auto",
    "min_images": 50_000,  # below: exact search (flat faiss, ~6 ms at 50k x 2048 on 2 cores)
    "proj_dim": 256,
    "nlist": 0,  # 0: 2*sqrt(N), between 1 and 4096
    "pq_m": 32,
    "nprobe": 32,
    "refine": 100,
    "shard_size": 1_000_000,
    "train_size": 100_000,
    "seed": 0,
}


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def train_index(train: np.ndarray, n_total: int, conf: dict[str, Any] | None = None) -> faiss.Index:
    """An empty, trained projection + IVF-PQ index for a map of ``n_total`` images, learnt from ``train`` rows."""
    c = {**SEARCH_DEFAULTS, **(conf or {})}
    x = _f32(train)
    n, d = x.shape
    p = int(min(c["proj_dim"] or d, d))
    m = int(c["pq_m"])
    while p % m:
        m -= 1
    # uncentred PCA: the projection keeps inner products (centring would add a per-image bias to the score)
    moment = np.zeros((d, d), np.float64)
    for a in range(0, n, 16384):  # D x D second moment in chunks, then its eigenvectors: small in RAM at any N
        xa = x[a : a + 16384].astype(np.float64)
        moment += xa.T @ xa
    w, v = np.linalg.eigh(moment)
    rot = v[:, np.argsort(-w)[:p]].T.astype(np.float32)  # orthonormal rows, also with fewer rows than dims
    lt = faiss.LinearTransform(d, p, False)
    faiss.copy_array_to_vector(rot.ravel(), lt.A)
    lt.is_trained = True
    nlist = int(c["nlist"]) or int(np.clip(2 * math.sqrt(n_total), 1, 4096))
    nlist = max(1, min(nlist, n // 39))  # faiss wants ~39 training rows per list
    nbits = 8 if n >= 256 * 39 else max(1, min(8, int(math.log2(max(n // 39, 2)))))
    ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(p), p, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = int(c["seed"])
    index = faiss.IndexPreTransform(lt, ivf)
    index.train(x)
    return index


def _serialize(index: faiss.Index) -> np.ndarray:
    return faiss.serialize_index(index)


def _add(index: faiss.Index, desc: np.ndarray, lo: int, hi: int) -> None:
    for a in range(lo, hi, 65536):  # chunks: the map's float16 rows become float32 a slice at a time
        index.add(_f32(desc[a : min(hi, a + 65536)]))


def stored_index(
    desc: np.ndarray, conf: dict[str, Any] | None = None, like: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The index a map of ``desc`` stores (None: exact search at load). With ``like`` (another map's stored
    index) its trained parts are reused, so the two maps merge by concatenating shards."""
    c = {**SEARCH_DEFAULTS, **(like or {}), **(conf or {})}
    c.pop("shards", None)
    kind = c["kind"]
    if kind not in BUILD_INDEX:
        raise VprError(f"index '{kind}' unknown; choose one of {', '.join(BUILD_INDEX)}")
    n = len(desc)
    if kind == "flat" or (kind == "auto" and n < int(c["min_images"]) and like is None):
        return None
    if like is not None:
        empty = faiss.deserialize_index(np.asarray(like["shards"][0]))
        empty.reset()
    else:
        pick = _sample(n, int(c["train_size"]), int(c["seed"]))
        empty = train_index(desc[pick], n, c)
    out = {k: c[k] for k in SEARCH_DEFAULTS if k != "kind"} | {"kind": "ivfpq", "shards": []}
    return append_index(out, desc, 0, empty)


def append_index(
    index: dict[str, Any], desc: np.ndarray, start: int, empty: faiss.Index | None = None
) -> dict[str, Any]:
    """Add ``desc[start:]`` to a stored index without retraining: fill its last shard, then open new ones."""
    shards = [np.asarray(b) for b in index["shards"]]
    size = int(index["shard_size"])
    if empty is None:
        empty = faiss.deserialize_index(shards[0])
        empty.reset()
    n = len(desc)
    pos = start
    if shards:
        last = faiss.deserialize_index(shards[-1])
        room = size - last.ntotal
        if room > 0 and pos < n:
            hi = min(n, pos + room)
            _add(last, desc, pos, hi)
            shards[-1] = _serialize(last)
            pos = hi
    while pos < n:
        shard = faiss.clone_index(empty)
        hi = min(n, pos + size)
        _add(shard, desc, pos, hi)
        shards.append(_serialize(shard))
        pos = hi
    return {**index, "shards": shards}


class StoredIndex:
    """Search over a map's stored shards: approximate shortlists, merged, re-scored exactly with the descriptors."""

    kind = "ivfpq"
    on_gpu = False

    def __init__(self, index: dict[str, Any], descriptors: np.ndarray, nprobe: int | None = None) -> None:
        try:
            self.shards = [faiss.deserialize_index(np.asarray(b)) for b in index["shards"]]
            ivfs = [faiss.extract_index_ivf(s) for s in self.shards]
        except RuntimeError:
            raise MapError("the map's stored index is corrupt; rebuild the map (or use index: flat)") from None
        sizes = [s.ntotal for s in self.shards]
        if sum(sizes) != len(descriptors):
            raise MapError(f"stored index holds {sum(sizes)} images but the map {len(descriptors)}; rebuild the map")
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        for ivf in ivfs:
            ivf.nprobe = int(nprobe or index["nprobe"])
        self.refine = int(index["refine"])
        self.desc = descriptors
        self.size, self.dim = descriptors.shape
        self.conf = {k: v for k, v in index.items() if k != "shards"}

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row, best first; scores are exact inner products."""
        q = queries.detach().float().cpu().numpy() if hasattr(queries, "detach") else queries
        q = _f32(np.atleast_2d(q))
        if q.shape[1] != self.dim:
            raise VprError(
                f"query descriptor dim {q.shape[1]} != map dim {self.dim}; the map was built with another model"
            )
        r = max(k, self.refine)
        cands = []
        for off, s in zip(self.offsets, self.shards):
            _, ids = s.search(q, min(r, s.ntotal))
            cands.append(np.where(ids >= 0, ids + off, -1))
        cand = np.concatenate(cands, axis=1)
        k = min(k, self.size)
        scores = np.full((len(q), k), -np.inf, np.float32)
        out = np.full((len(q), k), -1, np.int64)
        for row in range(len(q)):  # one row per frame on a robot; the exact re-score is R rows of the map
            ids = np.unique(cand[row][cand[row] >= 0])
            sc = _f32(self.desc[ids]) @ q[row]
            top = np.argsort(-sc, kind="stable")[:k]
            scores[row, : len(top)], out[row, : len(top)] = sc[top], ids[top]
        return scores, out
