"""Pure mask samplers for every regularizer variant (spec: ``shared/spec/rblock.md``).

All masks are per sample and per channel, shape (B, C, H, W), 1 = keep and 0 = drop,
and unscaled. Every random draw comes from the optional ``generator`` (else torch's
global RNG), on ``device``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import torch
import torch.nn.functional as F

from rblock_tune.errors import ConfigError
from rblock_tune.variants import VARIANT_TABLE, check_drop_prob, get_variant

__all__ = ["dropblock_gamma", "expected_dropblock_rate", "grow_blocks", "mask_drop_prob", "sample_masks"]

Shape = tuple[int, int, int, int]
Sampler = Callable[[Shape, float, int, torch.Generator | None, torch.device | None], tuple[torch.Tensor, ...]]
"""A variant's mask sampler: (shape, p, b, generator, device) -> its masks (see :func:`sample_masks`)."""


def _check_args(variant: str, shape: Sequence[int], drop_prob: float, block_size: int) -> Shape:
    get_variant(variant)
    if len(shape) != 4 or any(int(s) < 1 for s in shape):
        raise ConfigError(f"shape must be (B, C, H, W) with positive sizes, but got {tuple(shape)}")
    check_drop_prob(drop_prob)  # the mask's own rate: below 1 for every variant
    if block_size < 1:
        raise ConfigError(f"block_size must be >= 1, but got {block_size=}")
    b, c, h, w = (int(s) for s in shape)
    return b, c, h, w


def dropblock_gamma(drop_prob: float, block_size: int, height: int, width: int) -> float:
    """Seed rate of DropBlock (Ghiasi et al. 2018), block size clipped to the map.

    ``gamma = p / b^2 * (H * W) / ((H - b + 1) * (W - b + 1))``
    """
    b = min(block_size, height, width)
    valid = (height - b + 1) * (width - b + 1)
    return drop_prob / (b * b) * (height * width) / valid


def expected_dropblock_rate(drop_prob: float, block_size: int, height: int, width: int) -> float:
    """Exact expected share of units a D(p, b) mask drops.

    Seeds are independent, so a unit covered by k possible seed positions is dropped with
    probability ``1 - (1 - gamma)^k``. Overlapping blocks make this slightly below ``p``.
    """
    b = min(block_size, height, width)
    gamma = min(dropblock_gamma(drop_prob, block_size, height, width), 1.0)
    rows = torch.arange(height)
    cols = torch.arange(width)
    # number of valid seed rows i (0 <= i <= H - b) with i <= r <= i + b - 1
    k_r = torch.minimum(rows, torch.tensor(height - b)) - torch.clamp(rows - b + 1, min=0) + 1
    k_c = torch.minimum(cols, torch.tensor(width - b)) - torch.clamp(cols - b + 1, min=0) + 1
    k = (k_r[:, None] * k_c[None, :]).double()
    return float((1.0 - (1.0 - gamma) ** k).mean())


def mask_drop_prob(variant: str, drop_prob: float, rate_basis: str = "submodel") -> float:
    """The ``drop_prob`` to hand :func:`sample_masks` for a nominal rate p under a rate basis.

    ``sample_masks`` follows the spec literally: for ``bdrop_dml`` and ``sdrop_dml`` its p is the
    rate of the *shared* mask, which the two sub-models split, so each drops about p/2. With
    ``rate_basis="submodel"`` the nominal p is each sub-model's rate instead and the shared mask
    runs at 2p; every other variant drops p per model on either basis.

    Raises:
        ConfigError: an unknown variant or basis, or p out of range (see
            :func:`rblock_tune.variants.check_drop_prob`: a shared rate 2p must be below 1).
    """
    check_drop_prob(drop_prob, variant, rate_basis)
    factor = get_variant(variant).rate_factor(rate_basis)
    return factor * drop_prob if factor != 1.0 else drop_prob


def _coin(
    shape: Sequence[int], prob: float, generator: torch.Generator | None, device: torch.device | None
) -> torch.Tensor:
    """Boolean tensor, True with probability ``prob``."""
    return torch.rand(tuple(shape), generator=generator, device=device) < prob


