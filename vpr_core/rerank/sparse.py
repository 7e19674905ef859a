"""Sparse local features for learned matchers: XFeat keypoints extracted at a fixed budget, stored in the map.

``vpr map build --local sparse`` (or ``both``) stores, per map image, the best ``top_k`` XFeat keypoints of the
image scaled to ``max_side`` (640): keypoints and descriptors as float16, the valid count and the extraction
size. 512 keypoints cost 512 x (128 + 4) bytes + 12 = 66 KB per image (the budget is 80 KB). int8 descriptors
(34 KB) were measured and dropped: corridor R@1 91.9 -> 89.2 at K=10 (``bench/bench_rerank.py --ablation``).
Stored rather than recomputed from the map images per query: an XFeat pass over the K candidate images costs about
as much as the matching itself (``bench/bench_rerank.py --storage``), and the robot would need the images.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from ..errors import MapError
from ..io.files import tensor_view
from ..models.xfeat import XFeatNet, detect, load_xfeat
from ..store.parts import SparseKeypoints

__all__ = [
    "SPARSE_BUDGET_BYTES",
    "SPARSE_DEFAULTS",
    "SparseExtractor",
    "SparseStore",
    "extract_sparse",
    "sparse_bytes_per_image",
]

SPARSE_DEFAULTS: dict[str, Any] = {"top_k": 512, "max_side": 640}
SPARSE_BUDGET_BYTES = 80_000  # per map image: the budget sparse features were designed to (the default takes 67.6 KB)


def sparse_bytes_per_image(top_k: int) -> int:
    """Bytes a map image's sparse features take: float16 keypoints (2) and descriptors (64), the count, the size."""
    return int(top_k) * (2 + 64) * 2 + 4 + 8


class SparseExtractor:
    """RGB uint8 images -> XFeat sparse features at a fixed budget (the map's and the query's, identically)."""

    def __init__(self, top_k: int = 512, max_side: int = 640, device: str | torch.device = "cpu") -> None:
        self.top_k, self.max_side = int(top_k), int(max_side)
        self.device = torch.device(device)
        self.net: XFeatNet = load_xfeat().to(self.device)

    def size_for(self, w: int, h: int) -> tuple[int, int]:
        """Working size: aspect kept, longest side ``max_side`` (small images are enlarged: measured on corridor's
        160x120 frames, R@1 70.3 at native size vs 85.6 at 640), both multiples of 32."""
        s = self.max_side / max(w, h)
        return max(32, int(round(w * s / 32)) * 32), max(32, int(round(h * s / 32)) * 32)

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
        """keypoints (top_k, 2) px at the working size, descriptors (top_k, 64), valid (top_k,), (w, h)."""
        h, w = rgb.shape[:2]
        ww, hh = self.size_for(w, h)
        img = cv2.resize(rgb, (ww, hh), interpolation=cv2.INTER_AREA) if (ww, hh) != (w, h) else rgb
        x = torch.from_numpy(np.ascontiguousarray(img)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        kp, desc, valid = detect(self.net, x, self.top_k)
        return kp[0], desc[0], valid[0], (ww, hh)


def extract_sparse(images, conf: dict[str, Any] | None = None, device: str = "cpu", progress=None) -> SparseKeypoints:
    """The map part of sparse features of ``images`` (an iterable of RGB uint8 arrays)."""
    c = {**SPARSE_DEFAULTS, **(conf or {})}
    ex = SparseExtractor(c["top_k"], c["max_side"], device)
    kps, descs, counts, sizes = [], [], [], []
    for rgb in images:
        kp, desc, valid, size = ex(rgb)
        kps.append(kp.cpu().numpy().astype(np.float16))
        descs.append(desc.cpu().numpy().astype(np.float16))
        counts.append(int(valid.sum()))
        sizes.append(size)
        if progress is not None:
            progress.update(1)
    return SparseKeypoints(
        np.stack(kps),
        np.stack(descs),
        np.asarray(counts, np.int32),
        np.asarray(sizes, np.int32),
        int(c["top_k"]),
        int(c["max_side"]),
    )


class SparseStore:
    """A map's sparse features as tensors on the re-ranker's device; ``gather`` takes the K candidates."""

    def __init__(self, sparse: SparseKeypoints | None, device: torch.device) -> None:
        if sparse is None:
            raise MapError(
                "this map stores no sparse features for a learned matcher; rebuild it with "
                "'vpr map build ... --local sparse' (or --local both to keep the dense grid too)"
            )
        self.keypoints = tensor_view(sparse.keypoints).to(device)  # (N, M, 2) fp16; on the CPU the map itself
        self.descriptors = tensor_view(sparse.descriptors).to(device)  # (N, M, 64) fp16
        self.count = torch.from_numpy(np.asarray(sparse.count, np.int64)).to(device)
        self.size = torch.from_numpy(np.asarray(sparse.size, np.int64)).to(device)
        self.top_k, self.max_side = sparse.top_k, sparse.max_side

    def gather(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """keypoints (K, M, 2) float, unit descriptors (K, M, 64) float, valid (K, M), sizes (K, 2)."""
        kp = self.keypoints.index_select(0, ids).float()
        desc = self.descriptors.index_select(0, ids).float()
        m = kp.shape[1]
        valid = torch.arange(m, device=kp.device)[None] < self.count.index_select(0, ids)[:, None]
        return kp, desc, valid, self.size.index_select(0, ids)
