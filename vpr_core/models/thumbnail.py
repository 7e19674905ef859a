"""SeqSLAM-style appearance: a tiny, patch-normalised grey thumbnail (Milford & Wyeth, ICRA 2012). No weights.

The image is reduced to 64x32 grey (area resampling), and every 8x8 patch is normalised to zero mean and unit
variance, which removes much of what light and season change. The flattened thumbnail, L2-normalised, is the
descriptor: the cosine similarity of two such thumbnails is a close relative of SeqSLAM's sum of absolute
differences. Weak alone, it is cheap and works at the tiny resolutions (e.g. 64x32 Nordland frames) where
learned features have nothing to hold on to. The dense grid for re-ranking is the normalised patches
(one 64-d cell per patch).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import VprError
from .base import GLOBAL_MODELS, GlobalModel

__all__ = ["Thumbnail"]


@GLOBAL_MODELS.register("thumbnail")
class Thumbnail(GlobalModel):
    """SeqSLAM-style 64x32 patch-normalised grey thumbnail; no weights, no vocabulary."""

    name = "thumbnail"
    suits = (
        "tiny or low-texture frames (64x32 nordland: R@1 23.8 single, 95.2 with --temporal hmm); weak on camera "
        "images (corridor 43.2 with hmm)"
    )
    default_conf = {
        "input_size": [64, 32],
        "keep_aspect": False,  # every thumbnail has the same cells
        "patch": 8,
        "local_grid": [8, 4],  # the patches: (64 / 8) x (32 / 8)
        "batch_size": 64,
    }

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        w, h = self.input_size
        p = int(self.conf["patch"])
        if p < 2 or w % p or h % p:
            raise VprError(
                f"thumbnail: input_size {w}x{h} is not a multiple of patch={p}; choose sizes divisible by it"
            )
        self.conf["local_grid"] = [w // p, h // p]
        self.register_buffer("grey", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)

    @property
    def dim(self) -> int:
        w, h = self.input_size
        return w * h

    def describe(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w, h = self.input_size
        p = int(self.conf["patch"])
        g = (x * self.grey.to(x.dtype)).sum(1, keepdim=True)  # (B, 1, H, W)
        if tuple(g.shape[-2:]) != (h, w):
            g = F.interpolate(g, size=(h, w), mode="area")
        cells = F.unfold(g, kernel_size=p, stride=p)  # (B, p*p, cells): one column per patch
        z = (cells - cells.mean(dim=1, keepdim=True)) / (cells.std(dim=1, keepdim=True) + 1e-3)
        b = len(x)
        thumb = F.fold(z, output_size=(h, w), kernel_size=p, stride=p)  # back to the image layout
        local = F.normalize(z.view(b, p * p, h // p, w // p), dim=1)
        return F.normalize(thumb.flatten(1), dim=1), local
