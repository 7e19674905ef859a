"""GeoWarp's feature extractors (gmberton/geo_warp): the baselines it re-ranks.

ResNet-50 through layer3, VGG16 or AlexNet conv trunks (``encoder.N.*``) with GeM
(``pool.1.p``) or NetVLAD (``pool.conv.weight``, ``pool.centroids``, 64 clusters);
local features are the trunk's map average-pooled to 15x15 and L2-normalised.
The released ``{arch}_{pool}.pth`` baselines load strictly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VprError
from .backbones import resnet_trunk, vgg16_features
from .base import GLOBAL_MODELS, GlobalModel
from .layers import GeM, L2Norm


def alexnet_features() -> tuple[nn.Sequential, int]:
    """torchvision ``alexnet().features`` minus its last ReLU and max-pool."""
    mods = [
        nn.Conv2d(3, 64, 11, 4, 2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1),
    ]
    return nn.Sequential(*mods), 256


class NetVLAD(nn.Module):
    def __init__(self, clusters: int = 64, dim: int = 1024) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, clusters, 1, bias=False)
        self.centroids = nn.Parameter(torch.rand(clusters, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x, dim=1)
        a = F.softmax(self.conv(x).flatten(2), dim=1)  # (B, K, N)
        xf = x.flatten(2)  # (B, D, N)
        v = a @ xf.transpose(1, 2) - a.sum(-1, keepdim=True) * self.centroids  # (B, K, D)
        return F.normalize(F.normalize(v, dim=2).flatten(1), dim=1)


class _GeMPool(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(L2Norm(), GeM())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).flatten(1)


@GLOBAL_MODELS.register("geowarp")
class GeoWarpFE(GlobalModel):
    """GeoWarp baseline trunk + GeM/NetVLAD; 15x15 local grid for the GeoWarp re-ranker."""

    name = "geowarp"
    default_conf = {
        "arch": "resnet50",  # resnet50 | vgg16 | alexnet
        "pooling": "gem",  # gem | netvlad
        "weights": None,  # {arch}_{pool}.pth; None = random (labelled untrained)
        "input_size": [640, 480],
        "keep_aspect": True,
        "local_grid": [15, 15],
        "batch_size": 4,
    }

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        arch, pooling = self.conf["arch"], self.conf["pooling"]
        if arch == "resnet50":
            self.encoder, c = resnet_trunk(50, last_layer=3)
        elif arch == "vgg16":
            self.encoder, c = vgg16_features(drop_last=2)
        elif arch == "alexnet":
            self.encoder, c = alexnet_features()
        else:
            raise VprError(f"geowarp: arch '{arch}' unknown; choose resnet50, vgg16 or alexnet")
        if pooling == "gem":
            self.pool: nn.Module = _GeMPool()
            self._dim = c
        elif pooling == "netvlad":
            self.pool = NetVLAD(64, c)
            self._dim = 64 * c
        else:
            raise VprError(f"geowarp: pooling '{pooling}' unknown; choose gem or netvlad")
        self.use_imagenet_normalization()
        self.load_weights_or_mark_untrained(f"GeoWarp baseline {arch}_{pooling}")

    @property
    def dim(self) -> int:
        return self._dim

    def describe(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.encoder((x - self.mean) / self.std)
        return F.normalize(self.pool(f), dim=-1), self.pool_local(f)
