"""Regularizers of the R-Block study: masks, drop layers, the loss and drop schedules.

Spec: ``shared/spec/rblock.md``; paper: Wang & Hu, arXiv 2307.15150.
"""

from __future__ import annotations

from rblock_tune.regularizers._layers import (
    BDropDML,
    DropBlock,
    DropLayer,
    ElementDropout,
    NoDrop,
    RandomDML,
    SDropDML,
    SpatialDropout,
    build_drop_layer,
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
    mask_drop_prob,
    sample_masks,
)
from rblock_tune.regularizers._schedule import DropSchedule

__all__ = [
    "BDropDML",
    "DropBlock",
    "DropLayer",
    "DropSchedule",
    "ElementDropout",
    "NoDrop",
    "RandomDML",
    "SDropDML",
    "SpatialDropout",
    "build_drop_layer",
    "drop_factory",
    "drop_layers",
    "dropblock_gamma",
    "dropblock_probe",
    "expected_dropblock_rate",
    "mask_drop_prob",
    "rblock_loss",
    "rblock_loss_terms",
    "realised_drop_rates",
    "reset_drop_rates",
    "sample_masks",
    "set_drop_prob",
    "symmetric_kl",
]
