"""MixVPR (Ali-bey et al., WACV 2023): ResNet-50 cut after layer3, feature mixing over the flattened map, projection.

The module tree mirrors the official ``VPRModel`` with ``layers_to_crop=[4]`` so that the released
``resnet50_MixVPR_4096_channels(1024)_rows(4).ckpt`` loads strictly: ``backbone.model.{conv1, bn1, layer1..3}`` (the
torchvision ResNet itself), ``aggregator.mix.N.mix.{0: LayerNorm, 1, 3: Linear}``, ``aggregator.channel_proj``,
``aggregator.row_proj``. The mixer works on the 20 x 20 layer3 map of a 320 x 320 image, so the input size is fixed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VprError
from .backbones import NamedResNet
from .base import GLOBAL_MODELS, GlobalModel


class FeatureMixer(nn.Module):
    """One residual MLP over the flattened spatial positions (per channel)."""

    def __init__(self, hw: int, ratio: float = 1.0) -> None:
        super().__init__()
        self.mix = nn.Sequential(
            nn.LayerNorm(hw), nn.Linear(hw, int(hw * ratio)), nn.ReLU(), nn.Linear(int(hw * ratio), hw)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(x)


class MixVPRHead(nn.Module):
    def __init__(self, channels: int, hw: int, out_channels: int, depth: int, ratio: float, rows: int) -> None:
        super().__init__()
        self.mix = nn.Sequential(*(FeatureMixer(hw, ratio) for _ in range(depth)))
        self.channel_proj = nn.Linear(channels, out_channels)
        self.row_proj = nn.Linear(hw, rows, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mix(x.flatten(2))  # (B, C, HW)
        x = self.channel_proj(x.transpose(1, 2)).transpose(1, 2)  # (B, C', HW)
        return F.normalize(self.row_proj(x).flatten(1), dim=-1)  # (B, C' * rows)


@GLOBAL_MODELS.register("mixvpr")
class MixVPR(GlobalModel):
    """MixVPR: ResNet-50 to layer3 + 4 feature mixers; 4096-d at a fixed 320x320."""

    name = "mixvpr"
    suits = (
        "outdoor streets, with the official MixVPR ResNet-50 4096-d weights (--set weights=...); 65 "
        "ms/image on 2 CPU cores"
    )
    default_conf = {
        "weights": None,  # resnet50_MixVPR_4096_channels(1024)_rows(4).ckpt; None = random (labelled untrained)
        "input_size": [320, 320],  # fixed: the mixer's width is the layer3 map's 20 x 20 positions
        "keep_aspect": False,
        "out_channels": 1024,
        "mix_depth": 4,
        "row_out": 4,
        "local_grid": [10, 10],
        "batch_size": 8,
    }

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        w, h = self.input_size
        if w % 16 or h % 16:
            raise VprError(f"mixvpr: input_size {w}x{h} must be a multiple of 16 (the layer3 stride); use 320x320")
        self.backbone = nn.Module()
        self.backbone.model = NamedResNet(50, last_layer=3)
        c = int(self.conf["out_channels"])
        self.aggregator = MixVPRHead(1024, (w // 16) * (h // 16), c, int(self.conf["mix_depth"]), 1.0,
                                     int(self.conf["row_out"]))  # fmt: skip
        self.use_imagenet_normalization()
        self.load_weights_or_mark_untrained(
            f"MixVPR ResNet-50 {self.dim}-d at {w}x{h} (resnet50_MixVPR_{self.dim}_channels({c})_rows("
            f"{self.conf['row_out']}).ckpt: backbone.model.*, aggregator.mix.*, aggregator.channel_proj, "
            "aggregator.row_proj)"
        )

    def check_input_size(self, size: tuple[int, int]) -> None:
        if tuple(size) != self.input_size:
            w, h = self.input_size
            raise VprError(
                f"mixvpr: its mixer is sized for {w}x{h} inputs; export it at that size (not {size[0]}x{size[1]})"
            )

    @property
    def dim(self) -> int:
        return int(self.conf["out_channels"]) * int(self.conf["row_out"])

    def describe(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.backbone.model((x - self.mean) / self.std)
        return self.aggregator(f), self.pool_local(f)
