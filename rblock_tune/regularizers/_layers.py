"""``nn.Module`` drop layers: thin wrappers around the mask samplers (:func:`sample_masks`).

Single-model layers mask the whole batch. Paired layers expect the paired batch
``[x; x]`` (2B rows) and apply m_a to the first B rows and m_b to the second B rows.
Each sub-model's half is rescaled by (number of units) / (number of kept units),
counted over that half. Every layer is the identity in eval mode and at p = 0.

Each layer also measures what it does: the share of units its masks actually dropped,
per sub-model, summed over its training-mode calls since :func:`reset_drop_rates`
(:func:`realised_drop_rates` averages it over calls and layers). And every layer, whatever
its variant (``none`` included), can be switched to a common DropBlock *probe*
(:func:`dropblock_probe`), so that models of different variants are measured by one instrument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import torch
from torch import nn

from rblock_tune.config import RegConfig
from rblock_tune.errors import ConfigError
from rblock_tune.regularizers._masks import mask_drop_prob, sample_dropped, seed_sampler
from rblock_tune.variants import VARIANT_TABLE, check_drop_prob, get_variant

__all__ = [
    "LAYER_CONSTRUCTORS",
    "BDropDML",
    "DropBlock",
    "DropLayer",
    "ElementDropout",
    "LayerConstructor",
    "NoDrop",
    "RandomDML",
    "SDropDML",
    "SpatialDropout",
    "build_drop_layer",
    "compile_model",
    "drop_factory",
    "drop_layers",
    "dropblock_probe",
    "realised_drop_rates",
    "reset_drop_rates",
    "set_drop_prob",
]


def _scaled_masks(dropped: torch.Tensor, units: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Rescaled keep-masks of ``n`` sub-models from their stacked dropped maps, in one pass.

    Args:
        dropped: boolean (n, B, C, H, W) or (n, B, C, 1, 1), as :func:`sample_dropped` returns.
        units: units of one sub-model's half of the feature map (B * C * H * W).
        dtype: dtype of the masks (the feature map's).

    Returns:
        ``(masks, kept)``: masks (n * B, C, H, W) (or (n * B, C, 1, 1)), 0 where dropped and
        ``units / kept`` of its own half elsewhere; kept (n,) float32, the kept units per half.
    """
    n, rows = dropped.shape[0], dropped.shape[1]
    per_value = units // dropped[0].numel()  # units each map value stands for (H * W when broadcast)
    keep = torch.sub(1, dropped.view(torch.uint8)).to(dtype)  # on the bytes: a boolean path is slower
    # kept units per half, exactly (whatever ``dtype``): float32 sums of 0/1 per sample, exact below
    # 2^24 units (else float64), then a float64 sum over the half's samples
    exact = torch.float32 if keep[0, 0].numel() < 2**24 else torch.float64
    per_sample = keep.view(n, rows, -1).sum(2, dtype=exact)
    kept = (per_value * per_sample.sum(1, dtype=torch.float64)).float()
    scale = (units / kept.clamp(min=1.0)).to(dtype)  # same float32 arithmetic as mask * (numel / kept)
    masks = keep.mul_(scale.view(n, 1, 1, 1, 1))  # 0 where dropped, the half's scale elsewhere
    return masks.view(n * rows, *dropped.shape[2:]), kept


def _apply_masks(layer: DropLayer, x: torch.Tensor) -> torch.Tensor:
    """Sample, measure and apply ``layer``'s masks to ``x``.

    The masks come as boolean dropped maps, stacked per sub-model (:func:`sample_dropped`, the
    same draws as :func:`sample_masks`); one count gives every half's kept units and one
    ``where`` the rescaled masks of the whole (paired) batch, which multiply ``x`` once.

    Runs eagerly under a model compiled by :func:`compile_model` (one graph break per drop
    layer): explicit generators, the boolean block growth and the layer's rate counters stay out
    of the compiled graph.
    """
    if layer.probe is not None:
        drop_prob, block_size, generator = layer.probe
        shape = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        dropped = sample_dropped(
            "dropblock",
            shape,
            drop_prob,
            block_size,
            generator=generator,
            device=x.device,
            sampler=layer.mask_sampler,
        )
        return x * _scaled_masks(dropped, x[0].numel() * x.shape[0], x.dtype)[0]
    rows = x.shape[0]
    if layer.paired:
        if rows % 2:
            raise ValueError(
                f"{layer.variant} needs a paired batch [x; x] with an even number of rows, but got {rows}"
            )
        rows //= 2
    if layer.drop_prob == 0.0:
        if layer.counting:
            layer._rate_calls += 1  # a step that dropped nothing
        return x
    shape = (rows, x.shape[1], x.shape[2], x.shape[3])
    p = mask_drop_prob(layer.variant, layer.drop_prob, layer.rate_basis)
    dropped = sample_dropped(
        layer.variant,
        shape,
        p,
        layer.block_size,
        generator=layer.generator,
        device=x.device,
        sampler=layer.mask_sampler,
    )
    units = rows * x[0].numel()
    masks, kept = _scaled_masks(dropped, units, x.dtype)
    if layer.counting:
        layer._record(1.0 - kept.double() / units)
    return x * masks


