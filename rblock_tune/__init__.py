"""rblock-tune: hyperparameter and seed-variance studies of the R-Block regularizer.

Library entry points: :mod:`rblock_tune.regularizers` (masks, drop layers, the loss),
:mod:`rblock_tune.models`, :mod:`rblock_tune.data`, :mod:`rblock_tune.config` and
:mod:`rblock_tune.trainer`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
