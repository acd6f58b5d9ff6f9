"""The boolean dropped maps the drop layers use (``sample_dropped``) against the float masks
(``sample_masks``): the same draws, and layers whose output is exactly the spec's formula."""

from __future__ import annotations

import pytest
import torch

from rblock_tune.config import PAIRED_VARIANTS, VARIANTS, RegConfig
from rblock_tune.regularizers import (
    build_drop_layer,
    grow_blocks,
    mask_drop_prob,
    sample_dropped,
    sample_masks,
)

SHAPES = [(4, 3, 8, 9), (2, 5, 16, 16), (3, 2, 5, 3), (1, 1, 1, 1)]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("block_size", [1, 3, 7])
def test_dropped_maps_are_the_masks_draws(
    variant: str, shape: tuple[int, int, int, int], block_size: int
) -> None:
    g_masks = torch.Generator().manual_seed(21)
    g_dropped = torch.Generator().manual_seed(21)
    masks = sample_masks(variant, shape, 0.4, block_size, generator=g_masks)
    dropped = sample_dropped(variant, shape, 0.4, block_size, generator=g_dropped)
    assert dropped.dtype == torch.bool
    assert dropped.shape[0] == len(masks) == (2 if variant in PAIRED_VARIANTS else 1)
    assert dropped.shape[1:3] == shape[:2]
    for m, d in zip(masks, dropped, strict=True):
        assert torch.equal(m, (~d).float().expand(shape))
    # the same random numbers were consumed
    assert torch.equal(g_masks.get_state(), g_dropped.get_state())


@pytest.mark.parametrize(("h", "w", "b"), [(5, 9, 5), (9, 5, 5), (4, 4, 4), (6, 11, 2), (1, 7, 1)])
def test_shifted_growth_at_the_borders(h: int, w: int, b: int) -> None:
    """Blocks as tall or as wide as the map, and many planes: no dilation leaks into the next row
    or the next plane of the flat map."""
    seeds = torch.rand(6, 5, h - b + 1, w - b + 1, generator=torch.Generator().manual_seed(h * w + b)) < 0.3
    assert torch.equal(grow_blocks(seeds, b, "shifted"), grow_blocks(seeds, b, "maxpool"))


@pytest.mark.parametrize("sampler", ["auto", "dense"])
@pytest.mark.parametrize("variant", VARIANTS[1:])
def test_layer_output_is_exactly_x_times_the_rescaled_masks(variant: str, sampler: str) -> None:
    """``x * cat(m_i * units / kept_i)`` bit for bit, with the seeds drawn as ``reg.mask_sampler``
    says, and the rates from the same counts."""
    layer = build_drop_layer(RegConfig(variant=variant, drop_prob=0.2, block_size=3, mask_sampler=sampler))
    layer.train()
    layer.generator = torch.Generator().manual_seed(4)
    x = torch.randn(12, 6, 10, 10, generator=torch.Generator().manual_seed(5))
    out = layer(x)
    half = 6 if layer.paired else 12
    p = mask_drop_prob(variant, 0.2, layer.rate_basis)
    masks = sample_masks(
        variant, (half, 6, 10, 10), p, 3, generator=torch.Generator().manual_seed(4), sampler=sampler
    )
    if variant in ("dropblock", "random_dml", "bdrop_dml"):  # the other sampler draws other masks
        other = "dense" if sampler == "auto" else "sparse"
        unlike = sample_masks(
            variant, (half, 6, 10, 10), p, 3, generator=torch.Generator().manual_seed(4), sampler=other
        )
        assert any(not torch.equal(a, b) for a, b in zip(masks, unlike, strict=True))
    kept = [m.sum() for m in masks]
    scaled = [m * (m.numel() / k.clamp(min=1.0)) for m, k in zip(masks, kept, strict=True)]
    assert torch.equal(out, x * torch.cat(scaled))
    rates = layer.realised_rates()
    assert rates == tuple(1.0 - float(k) / masks[0].numel() for k in kept)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("broadcast", [False, True])
def test_rescaled_masks_count_every_unit_exactly_in_any_dtype(dtype: torch.dtype, broadcast: bool) -> None:
    """The kept units of each half are exact counts (a bfloat16 sum of 60,000 ones would not be), and
    each mask is 0 where dropped and its half's ``units / kept`` elsewhere."""
    from rblock_tune.regularizers._layers import _scaled_masks

    shape = (2, 30, 8, 1, 1) if broadcast else (2, 30, 8, 16, 16)
    dropped = torch.rand(shape, generator=torch.Generator().manual_seed(9)) < torch.tensor([0.1, 0.3]).view(
        2, 1, 1, 1, 1
    )
    units = 30 * 8 * 16 * 16
    per_value = units // dropped[0].numel()
    masks, kept = _scaled_masks(dropped, units, dtype)
    exact = (units - per_value * torch.count_nonzero(dropped.view(2, -1), dim=1)).float()
    assert torch.equal(kept, exact)
    scale = (units / exact).to(dtype)
    expected = torch.where(dropped, torch.zeros((), dtype=dtype), scale.view(2, 1, 1, 1, 1))
    assert masks.dtype == dtype and torch.equal(masks, expected.view(60, *shape[2:]))
