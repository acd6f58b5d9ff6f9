"""VGG-16 with batch norm (Simonyan & Zisserman 2015) for small images."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["VGG"]

_VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG(nn.Module):
    """VGG-16-BN: five stages of 3x3 conv-BN-ReLU, each ended by 2x2 max-pooling.

    A drop layer follows each convolution (after its ReLU) of the stages in
    ``drop_stages``. The classifier is one linear layer on globally pooled features,
    as usual for CIFAR-sized inputs.

    Args:
        num_classes: number of output logits.
        drop: factory of drop layers, or None for none.
        drop_stages: 1-based stages (of 5) whose convolutions are each followed by a drop layer.
        in_channels: image channels.
    """

    def __init__(
        self,
        num_classes: int,
        drop: Callable[[], nn.Module] | None = None,
        drop_stages: Sequence[int] = (3, 4, 5),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for stage, widths in enumerate(_VGG16, start=1):
            for width in widths:
                layers += [
                    nn.Conv2d(channels, width, 3, 1, 1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                if drop is not None and stage in drop_stages:
                    layers.append(drop())
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))
