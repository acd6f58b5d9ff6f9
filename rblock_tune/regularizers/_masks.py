"""Pure mask samplers for every regularizer variant (spec: ``shared/spec/rblock.md``).

All masks are per sample and per channel, shape (B, C, H, W), 1 = keep and 0 = drop,
and unscaled. Every random draw comes from the optional ``generator`` (else torch's
global RNG), on ``device``.

Each variant's sampler draws boolean *dropped* maps, stacked per sub-model: a tensor
(n, B, C, H, W), or (n, B, C, 1, 1) where a variant's map is constant over the plane
(``spatial_dropout``). :func:`sample_masks` turns them into float keep-masks; the drop
layers read them as they are (:func:`sample_dropped`), so that they count and rescale
both halves of a paired batch in one pass each. Both draw the same random numbers in the
same order, so a generator state gives the same masks either way.

DropBlock's seeds (in ``dropblock``, ``random_dml`` and ``bdrop_dml``) are independent
Bernoulli(gamma) draws over the valid seed positions, drawn one of two ways
(``reg.mask_sampler``, :func:`seed_sampler`): ``dense`` compares one uniform per position with
gamma, as the first versions of rblock-tune did; ``sparse`` draws the gaps between successive
seeds, geometric with parameter gamma, so about gamma * N random numbers for N positions (gamma is
a few percent: 30 to 40 times fewer, and a CPU step of a paired variant spends 1-2% of its time
on its masks instead of 3-6%). The two give the same distribution of masks, but other masks for a
given generator state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import torch
import torch.nn.functional as F

from rblock_tune.config import MASK_SAMPLERS
from rblock_tune.errors import ConfigError
from rblock_tune.variants import VARIANT_TABLE, check_drop_prob, get_variant

__all__ = [
    "dropblock_gamma",
    "expected_dropblock_rate",
    "grow_blocks",
    "mask_drop_prob",
    "sample_dropped",
    "sample_masks",
    "seed_sampler",
]

Shape = tuple[int, int, int, int]
Sampler = Callable[[Shape, float, int, torch.Generator | None, torch.device | None, str], torch.Tensor]
"""A variant's sampler: (shape, p, b, generator, device, seed sampler) -> its boolean dropped maps,
stacked per sub-model (see :func:`sample_dropped`); the seed sampler is ``sparse`` or ``dense``."""


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
    max-pool over the seeds padded by b - 1 (fast on accelerators); ``shifted`` places the seeds in
    a zero-padded map and ORs the flat map with itself shifted by 1..b-1 columns, then by 1..b-1
    rows (2(b - 1) contiguous ORs: far faster than that max-pool on CPU); ``auto`` (what the
    masks use) picks ``shifted`` on CPU and ``maxpool`` elsewhere. Both give the identical result.
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
    placed = torch.zeros((bsz, ch, h, w), dtype=torch.bool, device=seeds.device)
    placed[:, :, :vh, :vw] = seeds
    return _grow_placed(placed, b)


def _grow_placed(placed: torch.Tensor, b: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Dilate seeds held in the top-left (H - b + 1, W - b + 1) corner of a zero-padded boolean
    map (B, C, H, W) into b x b squares, into ``out`` (a new tensor by default).

    On the flat map a shift by d columns (d < b) crosses into the row before only from its last
    b - 1 columns, which are zero; a shift by d rows crosses into the plane before only from its
    last b - 1 rows, zero as well. So 2(b - 1) ORs of contiguous 1-d slices dilate exactly.
    """
    width = placed.shape[-1]
    flat = placed.reshape(-1)
    cols = flat.clone()
    for d in range(1, b):
        cols[d:] |= flat[:-d]
    grown = torch.empty_like(placed) if out is None else out
    rows = grown.view(-1)
    rows.copy_(cols)
    for d in range(1, b):
        rows[d * width :] |= cols[: -d * width]
    return grown