class DropLayer(nn.Module):
    """Applies one regularizer variant's masks to a (B, C, H, W) feature map.

    Args:
        variant: one of :data:`rblock_tune.variants.VARIANTS`.
        drop_prob: nominal drop probability p in [0, 1); a schedule may change ``self.drop_prob``.
        block_size: block size b >= 1, clipped to the feature map at each call.
        rate_basis: ``submodel`` (p is each sub-model's rate; ``bdrop_dml`` and ``sdrop_dml``
            run their shared mask at 2p, so p < 0.5) or ``shared`` (p is the shared mask's
            rate); see :func:`rblock_tune.regularizers.mask_drop_prob`.
        mask_sampler: how DropBlock's seeds are drawn (``auto``, ``sparse``, ``dense``:
            :func:`rblock_tune.regularizers.seed_sampler`), for its own masks and the probe's.

    Attributes:
        generator: optional ``torch.Generator`` for the masks (default: global RNG).
        paired: True for two-sub-model variants, which need a paired batch.
        probe: while set by :func:`dropblock_probe`, ``(drop_prob, block_size, generator)`` of
            a single-model DropBlock mask applied instead of the layer's own masks (in any mode).
        counting: whether training-mode calls count towards :meth:`realised_rates` (a
            measurement pass through the layer's own masks turns it off).
    """

    def __init__(
        self,
        variant: str,
        drop_prob: float = 0.1,
        block_size: int = 3,
        rate_basis: str = "submodel",
        mask_sampler: str = "auto",
    ) -> None:
        super().__init__()
        info = get_variant(variant)
        check_drop_prob(drop_prob, variant, rate_basis)
        if block_size < 1:
            raise ConfigError(f"block_size must be >= 1, but got {block_size=}")
        self.variant = variant
        self.drop_prob = float(drop_prob)
        self.block_size = int(block_size)
        self.rate_basis = rate_basis
        seed_sampler(mask_sampler)  # refuses an unknown one here, not at the first step
        self.mask_sampler = mask_sampler
        self.paired = info.paired
        self._identity = not info.drops
        self._layer_name = info.layer
        self.generator: torch.Generator | None = None
        self.probe: tuple[float, int, torch.Generator] | None = None
        self.counting = True
        self._rate_sum: torch.Tensor | None = None
        self._rate_calls = 0

    def _get_name(self) -> str:
        # the printed module name is the variant's layer (``BDropDML(variant=bdrop_dml, ...)``)
        return self._layer_name

    def extra_repr(self) -> str:
        return (
            f"variant={self.variant}, drop_prob={self.drop_prob:g}, block_size={self.block_size}, "
            f"rate_basis={self.rate_basis}, mask_sampler={self.mask_sampler}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.probe is None and (not self.training or self._identity):
            return x
        return _masks_fn(self, x)

    def _record(self, dropped: torch.Tensor) -> None:
        """Add one call's dropped share per sub-model (a device tensor: no synchronisation)."""
        dropped = dropped.detach().double()
        self._rate_sum = dropped if self._rate_sum is None else self._rate_sum + dropped
        self._rate_calls += 1

    def reset_rates(self) -> None:
        """Forget the calls counted so far."""
        self._rate_sum = None
        self._rate_calls = 0

    def realised_rates(self) -> tuple[float, ...] | None:
        """Mean share of units dropped per sub-model over the training-mode calls since the last
        reset (0 for calls at p = 0), or None when there was none."""
        if self._rate_calls == 0:
            return None
        n = 2 if self.paired else 1
        if self._rate_sum is None:
            return (0.0,) * n
        return tuple(float(v) / self._rate_calls for v in self._rate_sum.tolist())


class LayerConstructor(Protocol):
    """A named drop-layer constructor: a :class:`DropLayer` of one variant."""

    def __call__(
        self,
        drop_prob: float = ...,
        block_size: int = ...,
        rate_basis: str = "submodel",
        mask_sampler: str = "auto",
    ) -> DropLayer: ...


def _constructor(variant: str) -> LayerConstructor:
    """The named constructor of ``variant``'s layer, as its table entry describes it: default p 0.1
    (0 for the identity), default b 3 (1 where the masks ignore b)."""
    info = get_variant(variant)
    default_p = 0.1 if info.drops else 0.0
    default_b = 3 if info.uses_block_size else 1

    def make(
        drop_prob: float = default_p,
        block_size: int = default_b,
        rate_basis: str = "submodel",
        mask_sampler: str = "auto",
    ) -> DropLayer:
        return DropLayer(variant, drop_prob, block_size, rate_basis, mask_sampler)

    make.__name__ = make.__qualname__ = info.layer
    make.__doc__ = f"A :class:`DropLayer` of variant ``{variant}``: {info.summary}."
    return make


LAYER_CONSTRUCTORS: dict[str, LayerConstructor] = {
    v.layer: _constructor(v.name) for v in VARIANT_TABLE.values()
}
"""Every variant's named layer constructor, by its public name (``BDropDML``...)."""

NoDrop = LAYER_CONSTRUCTORS["NoDrop"]
ElementDropout = LAYER_CONSTRUCTORS["ElementDropout"]
SpatialDropout = LAYER_CONSTRUCTORS["SpatialDropout"]
DropBlock = LAYER_CONSTRUCTORS["DropBlock"]
RandomDML = LAYER_CONSTRUCTORS["RandomDML"]
BDropDML = LAYER_CONSTRUCTORS["BDropDML"]
SDropDML = LAYER_CONSTRUCTORS["SDropDML"]


def build_drop_layer(config: RegConfig) -> DropLayer:
    """The drop layer of ``config.variant`` at ``config.drop_prob``, ``config.block_size``,
    ``config.rate_basis`` and ``config.mask_sampler``."""
    return DropLayer(
        config.variant, config.drop_prob, config.block_size, config.rate_basis, config.mask_sampler
    )


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


def reset_drop_rates(model: nn.Module) -> None:
    """Start counting the realised drop rates of every drop layer in ``model`` afresh."""
    for layer in drop_layers(model):
        layer.reset_rates()


def realised_drop_rates(model: nn.Module) -> tuple[float, ...] | None:
    """Share of units dropped per sub-model since :func:`reset_drop_rates`: for each layer the
    mean over its training-mode calls, then the mean over layers (one value for single-model
    variants, ``(a, b)`` for paired ones). None when no drop layer was called in training mode.
    """
    per_layer = [r for r in (layer.realised_rates() for layer in drop_layers(model)) if r is not None]
    if not per_layer:
        return None
    return tuple(sum(values) / len(per_layer) for values in zip(*per_layer, strict=True))


@contextmanager
def dropblock_probe(
    model: nn.Module, drop_prob: float, block_size: int, generator: torch.Generator
) -> Iterator[None]:
    """Within the block, every drop layer of ``model`` (``none``'s identity layers included)
    applies a single-model DropBlock mask D(drop_prob, block_size) drawn from ``generator`` to its
    whole input, in train and eval mode alike, instead of its own masks; nothing is counted in the
    realised rates. Models of any variant with the same weights then give the same outputs.
    """
    layers = drop_layers(model)
    for layer in layers:
        layer.probe = (float(drop_prob), int(block_size), generator)
    try:
        yield
    finally:
        for layer in layers:
            layer.probe = None


_masks_fn: Callable[[DropLayer, torch.Tensor], torch.Tensor] = _apply_masks
"""What a drop layer's forward calls: :func:`_apply_masks`, held out of compiled graphs once
:func:`compile_model` has run in this process."""


def compile_model(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile(model)``, with every drop layer's masks sampled and applied eagerly.

    The drop layers' mask step is wrapped in ``torch.compiler.disable`` here, on the first
    compilation, rather than where it is defined: that wrapper imports torch's compiler (about
    2 s), which every process building a model (a trial worker, ``rblock-tune train``) would
    otherwise pay without compiling anything. Outside compiled code the wrapped step runs as
    before.
    """
    global _masks_fn
    if _masks_fn is _apply_masks:
        _masks_fn = torch.compiler.disable(_apply_masks)  # type: ignore[no-untyped-call]
    compiled: Callable[[torch.Tensor], torch.Tensor] = torch.compile(model)
    return compiled
