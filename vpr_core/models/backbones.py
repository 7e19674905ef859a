"""ResNet and VGG16 feature extractors with torchvision's parameter names.

Written here (no torchvision dependency) so that checkpoints saved from torchvision
models - CosPlace, GeoWarp baselines - load strictly. The CosPlace layout keeps the
children of ``resnet`` minus avgpool/fc in an ``nn.Sequential``: conv1=0, bn1=1,
relu=2, maxpool=3, layer1..4=4..7.
"""

from __future__ import annotations

from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # stride on 3x3 (ResNet v1.5)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


RESNET_SPECS: dict[int, tuple[type[nn.Module], list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


def _layer(block, cin: int, planes: int, n: int, stride: int) -> tuple[nn.Sequential, int]:
    cout = planes * block.expansion
    down = None
    if stride != 1 or cin != cout:
        down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    blocks = [block(cin, planes, stride, down)] + [block(cout, planes) for _ in range(n - 1)]
    return nn.Sequential(*blocks), cout


def resnet_trunk(depth: int, last_layer: int = 4) -> tuple[nn.Sequential, int]:
    """ResNet children up to ``layer{last_layer}`` as a Sequential; returns (trunk, channels)."""
    if depth not in RESNET_SPECS:
        raise ValueError(f"ResNet depth must be one of {sorted(RESNET_SPECS)}")
    block, counts = RESNET_SPECS[depth]
    mods: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    c = 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts)):
        if i >= last_layer:
            break
        layer, c = _layer(block, c, planes, n, 1 if i == 0 else 2)
        mods.append(layer)
    return nn.Sequential(*mods), c


VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_features(drop_last: int = 2) -> tuple[nn.Sequential, int]:
    """torchvision ``vgg16().features`` minus its last ``drop_last`` modules (CosPlace drops ReLU+pool)."""
    mods: list[nn.Module] = []
    c = 3
    for v in VGG16_CFG:
        if v == "M":
            mods.append(nn.MaxPool2d(2, 2))
        else:
            mods += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            c = int(v)
    return nn.Sequential(*(mods[: len(mods) - drop_last] if drop_last else mods)), 512


class NamedResNet(nn.Module):
    """torchvision ``resnetN`` with its attribute names (``conv1``, ``bn1``, ``layer1``...), cut after
    ``layer{last_layer}``: the layout of checkpoints that keep the torchvision model itself (MixVPR's
    ``backbone.model.*``), as opposed to CosPlace's Sequential of its children."""

    def __init__(self, depth: int, last_layer: int = 4) -> None:
        super().__init__()
        trunk, self.out_channels = resnet_trunk(depth, last_layer)
        children = list(trunk)
        self.conv1, self.bn1, self.relu, self.maxpool = children[:4]
        self.layers = [f"layer{i + 1}" for i in range(len(children) - 4)]
        for name, layer in zip(self.layers, children[4:]):
            self.add_module(name, layer)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.layers:
            x = getattr(self, name)(x)
        return x