def grow_blocks(seeds: torch.Tensor, b: int, method: str = "auto") -> torch.Tensor:
    """Dilate boolean seeds (B, C, H - b + 1, W - b + 1) into b x b squares on (B, C, H, W).

    A seed at (i, j) covers rows i..i+b-1 and columns j..j+b-1. ``method``: ``maxpool`` is one
    max-pool over the seeds padded by b - 1 (fast on accelerators); ``shifted`` is 2b shifted ORs,
    rows then columns (about 8x faster than that max-pool on CPU); ``auto`` (what the masks use)
    picks ``shifted`` on CPU and ``maxpool`` elsewhere. Both give the identical result.
    """
    if method not in ("auto", "maxpool", "shifted"):
        raise ConfigError(f"grow_blocks method={method!r} is not allowed: must be auto, maxpool or shifted")
    bsz, ch, vh, vw = seeds.shape
    h, w = vh + b - 1, vw + b - 1
    if b == 1:
        return seeds
    if method == "maxpool" or (method == "auto" and seeds.device.type != "cpu"):
        padded = F.pad(seeds.float(), (b - 1, b - 1, b - 1, b - 1))
        return F.max_pool2d(padded, kernel_size=b, stride=1) > 0
    rows = torch.zeros((bsz, ch, h, vw), dtype=torch.bool, device=seeds.device)
    for d in range(b):
        rows[:, :, d : d + vh, :] |= seeds
    out = torch.zeros((bsz, ch, h, w), dtype=torch.bool, device=seeds.device)
    for d in range(b):
        out[:, :, :, d : d + vw] |= rows
    return out


def _dropblock(
    shape: Shape,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    device: torch.device | None,
) -> torch.Tensor:
    """Boolean *dropped* map of D(p, b): seeds in the valid region grown into b x b squares."""
    bsz, ch, h, w = shape
    b = min(block_size, h, w)
    gamma = min(dropblock_gamma(drop_prob, block_size, h, w), 1.0)
    seeds = _coin((bsz, ch, h - b + 1, w - b + 1), gamma, generator, device)
    return grow_blocks(seeds, b)


def _sdrop_assignment(
    shape: Shape, block_size: int, generator: torch.Generator | None, device: torch.device | None
) -> torch.Tensor:
    """Boolean map: True where a unit's grid block goes to sub-model a.

    Each (sample, channel) gets a grid of b x b cells with a random offset in [0, b) on
    each axis (cells clipped at the border) and a fair coin per cell.
    """
    bsz, ch, h, w = shape
    b = min(block_size, h, w)
    n_rows = (h + b - 1) // b + 1
    n_cols = (w + b - 1) // b + 1
    offsets = torch.randint(0, b, (bsz, ch, 2), generator=generator, device=device)
    coins = _coin((bsz, ch, n_rows * n_cols), 0.5, generator, device)
    cell_r = (torch.arange(h, device=device) + offsets[..., 0:1]) // b  # (B, C, H)
    cell_c = (torch.arange(w, device=device) + offsets[..., 1:2]) // b  # (B, C, W)
    index = (cell_r[..., :, None] * n_cols + cell_c[..., None, :]).reshape(bsz, ch, h * w)
    return torch.gather(coins, 2, index).reshape(bsz, ch, h, w)


def _keep(dropped: torch.Tensor) -> torch.Tensor:
    return (~dropped).float()


