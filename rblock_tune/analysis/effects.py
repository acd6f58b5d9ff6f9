"""Effect sizes of one arm against another: Hedges' g, the probability of improvement, and the BCa
bootstrap confidence interval of the mean difference."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats

from rblock_tune.analysis._numeric import NAN, FloatArray, as_1d, check_prob, pooled_sd, quiet
from rblock_tune.errors import ConfigError

__all__ = ["bootstrap_diff_ci", "hedges_g", "prob_improvement"]


def _finite_sample(x: npt.ArrayLike, name: str) -> FloatArray:
    """1-D float array of ``x`` with NaN values dropped."""
    arr = as_1d(x, name)
    return arr[~np.isnan(arr)]


def _check_resamples(n_resamples: int) -> None:
    """Require a non-negative integer number of bootstrap resamples.

    Raises:
        ConfigError: otherwise.
    """
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or n_resamples < 0:
        raise ConfigError(
            f"n_resamples must be a non-negative integer (0: no bootstrap), got {n_resamples!r}"
        )


def hedges_g(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Hedges' g: bias-corrected standardised mean difference of ``a`` minus ``b``.

    ``g = (mean(a) - mean(b)) / s_pooled * J`` with the pooled standard
    deviation ``s_pooled`` (ddof=1 per group) and the small-sample correction
    ``J = 1 - 3 / (4 (na + nb) - 9)``. NaN values are ignored.

    Args:
        a: values of the first arm.
        b: values of the second arm (the reference).

    Returns:
        g, or NaN if a group has fewer than two values or the pooled standard
        deviation is zero (an infinite effect size would mislead).
    """
    x, y = _finite_sample(a, "a"), _finite_sample(b, "b")
    sd = pooled_sd(x, y)
    if math.isnan(sd) or sd == 0.0:
        return NAN
    j = 1.0 - 3.0 / (4.0 * (x.size + y.size) - 9.0)
    return float((x.mean() - y.mean()) / sd * j)


def prob_improvement(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Probability of improvement ``P(A > B) + 0.5 P(A = B)`` over all pairs of values.

    This is the Mann-Whitney U statistic of ``a`` divided by ``na * nb``
    (``scipy.stats.mannwhitneyu(a, b).statistic / (na * nb)``), computed from
    mid-ranks. NaN values are ignored.

    Args:
        a: values of the first arm.
        b: values of the second arm (the reference).

    Returns:
        A probability in [0, 1]; NaN if either sample is empty.
    """
    x, y = _finite_sample(a, "a"), _finite_sample(b, "b")
    na, nb = x.size, y.size
    if na == 0 or nb == 0:
        return NAN
    ranks = stats.rankdata(np.concatenate([x, y]))
    u = float(ranks[:na].sum()) - na * (na + 1) / 2.0
    return u / (na * nb)


def _diff_of_means(x: FloatArray, y: FloatArray, axis: int = -1) -> FloatArray:
    """Vectorised ``mean(x) - mean(y)`` along ``axis`` (bootstrap statistic)."""
    return np.asarray(np.mean(x, axis=axis) - np.mean(y, axis=axis), dtype=np.float64)


def _mean_along(x: FloatArray, axis: int = -1) -> FloatArray:
    """Vectorised mean along ``axis`` (bootstrap statistic)."""
    return np.asarray(np.mean(x, axis=axis), dtype=np.float64)


def bootstrap_diff_ci(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    *,
    paired: bool,
    confidence: float = 0.95,
    n_resamples: int = 10000,
    seed: int = 0,
) -> tuple[float, float]:
    """BCa bootstrap confidence interval of ``mean(a) - mean(b)``.

    Uses :func:`scipy.stats.bootstrap` with ``method="BCa"`` and
    ``rng=np.random.default_rng(seed)``, so a call is reproducible and equals
    a direct SciPy call with the same arguments.

    Args:
        a: values of the first arm.
        b: values of the reference arm.
        paired: if True, ``a`` and ``b`` are seed-matched arrays of equal
            length and the per-pair differences ``a - b`` are bootstrapped
            (one-sample mean); pairs with a NaN on either side are dropped.
            If False, the two samples are resampled independently; NaN values
            are dropped from each.
        confidence: two-sided confidence level, strictly between 0 and 1.
        n_resamples: number of bootstrap resamples. ``0`` skips the bootstrap
            and returns ``(nan, nan)``, for callers that do not need intervals.
        seed: seed of the resampling generator.

    Returns:
        ``(low, high)``. ``(nan, nan)`` when a sample has fewer than two
        values; ``(diff, diff)`` when the bootstrap distribution is degenerate
        (every resample gives the same value, e.g. all differences equal).

    Raises:
        ConfigError: on unequal lengths with ``paired=True``, a confidence
            outside (0, 1) or a negative ``n_resamples``.
    """
    check_prob(confidence, "confidence")
    _check_resamples(n_resamples)
    rng = np.random.default_rng(seed)
    if paired:
        x, y = as_1d(a, "a"), as_1d(b, "b")
        if x.size != y.size:
            raise ConfigError(
                f"paired bootstrap needs seed-matched arrays of equal length, got {x.size} and {y.size}; "
                "pass paired=False for independent samples"
            )
        d = x - y
        d = d[~np.isnan(d)]
        if d.size < 2 or n_resamples == 0:
            return NAN, NAN
        estimate = float(d.mean())
        if np.ptp(d) == 0.0:
            return estimate, estimate
        with quiet():
            res = stats.bootstrap(
                (d,),
                _mean_along,
                n_resamples=n_resamples,
                vectorized=True,
                confidence_level=confidence,
                method="BCa",
                rng=rng,
            )
    else:
        x, y = _finite_sample(a, "a"), _finite_sample(b, "b")
        if x.size < 2 or y.size < 2 or n_resamples == 0:
            return NAN, NAN
        estimate = float(x.mean() - y.mean())
        if np.ptp(x) == 0.0 and np.ptp(y) == 0.0:
            return estimate, estimate
        with quiet():
            res = stats.bootstrap(
                (x, y),
                _diff_of_means,
                n_resamples=n_resamples,
                vectorized=True,
                paired=False,
                confidence_level=confidence,
                method="BCa",
                rng=rng,
            )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if (math.isnan(low) or math.isnan(high)) and np.ptp(res.bootstrap_distribution) == 0.0:
        return estimate, estimate
    return low, high
