"""Global descriptors from XFeat's dense features: ``xfeat-vlad`` (default) and ``xfeat-gem``.

XFeat is trained for matching, not retrieval, so the aggregation must be learned on
the map itself: the VLAD vocabulary (and optional PCA-whitening) comes from the
database images at map-build time and is stored in the map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import MapError, VprError
from .base import GLOBAL_MODELS, GlobalModel
from .layers import gem
from .vlad import VLAD, PCAWhitening, kmeans
from .xfeat import load_xfeat


class _XFeatGlobal(GlobalModel):
    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        self.xfeat = load_xfeat(self.conf.get("weights"))

    def network_state(self) -> dict[str, torch.Tensor]:
        return {f"xfeat.{k}": v for k, v in self.xfeat.state_dict().items()}

    def dense(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> L2-normalised features (B, 64, h, w) and reliability (B, 1, h, w)."""
        f, r = self.xfeat(x)
        return F.normalize(f, dim=1), r


@GLOBAL_MODELS.register("xfeat-vlad")
class XFeatVLAD(_XFeatGlobal):
    """VLAD over XFeat's dense features (k = 32, vocabulary from the map's own images): 2048-d, no weights."""

    name = "xfeat-vlad"
    suits = "camera images from 64 px up, the default (corridor 82.9, triplets 90 single frame; no weights to download)"
    default_conf = {
        "input_size": [320, 240],  # pixel budget; see keep_aspect
        "keep_aspect": True,
        "clusters": 32,
        "power_norm": True,
        "intra_norm": True,
        "pca_dim": 0,  # 0 = no PCA; else whiten to this many dims (needs > pca_dim database images)
        "vocab_max_images": 1000,
        "vocab_max_features": 200_000,
        "seed": 0,
        "local_grid": [40, 30],  # stored dense grid for re-ranking: the 1/8 features at 320x240
        "weights": None,
        "batch_size": 16,
    }

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        self.vlad = VLAD(int(self.conf["clusters"]), 64, bool(self.conf["power_norm"]), bool(self.conf["intra_norm"]))
        pca = int(self.conf["pca_dim"])
        self.pca = PCAWhitening(self.vlad.out_dim, pca) if pca > 0 else None
        self.fitted = False

    @property
    def dim(self) -> int:
        return int(self.pca.proj.shape[0]) if self.pca is not None else int(self.vlad.out_dim)

    @property
    def needs_fit(self) -> bool:
        return True

    def _vlad(self, x: torch.Tensor) -> torch.Tensor:
        f, _ = self.dense(x)
        return self.vlad(f.flatten(2).transpose(1, 2))

    def describe(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.fitted:
            raise VprError(
                "xfeat-vlad has no vocabulary: build a map first (the vocabulary is learned from its database)"
            )
        f, _ = self.dense(x)
        v = self.vlad(f.flatten(2).transpose(1, 2))
        return (self.pca(v) if self.pca is not None else v), self.pool_local(f)

    @torch.inference_mode()
    def fit(self, batches: Callable[[], Iterable[torch.Tensor]], num_images: int) -> None:
        rng = np.random.default_rng(int(self.conf["seed"]))
        max_img = int(self.conf["vocab_max_images"])
        keep = set(rng.choice(num_images, size=min(num_images, max_img), replace=False).tolist())
        samples, i = [], 0
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # threaded convolutions add float noise: the vocabulary must not depend on it
        try:
            for x in tqdm(batches(), desc="vocabulary: features", unit="batch", leave=False):
                f, _ = self.dense(x)
                f = f.flatten(2).transpose(1, 2).float().cpu().numpy()
                for one in f:
                    if i in keep:
                        samples.append(one)
                    i += 1
        finally:
            torch.set_num_threads(threads)
        feats = np.concatenate(samples)
        cap = int(self.conf["vocab_max_features"])
        if len(feats) > cap:
            feats = feats[rng.choice(len(feats), size=cap, replace=False)]
        centers = kmeans(feats, int(self.conf["clusters"]), seed=int(self.conf["seed"]))
        self.vlad.centers.copy_(torch.from_numpy(centers))
        self.fitted = True
        if self.pca is not None:
            raw = torch.cat(
                [
                    self._vlad(x).float().cpu()
                    for x in tqdm(batches(), desc="vocabulary: PCA", unit="batch", leave=False)
                ]
            )
            try:
                self.pca.fit(raw.numpy())
            except ValueError as e:
                raise VprError(f"xfeat-vlad: {e}; lower pca_dim or set it to 0") from None

    def map_state(self) -> dict[str, np.ndarray]:
        out = {"vlad.centers": self.vlad.centers.cpu().numpy()}
        if self.pca is not None:
            out |= {"pca.mean": self.pca.mean.cpu().numpy(), "pca.proj": self.pca.proj.cpu().numpy()}
        return out

    def load_map_state(self, arrays: dict[str, np.ndarray]) -> None:
        need = ["vlad.centers"] + (["pca.mean", "pca.proj"] if self.pca is not None else [])
        for k in need:
            if k not in arrays:
                raise MapError(f"map lacks '{k}' that xfeat-vlad needs; rebuild the map")
        for k, buf in (("vlad.centers", self.vlad.centers),) + (
            (("pca.mean", self.pca.mean), ("pca.proj", self.pca.proj)) if self.pca is not None else ()
        ):
            if tuple(arrays[k].shape) != tuple(buf.shape):
                raise MapError(f"map's '{k}' has shape {arrays[k].shape}, expected {tuple(buf.shape)}; rebuild the map")
            buf.copy_(torch.from_numpy(np.asarray(arrays[k], dtype=np.float32)))
        self.fitted = True


@GLOBAL_MODELS.register("xfeat-gem")
class XFeatGeM(_XFeatGlobal):
    """GeM over XFeat's dense features: 64-d, needs no vocabulary; cheap but weak."""

    name = "xfeat-gem"
    default_conf = {
        "input_size": [320, 240],
        "keep_aspect": True,
        "p": 3.0,
        "local_grid": [40, 30],
        "weights": None,
        "batch_size": 16,
    }

    @property
    def dim(self) -> int:
        return 64

    def describe(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f, _ = self.dense(x)
        p = torch.tensor(float(self.conf["p"]), dtype=f.dtype, device=f.device)
        return F.normalize(gem(F.relu(f), p).flatten(1), dim=-1), self.pool_local(f)
