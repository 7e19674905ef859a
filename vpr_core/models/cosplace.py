"""CosPlace (Berton et al., CVPR 2022): CNN trunk + L2Norm + GeM + FC + L2Norm.

The module tree mirrors the official ``GeoLocalizationNet`` so that the released
``{backbone}_{dim}_cosplace.pth`` files load strictly: ``backbone.N.*``,
``aggregation.1.p``, ``aggregation.3.weight/bias``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import VprError
from .backbones import resnet_trunk, vgg16_features
from .base import GLOBAL_MODELS, GlobalModel
from .layers import Flatten, GeM, L2Norm

BACKBONES = ("ResNet18", "ResNet50", "ResNet101", "ResNet152", "VGG16")
#: Descriptor dimensions of the release files for each backbone.
RELEASED_DIMS = {"ResNet18": (32, 64, 128, 256, 512), "VGG16": (64, 128, 256, 512)}


def make_trunk(backbone: str) -> tuple[nn.Sequential, int]:
    if backbone == "VGG16":
        return vgg16_features(drop_last=2)
    if backbone.startswith("ResNet") and backbone[6:].isdigit():
        return resnet_trunk(int(backbone[6:]))
    raise VprError(f"cosplace: backbone '{backbone}' unknown; choose one of {', '.join(BACKBONES)}")


@GLOBAL_MODELS.register("cosplace")
class CosPlace(GlobalModel):
    name = "cosplace"
    suits = "outdoor street views, with the official CosPlace weights you download (--set weights=...)"
    weights_name = "CosPlace"
    layout_hint = "{backbone}_{dim}_cosplace.pth: backbone.N.*, aggregation.1.p, aggregation.3.weight/bias"
    default_conf = {
        "backbone": "ResNet50",
        "fc_output_dim": 2048,
        "weights": None,  # path to {backbone}_{dim}_cosplace.pth; None = random (labelled untrained)
        "input_size": [512, 384],
        "keep_aspect": True,
        "local_grid": [16, 12],  # layer4 (stride 32) at 512x384
        "batch_size": 8,
    }

    def __init__(self, conf: dict[str, Any] | None = None) -> None:
        super().__init__(conf)
        if self.conf["backbone"] not in BACKBONES:
            raise VprError(
                f"{self.name}: backbone '{self.conf['backbone']}' unknown; choose one of {', '.join(BACKBONES)}"
            )
        self.backbone, channels = make_trunk(self.conf["backbone"])
        self.aggregation = nn.Sequential(
            L2Norm(), GeM(), Flatten(), nn.Linear(channels, int(self.conf["fc_output_dim"])), L2Norm()
        )
        self.use_imagenet_normalization()
        bb, dim = self.conf["backbone"], self.conf["fc_output_dim"]
        self.load_weights_or_mark_untrained(
            f"{self.weights_name} {bb}/{dim} ({self.layout_hint.format(backbone=bb, dim=dim)})"
        )

    @property
    def dim(self) -> int:
        return int(self.conf["fc_output_dim"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aggregation(self.backbone((x - self.mean) / self.std))

    def describe(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.backbone((x - self.mean) / self.std)
        return self.aggregation(f), self.pool_local(f)
