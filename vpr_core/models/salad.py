"""SALAD (Izquierdo & Civera, CVPR 2024): DINOv2 tokens softly assigned to clusters by optimal transport.

The module tree mirrors the official ``VPRModel`` so that ``dino_salad.ckpt`` loads strictly:
``backbone.model.*`` (the torch.hub DINOv2 ViT-B/14, final norm applied) and ``aggregator.{token_features,
cluster_features, score, dust_bin}``. Descriptor: L2-normalised [global token (256) | 64 clusters x 128], 8448-d,
from 322 x 322 ImageNet-normalised images.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VprError
from .base import GLOBAL_MODELS, GlobalModel
from .dinov2 import ARCHS, PATCH, DinoV2, check_patch_multiple, patch_grid


def sinkhorn_with_dustbin(scores: torch.Tensor, dustbin: torch.Tensor, iters: int = 3) -> torch.Tensor:
    """Log-space Sinkhorn over (B, m, n) scores plus one dustbin row holding the mass of n - m tokens; returns the
    (B, m + 1, n) log transport plan scaled by m + n (each token's column sums to about 1)."""
    b, m, n = scores.shape
    z = torch.cat([scores, dustbin.reshape(1, 1, 1).expand(b, 1, n).to(scores)], dim=1)
    norm = -math.log(m + n)
    log_mu = scores.new_full((m + 1,), norm)
    log_mu = torch.cat([log_mu[:m], log_mu[m:] + math.log(n - m)])
    log_nu = scores.new_full((n,), norm)
    u, v = torch.zeros_like(log_mu).expand(b, -1), torch.zeros_like(log_nu).expand(b, -1)
    for _ in range(iters):
        u = log_mu - torch.logsumexp(z + v.unsqueeze(1), dim=2)
        v = log_nu - torch.logsumexp(z + u.unsqueeze(2), dim=1)
    return z + u.unsqueeze(2) + v.unsqueeze(1) - norm


class SaladHead(nn.Module):
    def __init__(self, channels: int, clusters: int = 64, cluster_dim: int = 128, token_dim: int = 256) -> None:
        super().__init__()
        self.token_features = nn.Sequential(nn.Linear(channels, 512), nn.ReLU(), nn.Linear(512, token_dim))
        # index 1 is the training dropout in the official tree: an Identity keeps the key numbers
        self.cluster_features = nn.Sequential(nn.Conv2d(channels, 512, 1), nn.Identity(), nn.ReLU(),
                                              nn.Conv2d(512, cluster_dim, 1))  # fmt: skip
        self.score = nn.Sequential(nn.Conv2d(channels, 512, 1), nn.Identity(), nn.ReLU(), nn.Conv2d(512, clusters, 1))
        self.dust_bin = nn.Parameter(torch.tensor(1.0))

    def forward(self, f: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        local = self.cluster_features(f).flatten(2)  # (B, l, n)
        # the transport plan in float32 even under fp16 autocast: log-sum-exp over hundreds of tokens
        scores = self.score(f).flatten(2).float()
        plan = sinkhorn_with_dustbin(scores, self.dust_bin.float(), 3).exp()[:, :-1].to(local.dtype)  # (B, m, n)
        agg = F.normalize(torch.einsum("bln,bmn->blm", local, plan), dim=1).flatten(1)
        return F.normalize(torch.cat([F.normalize(self.token_features(t), dim=-1), agg], dim=-1), dim=-1)


@GLOBAL_MODELS.register("salad")
class Salad(GlobalModel):
    """SALAD: DINOv2 ViT-B/14 tokens + optimal-transport aggregation; 8448-d at 322x322."""

    name = "salad"
    suits = (
        "outdoor streets and seasons, with the official DINOv2 SALAD weights (--set "
        "weights=dino_salad.ckpt); 0.5 s/image on 2 CPU cores: a GPU model"
    )
    default_conf = {
        "weights": None,  # dino_salad.ckpt; None = random (labelled untrained)
        "arch": "vitb14",
        "input_size": [322, 322],
        "keep_aspect": False,
        "local_grid": [12, 12],
        "batch_size": 4,
    }
    size_multiple = PATCH

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        check_patch_multiple(self.input_size, "salad")
        w, h = self.input_size
        if (w // PATCH) * (h // PATCH) <= 64:
            raise VprError(f"salad: input_size {w}x{h} gives fewer patches than its 64 clusters; use 322x322")
        self.backbone = nn.Module()
        self.backbone.model = DinoV2(str(self.conf["arch"]))
        self.aggregator = SaladHead(ARCHS[str(self.conf["arch"])][0])
        self.use_imagenet_normalization()
        self.load_weights_or_mark_untrained(
            f"SALAD DINOv2 {self.conf['arch']} (dino_salad.ckpt: backbone.model.<torch.hub dinov2 names>, "
            "aggregator.token_features/cluster_features/score/dust_bin)"
        )

    @property
    def dim(self) -> int:
        return 64 * 128 + 256

    def describe(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        tok = self.backbone.model.tokens((x - self.mean) / self.std, norm=True)
        f = patch_grid(tok, h, w)
        return self.aggregator(f, tok[:, 0]), self.pool_local(f)