def _dropblock(
    shape: Shape,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    device: torch.device | None,
    out: torch.Tensor | None = None,
    *,
    sampler: str,
) -> torch.Tensor:
    """Boolean *dropped* map of D(p, b): seeds in the valid region grown into b x b squares
    (into ``out`` when given: a boolean tensor of ``shape``); ``sampler``: ``sparse`` draws the
    seeds' positions (:func:`_seed_positions`), ``dense`` one uniform per position."""
    bsz, ch, h, w = shape
    b = min(block_size, h, w)
    gamma = min(dropblock_gamma(drop_prob, block_size, h, w), 1.0)
    vh, vw = h - b + 1, w - b + 1
    if sampler == "sparse":
        placed = torch.zeros(shape, dtype=torch.bool, device=device)
        at = _seed_positions(bsz * ch * vh * vw, gamma, generator, device)
        plane, rest = at // (vh * vw), at % (vh * vw)
        placed.view(-1)[plane * (h * w) + (rest // vw) * w + rest % vw] = True
        if b == 1:
            return placed if out is None else out.copy_(placed)
        return _grow_placed(placed, b, out)
    draws = torch.rand((bsz, ch, vh, vw), generator=generator, device=device)
    if b > 1 and draws.device.type == "cpu":
        # the seeds land straight in the zero-padded map that the shifted ORs grow
        placed = torch.zeros(shape, dtype=torch.bool, device=draws.device)
        torch.lt(draws, gamma, out=placed[:, :, :vh, :vw])
        return _grow_placed(placed, b, out)
    grown = grow_blocks(draws < gamma, b)
    return grown if out is None else out.copy_(grown)


_MARGIN_SD, _MARGIN_MIN = 6.0, 16
"""Gaps drawn at once beyond the expected number of seeds (standard deviations, and at least): the
draws fall short of the end about once in 10^9 maps, and then more are drawn (the tests shrink it)."""


def _seed_positions(
    n: int, gamma: float, generator: torch.Generator | None, device: torch.device | None
) -> torch.Tensor:
    """Flat positions, in ``[0, n)`` and increasing, of an independent Bernoulli(``gamma``) draw at each
    of ``n`` positions, drawn as the gaps between successive seeds: a gap is geometric, P(gap = k) =
    (1 - gamma)^k gamma, the floor of log(V) / log(1 - gamma) for V uniform on (0, 1] (float64). About
    gamma * n random numbers instead of one per position."""
    if gamma <= 0.0:
        return torch.empty(0, dtype=torch.int64, device=device)
    if gamma >= 1.0:
        return torch.arange(n, device=device)
    log_q = math.log1p(-gamma)
    found: list[torch.Tensor] = []
    last = -1  # the last position drawn so far
    while True:
        expected = (n - 1 - last) * gamma
        count = max(int(expected + _MARGIN_SD * math.sqrt(expected) + _MARGIN_MIN), 1)
        uniform = torch.rand(count, generator=generator, device=device, dtype=torch.float64)
        gaps = torch.floor(torch.log1p(-uniform) / log_q).long()
        positions = last + torch.cumsum(gaps + 1, 0)
        inside = positions[positions < n]
        found.append(inside)
        if inside.numel() < count:
            return torch.cat(found) if len(found) > 1 else inside
        last = int(positions[-1])


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
    coins = _coin((bsz, ch, n_rows * n_cols), 0.5, generator, device).view(bsz, ch, n_rows, n_cols)
    cell_r = (torch.arange(h, device=device) + offsets[..., 0:1]) // b  # (B, C, H)
    cell_c = (torch.arange(w, device=device) + offsets[..., 1:2]) // b  # (B, C, W)
    # the coin of cell (cell_r, cell_c): pick each unit's cell row, then its cell column
    rows = torch.gather(coins, 2, cell_r[..., None].expand(bsz, ch, h, n_cols))  # (B, C, H, n_cols)
    return torch.gather(rows, 3, cell_c[..., None, :].expand(bsz, ch, h, w))


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
    sampler: str = "auto",
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
        sampler: how DropBlock's seeds are drawn (``reg.mask_sampler``: ``auto``, ``sparse``,
            ``dense``; :func:`seed_sampler`): the same distribution, other draws for a seed.

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
    dropped = sample_dropped(
        variant, shape, drop_prob, block_size, generator=generator, device=device, sampler=sampler
    )
    full = _check_args(variant, shape, drop_prob, block_size)
    if variant == "none":
        return (torch.ones(full, device=dropped.device),)
    return tuple(_keep(d).expand(full) for d in dropped)


def sample_dropped(
    variant: str,
    shape: Sequence[int],
    drop_prob: float,
    block_size: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    sampler: str = "auto",
) -> torch.Tensor:
    """The boolean *dropped* maps behind :func:`sample_masks`, stacked per sub-model.

    Same arguments and the same random draws as :func:`sample_masks`, so
    ``sample_masks(...)[i] == ~sample_dropped(...)[i]`` (broadcast to ``shape``) for the same
    generator state.

    Returns:
        A boolean tensor (n, B, C, H, W), True = dropped, with n = 1 for a single-model variant
        and n = 2 (m_a's map, then m_b's) for a two-sub-model one; (n, B, C, 1, 1) where the
        variant drops whole channels (``spatial_dropout``) or nothing (``none``).

    Raises:
        ConfigError: on an unknown variant or an out-of-range argument.
    """
    full = _check_args(variant, shape, drop_prob, block_size)
    dev = _device(device, generator)
    return _SAMPLERS[variant](full, drop_prob, block_size, generator, dev, seed_sampler(sampler, dev))


def seed_sampler(sampler: str, device: torch.device | str | None = None) -> str:
    """How DropBlock's seeds are drawn on ``device`` under ``reg.mask_sampler`` = ``sampler``:
    ``sparse`` or ``dense`` as asked, and for ``auto`` ``sparse`` on CPU (far fewer random numbers:
    about gamma * N for N seed positions) and ``dense`` elsewhere (an accelerator draws one number per
    position in parallel, and the gaps' running sum would cost it a synchronisation per map).

    Raises:
        ConfigError: ``sampler`` is none of :data:`rblock_tune.config.MASK_SAMPLERS`.
    """
    if sampler not in MASK_SAMPLERS:
        raise ConfigError(
            f"mask sampler {sampler!r} is not allowed: must be one of {', '.join(MASK_SAMPLERS)}"
        )
    if sampler != "auto":
        return sampler
    return "sparse" if device is None or torch.device(device).type == "cpu" else "dense"


def _device(device: torch.device | str | None, generator: torch.Generator | None) -> torch.device | None:
    """The masks' device: ``device``, else the generator's, else None (torch's default)."""
    if device is None and generator is not None:
        device = generator.device
    return torch.device(device) if device is not None else None


def _sample_none(
    full: Shape,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    dev: torch.device | None,
    sampler: str,
) -> torch.Tensor:
    bsz, ch, _, _ = full
    return torch.zeros((1, bsz, ch, 1, 1), dtype=torch.bool, device=dev)


def _sample_dropout(
    full: Shape,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    dev: torch.device | None,
    sampler: str,
) -> torch.Tensor:
    return _coin(full, drop_prob, generator, dev)[None]


def _sample_spatial_dropout(
    full: Shape,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    dev: torch.device | None,
    sampler: str,
) -> torch.Tensor:
    bsz, ch, _, _ = full
    return _coin((bsz, ch, 1, 1), drop_prob, generator, dev)[None]


def _sample_dropblock(
    full: Shape,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    dev: torch.device | None,
    sampler: str,
) -> torch.Tensor:
    return _dropblock(full, drop_prob, block_size, generator, dev, sampler=sampler)[None]


def _sample_random_dml(
    full: Shape,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    dev: torch.device | None,
    sampler: str,
) -> torch.Tensor:
    pair = torch.empty((2, *full), dtype=torch.bool, device=dev)
    _dropblock(full, drop_prob, block_size, generator, dev, out=pair[0], sampler=sampler)
    _dropblock(full, drop_prob, block_size, generator, dev, out=pair[1], sampler=sampler)
    return pair


def _split(shared: torch.Tensor, to_a: torch.Tensor, full: Shape) -> torch.Tensor:
    """The pair (shared & to_a, shared & ~to_a) of shape ``full`` (one operand may broadcast), stacked.

    Computed on the maps' bytes (``uint8`` views of the booleans: a product, then a difference):
    broadcasting boolean ops take a slow path on CPU (1.7 ms against 0.07 ms for a 1M-unit map)."""
    pair = torch.empty((2, *full), dtype=torch.bool, device=shared.device)
    mine, theirs = pair.view(torch.uint8)
    torch.mul(shared.view(torch.uint8), to_a.view(torch.uint8), out=mine)
    torch.sub(shared.view(torch.uint8), mine, out=theirs)  # shared - shared & to_a = shared & ~to_a
    return pair


def _sample_bdrop_dml(
    full: Shape,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    dev: torch.device | None,
    sampler: str,
) -> torch.Tensor:
    bsz, ch, _, _ = full
    shared = _dropblock(full, drop_prob, block_size, generator, dev, sampler=sampler)
    to_a = _coin((bsz, ch, 1, 1), 0.5, generator, dev)
    return _split(shared, to_a, full)


def _sample_sdrop_dml(
    full: Shape,
    drop_prob: float,
    block_size: int,
    generator: torch.Generator | None,
    dev: torch.device | None,
    sampler: str,
) -> torch.Tensor:
    bsz, ch, _, _ = full
    selected = _coin((bsz, ch, 1, 1), drop_prob, generator, dev)
    to_a = _sdrop_assignment(full, block_size, generator, dev)
    return _split(selected, to_a, full)


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
"""The sampler of every variant of :data:`rblock_tune.variants.VARIANT_TABLE`, by name."""

if _SAMPLERS.keys() != VARIANT_TABLE.keys():
    raise RuntimeError(
        f"mask samplers {sorted(_SAMPLERS)} do not match the variant table {sorted(VARIANT_TABLE)}"
    )
