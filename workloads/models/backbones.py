"""ResNet backbones with a width multiplier and a small-image stem option.

torchvision's ResNet hard-codes 64 base channels, so the network is assembled here with
scaled widths; at width 1.0 and the ImageNet stem it has exactly torchvision's resnet18/resnet50
layout. The two residual blocks are written out below, module for module as torchvision's
(same parameter names, creation order and so the same initial weights for a seed; stride on the
3x3 conv of the bottleneck): importing torchvision costs ~4 s of CPU in every process that
builds a backbone (tests/test_backbones.py checks the blocks against torchvision's).
"""
from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm and an identity (or projected) shortcut."""
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, each with batch norm; shortcut as above."""
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))

ARCHS = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet50": (Bottleneck, [3, 4, 6, 3])}
STEMS = ("imagenet", "cifar")


class ResNetBackbone(nn.Module):
    """ResNet trunk returning pooled features (no classifier)."""

    def __init__(self, arch: str = "resnet18", width: float = 1.0, stem: str = "imagenet"):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown backbone arch {arch!r}; choose one of {sorted(ARCHS)}")
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of {STEMS}")
        if width <= 0:
            raise ValueError("backbone width must be > 0")
        block, layers = ARCHS[arch]
        widths = [max(8, int(round(c * width))) for c in (64, 128, 256, 512)]
        self.inplanes = widths[0]
        if stem == "imagenet":
            # 7x7/2 conv + 3x3/2 max-pool: 4x cheaper per pixel than the CIFAR stem
            self.stem = nn.Sequential(
                nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True))
        self.layer1 = self._make_layer(block, widths[0], layers[0], 1)
        self.layer2 = self._make_layer(block, widths[1], layers[1], 2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], 2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = widths[3] * block.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        mods = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        mods += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps after the stem and each residual stage (for sensitivity analyses)."""
        outs = [self.stem(x)]
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            outs.append(layer(outs[-1]))
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.pool(x), 1)


def build_backbone(arch: str = "resnet18", width: float = 1.0, stem: str = "imagenet", **vit) -> nn.Module:
    """A ResNet (``arch`` resnet18/resnet50, ``width``, ``stem``) or a Vision Transformer
    (``arch`` vit_tiny/vit_small/vit_base and the ``vit`` options of :class:`.vit.ViTBackbone`:
    image_size, patch_size, depth, num_heads, pos_embed, frozen_patch_embed, init)."""
    if arch.startswith("vit_"):
        from .vit import ViTBackbone
        return ViTBackbone(arch, **vit)
    if vit:
        raise ValueError(f"{sorted(vit)} are Vision Transformer options; {arch} is a ResNet")
    return ResNetBackbone(arch, width, stem)
