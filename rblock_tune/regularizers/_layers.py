"""``nn.Module`` drop layers: thin wrappers around :func:`sample_masks`.

Single-model layers mask the whole batch. Paired layers expect the paired batch
``[x; x]`` (2B rows) and apply m_a to the first B rows and m_b to the second B rows.
Each sub-model's half is rescaled by (number of units) / (number of kept units),
counted over that half. Every layer is the identity in eval mode and at p = 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from rblock_tune.config import PAIRED_VARIANTS, VARIANTS, RegConfig
from rblock_tune.errors import ConfigError
from rblock_tune.regularizers._masks import sample_masks

__all__ = [
    "BDropDML",
    "DropBlock",
    "DropLayer",
    "ElementDropout",
    "NoDrop",
    "RandomDML",
    "SDropDML",
    "SpatialDropout",
    "build_drop_layer",
    "drop_factory",
    "drop_layers",
    "set_drop_prob",
]


@torch.compiler.disable  # type: ignore[untyped-decorator]
def _sample_eager(
    variant: str,
    shape: tuple[int, int, int, int],
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[torch.Tensor, ...]:
    """Masks are sampled eagerly under ``torch.compile``: explicit generators and the
    boolean block growth stay out of the compiled graph (one graph break per drop layer)."""
    return sample_masks(variant, shape, drop_prob, block_size, generator=generator, device=device)


def _rescale(mask: torch.Tensor) -> torch.Tensor:
    kept = mask.sum()
    return mask * (mask.numel() / kept.clamp(min=1.0))


class DropLayer(nn.Module):
    """Applies one regularizer variant's masks to a (B, C, H, W) feature map.

    Args:
        variant: one of :data:`rblock_tune.config.VARIANTS`.
        drop_prob: drop probability p in [0, 1); a schedule may change ``self.drop_prob``.
        block_size: block size b >= 1, clipped to the feature map at each call.

    Attributes:
        generator: optional ``torch.Generator`` for the masks (default: global RNG).
        paired: True for two-sub-model variants, which need a paired batch.
    """

    def __init__(self, variant: str, drop_prob: float = 0.1, block_size: int = 3) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}, but got {variant=}")
        if not 0.0 <= drop_prob < 1.0:
            raise ConfigError(f"drop_prob must be in [0, 1), but got {drop_prob=}")
        if block_size < 1:
            raise ConfigError(f"block_size must be >= 1, but got {block_size=}")
        self.variant = variant
        self.drop_prob = float(drop_prob)
        self.block_size = int(block_size)
        self.paired = variant in PAIRED_VARIANTS
        self.generator: torch.Generator | None = None

    def extra_repr(self) -> str:
        return f"variant={self.variant}, drop_prob={self.drop_prob:g}, block_size={self.block_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0 or self.variant == "none":
            return x
        rows = x.shape[0]
        if self.paired:
            if rows % 2:
                raise ValueError(
                    f"{self.variant} needs a paired batch [x; x] with an even number of rows, but got {rows}"
                )
            rows //= 2
        shape = (rows, x.shape[1], x.shape[2], x.shape[3])
        masks = _sample_eager(self.variant, shape, self.drop_prob, self.block_size, self.generator, x.device)
        scaled = torch.cat([_rescale(m) for m in masks]) if self.paired else _rescale(masks[0])
        return x * scaled.to(x.dtype)


class NoDrop(DropLayer):
    """The identity (variant ``none``)."""

    def __init__(self, drop_prob: float = 0.0, block_size: int = 1) -> None:
        super().__init__("none", drop_prob, block_size)


class ElementDropout(DropLayer):
    """Element-wise dropout (variant ``dropout``)."""

    def __init__(self, drop_prob: float = 0.1, block_size: int = 1) -> None:
        super().__init__("dropout", drop_prob, block_size)


class SpatialDropout(DropLayer):
    """Whole-channel dropout (variant ``spatial_dropout``)."""

    def __init__(self, drop_prob: float = 0.1, block_size: int = 1) -> None:
        super().__init__("spatial_dropout", drop_prob, block_size)


class DropBlock(DropLayer):
    """DropBlock, Ghiasi et al. 2018 (variant ``dropblock``)."""

    def __init__(self, drop_prob: float = 0.1, block_size: int = 3) -> None:
        super().__init__("dropblock", drop_prob, block_size)


class RandomDML(DropLayer):
    """Two independent DropBlock sub-models on [x; x] (variant ``random_dml``)."""

    def __init__(self, drop_prob: float = 0.1, block_size: int = 3) -> None:
        super().__init__("random_dml", drop_prob, block_size)


class BDropDML(DropLayer):
    """R-Block BDropDML: a shared block mask split between two sub-models (``bdrop_dml``)."""

    def __init__(self, drop_prob: float = 0.1, block_size: int = 3) -> None:
        super().__init__("bdrop_dml", drop_prob, block_size)


class SDropDML(DropLayer):
    """R-Block SDropDML: complementary grid blocks on selected channels (``sdrop_dml``)."""

    def __init__(self, drop_prob: float = 0.1, block_size: int = 3) -> None:
        super().__init__("sdrop_dml", drop_prob, block_size)


_CLASSES: dict[str, Callable[..., DropLayer]] = {
    "none": NoDrop,
    "dropout": ElementDropout,
    "spatial_dropout": SpatialDropout,
    "dropblock": DropBlock,
    "random_dml": RandomDML,
    "bdrop_dml": BDropDML,
    "sdrop_dml": SDropDML,
}


def build_drop_layer(config: RegConfig) -> DropLayer:
    """The drop layer of ``config.variant`` at ``config.drop_prob`` and ``config.block_size``."""
    return _CLASSES[config.variant](drop_prob=config.drop_prob, block_size=config.block_size)


def drop_factory(config: RegConfig) -> Callable[[], nn.Module]:
    """A zero-argument factory of drop layers, for model builders."""
    return lambda: build_drop_layer(config)


def drop_layers(model: nn.Module) -> list[DropLayer]:
    """Every :class:`DropLayer` inside ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, DropLayer)]


def set_drop_prob(model: nn.Module, drop_prob: float) -> None:
    """Set the current drop probability of every drop layer in ``model``."""
    for layer in drop_layers(model):
        layer.drop_prob = float(drop_prob)
