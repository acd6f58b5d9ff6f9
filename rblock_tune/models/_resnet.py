"""CIFAR ResNets (He et al. 2016, section 4.2) and pre-activation ResNet-18 (He et al. 2016b).

Stages receive drop-layer *factories*; one small function decides placement: a drop
layer goes after every residual block of the stages listed in ``drop_stages``.

Shortcuts that change shape are option ``A`` (identity with stride-2 subsampling and
zero-padded channels: no parameters, as in He et al.'s CIFAR ResNets) or option ``B`` (a
1x1 convolution, with BN in post-activation blocks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CifarResNet", "PreActResNet"]

DropFactory = Callable[[], nn.Module]


def _stage_drop(stage: int, drop_stages: Sequence[int], factory: DropFactory | None) -> DropFactory | None:
    """The factory when ``stage`` (1-based) takes drop layers, else None."""
    return factory if factory is not None and stage in drop_stages else None


class PadShortcut(nn.Module):
    """Option A: the identity, subsampled by ``stride`` and zero-padded to ``planes`` channels
    (the new channels split evenly before and after the old ones)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        if planes < in_planes:
            raise ValueError(f"option A cannot reduce channels, but got {in_planes=} > {planes=}")
        self.stride = stride
        self.before = (planes - in_planes) // 2
        self.after = planes - in_planes - self.before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.before, self.after))


def _check_shortcut(shortcut: str) -> None:
    if shortcut not in ("A", "B"):
        raise ValueError(f"shortcut must be 'A' or 'B', but got {shortcut=}")


class _BasicBlock(nn.Module):
    """Post-activation basic block; when the shape changes, shortcut ``A`` (zero padding) or ``B``
    (1x1 conv + BN)."""

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str = "A") -> None:
        super().__init__()
        _check_shortcut(shortcut)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                self.shortcut = PadShortcut(in_planes, planes, stride)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class _PreActBlock(nn.Module):
    """Pre-activation basic block (BN-ReLU-conv twice); when the shape changes, shortcut ``B``
    (a 1x1 conv of the pre-activated input) or ``A`` (zero padding of the input itself)."""

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str = "B") -> None:
        super().__init__()
        _check_shortcut(shortcut)
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut: nn.Module | None = None
        self.pad: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            if shortcut == "B":
                self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)
            else:
                self.pad = PadShortcut(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        if self.shortcut is not None:
            shortcut = self.shortcut(out)
        else:
            shortcut = self.pad(x) if self.pad is not None else x
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
    shortcut: str,
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_blocks):
        layers.append(block(in_planes if i == 0 else planes, planes, stride if i == 0 else 1, shortcut))
        if drop is not None:
            layers.append(drop())
    return nn.Sequential(*layers)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: three stages of n basic blocks, 16/32/64 channels.

    Shortcuts that change shape are option A by default, as in the paper (ResNet-20 has
    0.27M parameters), or option B (1x1 convolution + BN). Any input size works (global
    average pooling).

    Args:
        depth: 8, 20, 32, 56, 110, ... (``(depth - 2) % 6 == 0``).
        num_classes: number of output logits.
        drop: factory of drop layers, or None for none.
        drop_stages: 1-based stages whose blocks are each followed by a drop layer.
        in_channels: image channels.
        shortcut: ``A`` (zero-padded identity) or ``B`` (projection).
    """

    def __init__(
        self,
        depth: int,
        num_classes: int,
        drop: DropFactory | None = None,
        drop_stages: Sequence[int] = (2, 3),
        in_channels: int = 3,
        shortcut: str = "A",
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1, but got {depth=}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)
        )
        self.stage1 = _make_stage(_BasicBlock, 16, 16, n, 1, _stage_drop(1, drop_stages, drop), shortcut)
        self.stage2 = _make_stage(_BasicBlock, 16, 32, n, 2, _stage_drop(2, drop_stages, drop), shortcut)
        self.stage3 = _make_stage(_BasicBlock, 32, 64, n, 2, _stage_drop(3, drop_stages, drop), shortcut)
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
        shortcut: ``B`` (1x1 projection, the usual form of this network) or ``A`` (zero padding).
    """

    def __init__(
        self,
        num_classes: int,
        drop: DropFactory | None = None,
        drop_stages: Sequence[int] = (3, 4),
        in_channels: int = 3,
        blocks: Sequence[int] = (2, 2, 2, 2),
        shortcut: str = "B",
    ) -> None:
        super().__init__()
        widths = (64, 128, 256, 512)
        self.stem = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        stages: list[nn.Module] = []
        in_planes = 64
        for i, (width, n) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            drop_here = _stage_drop(i + 1, drop_stages, drop)
            stages.append(_make_stage(_PreActBlock, in_planes, width, n, stride, drop_here, shortcut))
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
