"""Regularizers of the R-Block study: masks, drop layers, the loss and drop schedules.

Spec: ``shared/spec/rblock.md``; paper: Wang & Hu, arXiv 2307.15150.

What each variant is (paired or not, split or not, its drop-rate bound, its layer's name, the
report's baseline preference) is one table, :data:`VARIANT_TABLE` (:mod:`rblock_tune.variants`,
re-exported here); this package keys each variant's mask sampler and layer constructor by it.
"""

from __future__ import annotations

from rblock_tune.regularizers._layers import (
    LAYER_CONSTRUCTORS,
    BDropDML,
    DropBlock,
    DropLayer,
    ElementDropout,
    LayerConstructor,
    NoDrop,
    RandomDML,
    SDropDML,
    SpatialDropout,
    build_drop_layer,
    compile_model,
    drop_factory,
    drop_layers,
    dropblock_probe,
    realised_drop_rates,
    reset_drop_rates,
    set_drop_prob,
)
from rblock_tune.regularizers._loss import rblock_loss, rblock_loss_terms, symmetric_kl
from rblock_tune.regularizers._masks import (
    dropblock_gamma,
    expected_dropblock_rate,
    grow_blocks,
    mask_drop_prob,
    sample_dropped,
    sample_masks,
    seed_sampler,
)
from rblock_tune.regularizers._schedule import DropSchedule
from rblock_tune.variants import (
    BASELINE_PREFERENCE,
    VARIANT_TABLE,
    Variant,
    check_drop_prob,
    default_baseline,
    get_variant,
)

__all__ = [
    "BASELINE_PREFERENCE",
    "LAYER_CONSTRUCTORS",
    "VARIANT_TABLE",
    "BDropDML",
    "DropBlock",
    "DropLayer",
    "DropSchedule",
    "ElementDropout",
    "LayerConstructor",
    "NoDrop",
    "RandomDML",
    "SDropDML",
    "SpatialDropout",
    "Variant",
    "build_drop_layer",
    "compile_model",
    "check_drop_prob",
    "default_baseline",
    "drop_factory",
    "drop_layers",
    "dropblock_gamma",
    "dropblock_probe",
    "expected_dropblock_rate",
    "grow_blocks",
    "get_variant",
    "mask_drop_prob",
    "rblock_loss",
    "rblock_loss_terms",
    "realised_drop_rates",
    "reset_drop_rates",
    "sample_dropped",
    "sample_masks",
    "seed_sampler",
    "set_drop_prob",
    "symmetric_kl",
]
