"""Model registry: CIFAR ResNets, pre-activation ResNet-18 and VGG-16-BN; and their horizontal fusion
(:func:`fuse_models`: k models of one architecture as one, for fused seeds)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from rblock_tune.config import MODELS, ModelConfig
from rblock_tune.errors import ConfigError
from rblock_tune.models._fused import (
    FusedLinear,
    Memberwise,
    fuse_models,
    load_member_state,
    member_state,
    member_tensor,
)
from rblock_tune.models._resnet import CifarResNet, PadShortcut, PreActResNet
from rblock_tune.models._vgg import VGG

__all__ = [
    "DEFAULT_DROP_STAGES",
    "DEFAULT_SHORTCUTS",
    "MODELS",
    "CifarResNet",
    "FusedLinear",
    "Memberwise",
    "PadShortcut",
    "PreActResNet",
    "VGG",
    "build_model",
    "fuse_models",
    "load_member_state",
    "member_state",
    "member_tensor",
]

DEFAULT_DROP_STAGES: dict[str, tuple[int, ...]] = {
    "resnet": (2, 3),
    "preact_resnet18": (3, 4),
    "vgg16": (3, 4, 5),
}
"""The spec's placements: after each block of the last two stages of a CIFAR ResNet and
of stages 3 and 4 of pre-act ResNet-18; after each convolution of VGG's last three stages."""


def build_model(
    config: ModelConfig,
    num_classes: int,
    drop: Callable[[], nn.Module] | None = None,
    in_channels: int = 3,
) -> nn.Module:
    """Build the network named by ``config.name``.

    Args:
        config: model name, drop-layer stages and shortcut (``None`` = the defaults).
        num_classes: number of classes of the dataset.
        drop: zero-argument factory of drop layers, e.g.
            :func:`rblock_tune.regularizers.drop_factory`; None builds no drop layers.
        in_channels: image channels.

    Raises:
        ConfigError: for an unknown model name.
    """
    name = config.name
    if name not in MODELS:
        raise ConfigError(f"model.name={name!r} is not allowed: must be one of {', '.join(MODELS)}")
    if name.startswith("resnet"):
        stages = config.drop_stages or DEFAULT_DROP_STAGES["resnet"]
        shortcut = config.resolved_shortcut or "A"
        return CifarResNet(int(name[len("resnet") :]), num_classes, drop, stages, in_channels, shortcut)
    if name == "preact_resnet18":
        stages = config.drop_stages or DEFAULT_DROP_STAGES[name]
        return PreActResNet(num_classes, drop, stages, in_channels, shortcut=config.resolved_shortcut or "B")
    stages = config.drop_stages or DEFAULT_DROP_STAGES["vgg16"]
    return VGG(num_classes, drop, stages, in_channels)
