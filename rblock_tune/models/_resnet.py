"""CIFAR ResNets (He et al. 2016, section 4.2) and pre-activation ResNet-18 (He et al. 2016b).

Stages receive drop-layer *factories*; one small function decides placement: a drop
layer goes after every residual block of the stages listed in ``drop_stages``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["CifarResNet", "PreActResNet"]

DropFactory = Callable[[], nn.Module]


def _stage_drop(stage: int, drop_stages: Sequence[int], factory: DropFactory | None) -> DropFactory | None:
    """The factory when ``stage`` (1-based) takes drop layers, else None."""
    return factory if factory is not None and stage in drop_stages else None


class _BasicBlock(nn.Module):
    """Post-activation basic block; a 1x1 conv + BN projection when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class _PreActBlock(nn.Module):
    """Pre-activation basic block (BN-ReLU-conv twice)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + shortcut


def _make_stage(
    block: type[nn.Module],
    in_planes: int,
    planes: int,
    n_blocks: int,
    stride: int,
    drop: DropFactory | None,
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_blocks):
        layers.append(block(in_planes if i == 0 else planes, planes, stride if i == 0 else 1))
        if drop is not None:
            layers.append(drop())
    return nn.Sequential(*layers)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: three stages of n basic blocks, 16/32/64 channels.

    Shortcuts that change shape use a 1x1 convolution with BN (option B of the paper),
    a choice of ours. Any input size works (global average pooling).

    Args:
        depth: 8, 20, 32, 56, 110, ... (``(depth - 2) % 6 == 0``).
        num_classes: number of output logits.
        drop: factory of drop layers, or None for none.
        drop_stages: 1-based stages whose blocks are each followed by a drop layer.
        in_channels: image channels.
    """

    def __init__(
        self,
        depth: int,
        num_classes: int,
        drop: DropFactory | None = None,
        drop_stages: Sequence[int] = (2, 3),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1, but got {depth=}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)
        )
        self.stage1 = _make_stage(_BasicBlock, 16, 16, n, 1, _stage_drop(1, drop_stages, drop))
        self.stage2 = _make_stage(_BasicBlock, 16, 32, n, 2, _stage_drop(2, drop_stages, drop))
        self.stage3 = _make_stage(_BasicBlock, 32, 64, n, 2, _stage_drop(3, drop_stages, drop))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class PreActResNet(nn.Module):
    """Pre-activation ResNet-18 for small images: a 3x3 stem and four stages of 2 blocks.

    Args:
        num_classes: number of output logits.
        drop: factory of drop layers, or None for none.
        drop_stages: 1-based stages (of 4) whose blocks are each followed by a drop layer.
        in_channels: image channels.
        blocks: blocks per stage ((2, 2, 2, 2) is ResNet-18).
    """

    def __init__(
        self,
        num_classes: int,
        drop: DropFactory | None = None,
        drop_stages: Sequence[int] = (3, 4),
        in_channels: int = 3,
        blocks: Sequence[int] = (2, 2, 2, 2),
    ) -> None:
        super().__init__()
        widths = (64, 128, 256, 512)
        self.stem = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        stages: list[nn.Module] = []
        in_planes = 64
        for i, (width, n) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            drop_here = _stage_drop(i + 1, drop_stages, drop)
            stages.append(_make_stage(_PreActBlock, in_planes, width, n, stride, drop_here))
            in_planes = width
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(512)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.stages(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
