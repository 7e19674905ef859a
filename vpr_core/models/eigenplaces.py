"""EigenPlaces (Berton et al., ICCV 2023): CosPlace's network, trained for viewpoint robustness.

The official ``GeoLocalizationNet_`` is the same module tree as CosPlace (``backbone.N.*`` torchvision children,
``aggregation.1.p`` GeM, ``aggregation.3`` FC), so the released ``{backbone}_{dim}_eigenplaces.pth`` files load
strictly into it (released: ResNet-18 256/512, ResNet-50 and -101 128 to 2048, VGG16 512). The official
evaluation feeds full-resolution, ImageNet-normalised images; here the image keeps its aspect ratio at CosPlace's
pixel budget.
"""

from __future__ import annotations

from .base import GLOBAL_MODELS
from .cosplace import CosPlace


@GLOBAL_MODELS.register("eigenplaces")
class EigenPlaces(CosPlace):
    """EigenPlaces: CosPlace's network trained for viewpoint robustness (ResNet-18/50/101, VGG16)."""

    name = "eigenplaces"
    suits = (
        "outdoor streets seen from other angles, with official EigenPlaces weights (--set weights=...); "
        "0.1 s/image on 2 CPU cores (ResNet-50)"
    )
    weights_name = "EigenPlaces"
    layout_hint = "{backbone}_{dim}_eigenplaces.pth: backbone.N.*, aggregation.1.p, aggregation.3.weight/bias"
