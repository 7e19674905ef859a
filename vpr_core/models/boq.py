"""BoQ (Ali-bey et al., CVPR 2024): learned queries cross-attend to backbone features in a cascade of blocks.

The module tree mirrors the official hub ``VPRModel`` so that ``resnet50_16384.pth`` and ``dinov2_12288.pth`` load
strictly: ``backbone.net.N`` (torchvision ResNet-50 children up to layer3) or ``backbone.dino.*`` (torch.hub DINOv2
ViT-B/14, no final norm in the forward), then ``aggregator.{proj_c, norm_input, boqs.N.{encoder, queries, self_attn,
norm_q, cross_attn, norm_out}, fc}``. Images: 384 x 384 (ResNet-50) or 322 x 322 (DINOv2; 224 also works),
bicubic, ImageNet-normalised.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VprError
from .backbones import resnet_trunk
from .base import GLOBAL_MODELS, GlobalModel
from .dinov2 import PATCH, DinoV2, check_patch_multiple, patch_grid

BACKBONES = ("resnet50", "dinov2")


class BoQBlock(nn.Module):
    def __init__(self, dim: int, queries: int) -> None:
        super().__init__()
        heads = dim // 64
        self.encoder = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True)
        self.queries = nn.Parameter(torch.randn(1, queries, dim))
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_q = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.encoder(x)
        q = self.queries.expand(x.shape[0], -1, -1)
        q = self.norm_q(q + self.self_attn(q, q, q, need_weights=False)[0])
        return x, self.norm_out(self.cross_attn(q, x, x, need_weights=False)[0])


class BoQHead(nn.Module):
    def __init__(self, channels: int, dim: int, queries: int = 64, layers: int = 2, rows: int = 32) -> None:
        super().__init__()
        self.proj_c = nn.Conv2d(channels, dim, 3, padding=1)
        self.norm_input = nn.LayerNorm(dim)
        self.boqs = nn.ModuleList(BoQBlock(dim, queries) for _ in range(layers))
        self.fc = nn.Linear(layers * queries, rows)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        x = self.norm_input(self.proj_c(f).flatten(2).transpose(1, 2))
        outs = []
        for blk in self.boqs:
            x, out = blk(x)
            outs.append(out)
        out = self.fc(torch.cat(outs, dim=1).transpose(1, 2))  # (B, dim, rows)
        return F.normalize(out.flatten(1), dim=-1)


@GLOBAL_MODELS.register("boq")
class BoQ(GlobalModel):
    """BoQ: ResNet-50 (16384-d, 384x384) or DINOv2 ViT-B/14 (12288-d, 322x322) + two bag-of-queries blocks."""

    name = "boq"
    suits = (
        "outdoor streets, night and seasons, with official BoQ weights (--set backbone=dinov2 "
        "weights=...); per image on 2 CPU cores ResNet-50 0.13 s, DINOv2 0.56 s"
    )
    default_conf = {
        "weights": None,  # resnet50_16384.pth or dinov2_12288.pth; None = random (labelled untrained)
        "backbone": "resnet50",
        "input_size": None,  # None: the paper's size, 384x384 (resnet50) or 322x322 (dinov2)
        "keep_aspect": False,
        "local_grid": [12, 12],
        "batch_size": 4,
    }

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        conf = dict(conf or {})
        bb = conf.get("backbone", "resnet50")
        if bb not in BACKBONES:
            raise VprError(f"boq: backbone '{bb}' unknown; choose one of {', '.join(BACKBONES)}")
        if conf.get("input_size") is None:
            conf["input_size"] = [322, 322] if bb == "dinov2" else [384, 384]
        super().__init__(conf)
        self.backbone = nn.Module()
        if bb == "dinov2":
            check_patch_multiple(self.input_size, "boq")
            self.size_multiple = PATCH
            self.backbone.dino = DinoV2("vitb14")
            self.aggregator = BoQHead(768, 384)
            layout = "dinov2_12288.pth: backbone.dino.<torch.hub dinov2 names>"
        else:
            self.backbone.net, _ = resnet_trunk(50, last_layer=3)
            self.aggregator = BoQHead(1024, 512)
            layout = "resnet50_16384.pth: backbone.net.N (ResNet-50 to layer3)"
        self.use_imagenet_normalization()
        self.load_weights_or_mark_untrained(f"BoQ {bb} {self.dim}-d ({layout}, aggregator.proj_c/norm_input/boqs.N/fc)")

    @property
    def dim(self) -> int:
        return 12288 if self.conf["backbone"] == "dinov2" else 16384

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.conf["backbone"] == "dinov2":
            return patch_grid(self.backbone.dino.tokens(x, norm=False), *x.shape[-2:])
        return self.backbone.net(x)

    def describe(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.aggregator(f), self.pool_local(f)
