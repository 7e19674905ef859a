"""GeoWarp (Berton et al., ICCV 2021): warp both images to their overlap, compare densely.

Reference: gmberton/geo_warp. 15x15 local features, correlation layer, a conv stack
(kernels 7,5,5,5,5,5; channels 225-128-128-64-64-64-64; padding 1; BN + ReLU) and
Linear(64 -> 16) initialised to the identity corners. Both directions are predicted
and averaged; each image's homography maps the unit square onto its predicted quad
(normalised coordinates, kornia). Score = sum over cells of the cosine similarity of
the warped pair's features. Parameter names match ``homography_regression_*.torch``.

Deviation, stated: the reference re-runs the backbone on warped *images*; maps here
store features, not images, so the stored dense grid is warped instead (bilinear)
and pooled to 15x15. That needs no image store and no extra backbone pass.
"""

from __future__ import annotations

import logging
from typing import Any

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from ..models.base import load_checkpoint_state, load_strict
from ..models.layers import init_device, reset_parameters
from .base import RERANKERS, Reranker, RerankResult
from .dhe import correlation
from .geometry import dlt

log = logging.getLogger(__name__)

UNIT_SQUARE = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])


class GeoWarpHead(nn.Module):
    """Keys: ``conv.{0,3,6,...}.weight/bias`` (conv), ``conv.{1,4,...}.*`` (BN), ``linear.*``."""

    def __init__(
        self,
        kernel_sizes=(7, 5, 5, 5, 5, 5),
        channels=(225, 128, 128, 64, 64, 64, 64),
        padding: int = 1,
        grid: int = 15,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        with init_device(generator):  # seeded: built on "meta", so the global RNG is never drawn from
            mods: list[nn.Module] = []
            for cin, cout, k in zip(channels[:-1], channels[1:], kernel_sizes):
                mods += [nn.Conv2d(cin, cout, k, padding=padding), nn.BatchNorm2d(cout), nn.ReLU()]
            self.conv = nn.Sequential(*mods)
            with torch.no_grad():
                n = self.conv.eval()(torch.zeros(1, channels[0], grid, grid)).numel()
            self.linear = nn.Linear(n, 16)
        if generator is not None:
            self.to_empty(device="cpu")
            reset_parameters(self.conv, generator)
        with torch.no_grad():  # identity corners: the untrained head warps nothing
            self.linear.weight.zero_()
            self.linear.bias.copy_(torch.cat([UNIT_SQUARE.reshape(-1)] * 2))
        self.grid = grid

    def forward(self, corr: torch.Tensor) -> torch.Tensor:
        """corr (B, 225, 15, 15) -> (B, 8, 2) normalised points: 0-3 in image 1, 4-7 in image 2."""
        return self.linear(self.conv(corr).flatten(1)).view(-1, 8, 2)


def grid_volume(f: torch.Tensor) -> torch.Tensor:
    """(B, T, T) correlation -> (B, T, g, g) with candidate cells on the spatial axes, as the reference."""
    b, t, _ = f.shape
    g = int(round(t**0.5))
    return f.view(b, t, g, g)


def warp(x: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Resample x (B, C, H, W) so that the quad ``points`` (B, 4, 2, normalised) fills the output."""
    theta = dlt(UNIT_SQUARE.to(x).expand(len(x), -1, -1), points)
    return kornia.geometry.transform.homography_warp(x, theta, dsize=x.shape[-2:], normalized_homography=True)


@RERANKERS.register("geowarp")
class GeoWarpRerank(Reranker):
    """GeoWarp's warp-and-compare score, batched over candidates."""

    name = "geowarp"
    weights_kind = "geowarp-head"
    default_conf = {"top_k": 5, "weights": None, "grid": 15}
    ranges = {"grid": ">=1"}
    counts_inliers = False

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        self.head = GeoWarpHead(grid=int(self.conf["grid"]), generator=torch.Generator().manual_seed(0))
        if self.conf["weights"]:
            path = str(self.conf["weights"])
            load_strict(self.head, load_checkpoint_state(path, "GeoWarp homography_regression"), path, "GeoWarp head")
        else:
            self.trained = False
            log.warning("GeoWarp head is untrained (identity warp): the score is the plain dense similarity")
        self.head.eval()

    def _bind_map(self, vmap) -> None:
        self.head = self.head.to(self.device)

    def predict(self, fq: torch.Tensor, fc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean quads for query and candidates (K, 4, 2) from both directions."""
        p12 = self.head(grid_volume(correlation(fq, fc, eps=1e-6)))
        p21 = self.head(grid_volume(correlation(fc, fq, eps=1e-6)))
        return (p12[:, :4] + p21[:, 4:]) / 2, (p12[:, 4:] + p21[:, :4]) / 2

    @torch.inference_mode()
    def score(self, q: torch.Tensor, cands: torch.Tensor) -> RerankResult:
        g = self.head.grid
        k = len(cands)
        qd = q.unsqueeze(0).expand(k, -1, -1, -1)
        pool = lambda x: F.normalize(F.adaptive_avg_pool2d(x, (g, g)), dim=1)  # noqa: E731
        pq, pc = self.predict(pool(qd), pool(cands))
        wq, wc = pool(warp(qd, pq)), pool(warp(cands, pc))
        s = (wq * wc).sum(dim=(1, 2, 3))
        return RerankResult(s, torch.zeros(k, dtype=torch.long))
