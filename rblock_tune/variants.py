"""The regularizer variants: one table of what each one is (spec: ``shared/spec/rblock.md``).

This is the single owner of variant knowledge: names and their order, which variants train two
sub-models, which split one shared mask, the bound on ``drop_prob`` that follows, the public name
of each drop layer, and which variants the report prefers as its baseline. It is pure data and
depends on nothing but :mod:`rblock_tune.errors`, so it sits below :mod:`rblock_tune.config`.
:mod:`rblock_tune.regularizers` attaches the torch side, keyed by the names here: the mask
sampler of each variant (it refuses to import if one is missing) and its drop-layer constructor.

Adding a variant: a row in :data:`VARIANT_TABLE`, a sampler in ``regularizers/_masks.py`` and a
constructor line in ``regularizers/_layers.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from rblock_tune.errors import ConfigError

__all__ = [
    "BASELINE_PREFERENCE",
    "PAIRED_VARIANTS",
    "RATE_BASES",
    "SPLIT_VARIANTS",
    "VARIANTS",
    "VARIANT_TABLE",
    "Variant",
    "check_drop_prob",
    "default_baseline",
    "get_variant",
]

RATE_BASES: tuple[str, ...] = ("submodel", "shared")
"""What ``drop_prob`` means for split variants (:data:`SPLIT_VARIANTS`): each sub-model's drop rate
(``submodel``, the shared mask then runs at 2p) or the shared mask's rate (``shared``, the spec's
literal D(p, b))."""


@dataclass(frozen=True)
class Variant:
    """One regularizer variant.

    Attributes:
        name: the ``reg.variant`` value.
        layer: public name of its drop-layer constructor in :mod:`rblock_tune.regularizers`.
        summary: what its masks do, one line.
        drops: False only for the identity (``none``), whose layer never masks.
        uses_block_size: whether its masks depend on the block size b (its layer's default b is 3,
            else 1).
        paired: two sub-models on a paired batch [x; x], trained with the KL consistency term.
        split: the two sub-models split one shared mask (R-Block), so each drops about half of it;
            on the ``submodel`` basis the shared mask then runs at 2p and p must be below 0.5.
        block_seeds: its masks grow DropBlock seeds D(p, b) (drawn as ``reg.mask_sampler`` says).
        baseline_rank: the report's default baseline is the arm whose variant has the lowest rank;
            None: never a default baseline.
    """

    name: str
    layer: str
    summary: str
    drops: bool = True
    uses_block_size: bool = True
    paired: bool = False
    split: bool = False
    block_seeds: bool = False
    baseline_rank: int | None = None

    def __post_init__(self) -> None:
        if self.split and not self.paired:
            raise RuntimeError(f"variant {self.name!r}: only a paired variant can split a shared mask")

    def rate_factor(self, rate_basis: str) -> float:
        """The mask's drop rate per unit of nominal p on ``rate_basis``: 2 for a split variant on the
        ``submodel`` basis (its shared mask runs at 2p), else 1."""
        return 2.0 if self.split and rate_basis == "submodel" else 1.0

    def max_drop_prob(self, rate_basis: str) -> float:
        """The exclusive upper bound on the nominal p on ``rate_basis`` (the mask's rate stays below 1)."""
        return 1.0 / self.rate_factor(rate_basis)


def _table(*variants: Variant) -> Mapping[str, Variant]:
    table = {v.name: v for v in variants}
    ranks = [v.baseline_rank for v in variants if v.baseline_rank is not None]
    if len(table) != len(variants) or len(set(ranks)) != len(ranks):
        raise RuntimeError("variant names and baseline ranks must be unique")
    return MappingProxyType(table)


VARIANT_TABLE: Mapping[str, Variant] = _table(
    Variant("none", "NoDrop", "the identity", drops=False, uses_block_size=False, baseline_rank=3),
    Variant("dropout", "ElementDropout", "element-wise dropout", uses_block_size=False, baseline_rank=1),
    Variant(
        "spatial_dropout", "SpatialDropout", "whole-channel dropout", uses_block_size=False, baseline_rank=2
    ),
    Variant("dropblock", "DropBlock", "DropBlock, Ghiasi et al. 2018", block_seeds=True, baseline_rank=0),
    Variant(
        "random_dml",
        "RandomDML",
        "two independent DropBlock sub-models on [x; x]",
        paired=True,
        block_seeds=True,
        baseline_rank=4,
    ),
    Variant(
        "bdrop_dml",
        "BDropDML",
        "R-Block BDropDML: a shared block mask split between two sub-models",
        paired=True,
        split=True,
        block_seeds=True,
    ),
    Variant(
        "sdrop_dml",
        "SDropDML",
        "R-Block SDropDML: complementary grid blocks on selected channels",
        paired=True,
        split=True,
    ),
)
"""Every variant by name, single-model ones first."""

VARIANTS: tuple[str, ...] = tuple(VARIANT_TABLE)
"""Every regularizer variant, single-model ones first."""

PAIRED_VARIANTS: tuple[str, ...] = tuple(v.name for v in VARIANT_TABLE.values() if v.paired)
"""Variants that train two sub-models on a paired batch [x; x]."""

SPLIT_VARIANTS: tuple[str, ...] = tuple(v.name for v in VARIANT_TABLE.values() if v.split)
"""Paired variants whose two sub-models split one shared mask (R-Block): each drops about half of it."""

BASELINE_PREFERENCE: tuple[str, ...] = tuple(
    name
    for _, name in sorted(
        (v.baseline_rank, v.name) for v in VARIANT_TABLE.values() if v.baseline_rank is not None
    )
)
"""Default baseline order of the report: the first arm whose ``reg.variant`` comes first here."""


def get_variant(name: str) -> Variant:
    """The table entry of variant ``name``.

    Raises:
        ConfigError: an unknown variant.
    """
    try:
        return VARIANT_TABLE[name]
    except (KeyError, TypeError):
        raise ConfigError(f"variant={name!r} is not allowed: must be one of {', '.join(VARIANTS)}") from None


def default_baseline(variants: Iterable[str]) -> str | None:
    """The variant among ``variants`` that the report prefers as its baseline (see
    :data:`BASELINE_PREFERENCE`), or None when none of them is a baseline method."""
    present = set(variants)
    return next((name for name in BASELINE_PREFERENCE if name in present), None)


def check_drop_prob(
    drop_prob: float,
    variant: str | None = None,
    rate_basis: str = "shared",
    *,
    key: str = "drop_prob",
    basis_key: str = "rate_basis",
) -> None:
    """The one rule for a drop probability: p in [0, 1), and for a split variant on the ``submodel``
    basis p in [0, 0.5) (its shared mask runs at 2p).

    Args:
        drop_prob: the nominal p.
        variant: its variant; None checks only [0, 1) (a bare rate, such as a mask's own).
        rate_basis: the basis p is read on (see :data:`RATE_BASES`).
        key, basis_key: how the error names p and the basis (``reg.drop_prob``, ``reg.rate_basis``
            in a trial config).

    Raises:
        ConfigError: an unknown basis, or p out of range, in one line naming ``key``, p and the range.
    """
    if rate_basis not in RATE_BASES:
        raise ConfigError(
            f"{basis_key} must be one of {', '.join(RATE_BASES)}, but got {basis_key}={rate_basis!r}"
        )
    if not 0.0 <= drop_prob < 1.0:
        raise ConfigError(f"{key}={drop_prob!r} is out of range: must be in [0, 1)")
    if variant is None:
        return
    bound = get_variant(variant).max_drop_prob(rate_basis)
    if drop_prob >= bound:
        raise ConfigError(
            f"{key}={drop_prob!r} is out of range: must be in [0, {bound:g}) for {variant} on the "
            f"{rate_basis} basis ({basis_key}={rate_basis}: each sub-model drops p, so the shared mask "
            f"drops 2p); lower it, or set {basis_key}=shared to make p the shared mask's rate"
        )