def sample_masks(
    variant: str,
    shape: Sequence[int],
    drop_prob: float,
    block_size: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, ...]:
    """Sample the unscaled keep-masks of a regularizer variant.

    Args:
        variant: one of ``none``, ``dropout``, ``spatial_dropout``, ``dropblock``,
            ``random_dml``, ``bdrop_dml``, ``sdrop_dml``.
        shape: (B, C, H, W) of the feature map of one sub-model's half of the batch.
        drop_prob: target drop probability p in [0, 1).
        block_size: block size b >= 1, clipped to min(H, W).
        generator: source of every random draw (must live on ``device``); default: global RNG.
        device: device of the masks; default: the generator's device, else CPU.

    Returns:
        One float32 mask in {0, 1} of ``shape`` for a single-model variant (all ones for
        ``none``), or the pair ``(m_a, m_b)`` for a two-sub-model variant:

        * ``random_dml``: two independent draws of D(p, b).
        * ``bdrop_dml``: a shared M = D(p, b) and a fair coin r per (sample, channel);
          ``m_a = M where r else 1``, ``m_b = 1 where r else M``, so
          ``(1 - m_a) + (1 - m_b) == 1 - M`` exactly.
        * ``sdrop_dml``: channels selected with probability p; on a selected channel
          the map is cut into a randomly offset grid of b x b cells and each cell is
          dropped by exactly one sub-model (``m_a + m_b == 1``); other channels keep all.

    Raises:
        ConfigError: on an unknown variant or an out-of-range argument.

    Reference: Wang & Hu, "R-Block: Regularized Block of Dropout for convolutional
    networks", arXiv 2307.15150.
    """
    bsz, ch, h, w = _check_args(variant, shape, drop_prob, block_size)
    if device is None and generator is not None:
        device = generator.device
    dev = torch.device(device) if device is not None else None
    return _SAMPLERS[variant]((bsz, ch, h, w), drop_prob, block_size, generator, dev)


def _sample_none(
    full: Shape,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    dev: torch.device | None,
) -> tuple[torch.Tensor, ...]:
    return (torch.ones(full, device=dev),)


def _sample_dropout(
    full: Shape,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    dev: torch.device | None,
) -> tuple[torch.Tensor, ...]:
    return (_keep(_coin(full, drop_prob, generator, dev)),)


def _sample_spatial_dropout(
    full: Shape,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    dev: torch.device | None,
) -> tuple[torch.Tensor, ...]:
    bsz, ch, _, _ = full
    return (_keep(_coin((bsz, ch, 1, 1), drop_prob, generator, dev)).expand(full),)


def _sample_dropblock(
    full: Shape,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    dev: torch.device | None,
) -> tuple[torch.Tensor, ...]:
    return (_keep(_dropblock(full, drop_prob, block_size, generator, dev)),)


def _sample_random_dml(
    full: Shape,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    dev: torch.device | None,
) -> tuple[torch.Tensor, ...]:
    return (
        _keep(_dropblock(full, drop_prob, block_size, generator, dev)),
        _keep(_dropblock(full, drop_prob, block_size, generator, dev)),
    )


def _sample_bdrop_dml(
    full: Shape,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    dev: torch.device | None,
) -> tuple[torch.Tensor, ...]:
    bsz, ch, _, _ = full
    shared = _dropblock(full, drop_prob, block_size, generator, dev)
    to_a = _coin((bsz, ch, 1, 1), 0.5, generator, dev)
    return _keep(shared & to_a), _keep(shared & ~to_a)


def _sample_sdrop_dml(
    full: Shape,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    dev: torch.device | None,
) -> tuple[torch.Tensor, ...]:
    bsz, ch, _, _ = full
    selected = _coin((bsz, ch, 1, 1), drop_prob, generator, dev)
    to_a = _sdrop_assignment(full, block_size, generator, dev)
    return _keep(selected & to_a), _keep(selected & ~to_a)


_SAMPLERS: Mapping[str, Sampler] = MappingProxyType(
    {
        "none": _sample_none,
        "dropout": _sample_dropout,
        "spatial_dropout": _sample_spatial_dropout,
        "dropblock": _sample_dropblock,
        "random_dml": _sample_random_dml,
        "bdrop_dml": _sample_bdrop_dml,
        "sdrop_dml": _sample_sdrop_dml,
    }
)
"""The mask sampler of every variant of :data:`rblock_tune.variants.VARIANT_TABLE`, by name."""

if _SAMPLERS.keys() != VARIANT_TABLE.keys():
    raise RuntimeError(
        f"mask samplers {sorted(_SAMPLERS)} do not match the variant table {sorted(VARIANT_TABLE)}"
    )
