"""Numeric helpers shared by the statistics modules: 1-D float samples, argument checks, quiet SciPy.

Internal to :mod:`rblock_tune.analysis`; the public statistics are in
:mod:`rblock_tune.analysis.comparison`, :mod:`~rblock_tune.analysis.pvalues`,
:mod:`~rblock_tune.analysis.effects` and :mod:`~rblock_tune.analysis.sample_size`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt

from rblock_tune.errors import ConfigError

__all__ = ["NAN", "FloatArray", "as_1d", "check_prob", "pooled_sd", "quiet"]

FloatArray = npt.NDArray[np.float64]
"""A 1-D array of float64 values (a sample of a metric)."""

NAN = float("nan")
"""The NaN that degenerate statistics return."""


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the numerical warnings of NumPy and SciPy on degenerate data.

    SciPy's ``DegenerateDataWarning``, ``ConstantInputWarning`` and
    ``SmallSampleWarning`` all derive from :class:`RuntimeWarning`; the
    ``UserWarning`` filter covers notes such as "exact p-value not available,
    switching to the normal approximation".
    """
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def as_1d(x: npt.ArrayLike, name: str) -> FloatArray:
    """Convert ``x`` to a 1-D float array (NaN kept).

    Raises:
        ConfigError: if ``x`` is not one-dimensional or not numeric.
    """
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a sequence of numbers: {exc}") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be one-dimensional, got shape {arr.shape}; pass a flat sequence")
    return arr


def check_prob(value: float, name: str) -> None:
    """Require ``0 < value < 1``.

    Raises:
        ConfigError: otherwise.
    """
    if not (isinstance(value, int | float) and 0.0 < float(value) < 1.0):
        raise ConfigError(f"{name} must be a number strictly between 0 and 1, got {value!r}")


def pooled_sd(a: FloatArray, b: FloatArray) -> float:
    """Pooled standard deviation (ddof=1 in each group), NaN if a group has fewer than two values."""
    na, nb = a.size, b.size
    if na < 2 or nb < 2:
        return NAN
    var = ((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2)
    return float(np.sqrt(var))
