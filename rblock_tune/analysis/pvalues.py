"""p-values of the tests that compare two arms, and their multiple-comparison correction.

:func:`paired_pvalues` (paired t-test, Wilcoxon signed-rank) and :func:`unpaired_pvalues`
(Welch's t-test, Mann-Whitney U) are the tests :func:`rblock_tune.analysis.comparison.compare_arms`
runs; :func:`holm` adjusts the primary p-values of one call together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from rblock_tune.analysis._numeric import NAN, FloatArray, as_1d, quiet
from rblock_tune.errors import ConfigError

__all__ = ["holm", "paired_pvalues", "unpaired_pvalues"]


def _pvalue(result: Any) -> float:
    """The p-value of a SciPy test result as a Python float."""
    return float(result.pvalue)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values.

    The ``m`` non-NaN p-values are sorted ascending; the ``i``-th smallest
    (0-based) is multiplied by ``m - i``, a running maximum keeps the adjusted
    values monotone in the raw ones, and they are capped at 1.

    Args:
        pvalues: raw p-values in any order; NaN entries are allowed.

    Returns:
        The adjusted p-values in the order of ``pvalues`` (float array). NaN
        inputs stay NaN and do not count towards ``m``.

    Raises:
        ConfigError: if ``pvalues`` is not one-dimensional or a p-value lies
            outside [0, 1].
    """
    p = as_1d(pvalues, "pvalues")
    out = np.full(p.shape, np.nan, dtype=np.float64)
    ok = ~np.isnan(p)
    if np.any((p[ok] < 0.0) | (p[ok] > 1.0)):
        raise ConfigError(f"p-values must lie in [0, 1], got {p[ok].min()}..{p[ok].max()}; pass raw p-values")
    idx = np.flatnonzero(ok)
    m = idx.size
    if m == 0:
        return out
    order = np.argsort(p[idx], kind="stable")
    ranked = p[idx][order] * (m - np.arange(m))
    adjusted = np.minimum(np.maximum.accumulate(ranked), 1.0)
    out[idx[order]] = adjusted
    return out


def paired_pvalues(a: FloatArray, b: FloatArray) -> tuple[float, float]:
    """Two-sided paired t-test and Wilcoxon signed-rank p-values of seed-matched arrays.

    This is what :func:`~rblock_tune.analysis.comparison.compare_arms` uses for paired comparisons.

    Args:
        a: arm values, one per shared seed.
        b: baseline values for the same seeds, in the same order.

    Returns:
        ``(p_paired_t, p_wilcoxon)``; NaN for fewer than two pairs, NaN for
        Wilcoxon when every difference is zero, NaN where SciPy cannot compute
        a value.
    """
    if a.size < 2 or a.size != b.size:
        return NAN, NAN
    d = a - b
    with quiet():
        p_t = _pvalue(stats.ttest_rel(a, b))
        if np.all(d == 0.0):
            p_w = NAN
        else:
            try:
                p_w = _pvalue(stats.wilcoxon(a, b, alternative="two-sided"))
            except ValueError:
                p_w = NAN
    return p_t, p_w


def unpaired_pvalues(a: FloatArray, b: FloatArray) -> tuple[float, float]:
    """Two-sided Welch t-test and Mann-Whitney U p-values of two independent samples.

    This is what :func:`~rblock_tune.analysis.comparison.compare_arms` uses for all runs of both arms.

    Args:
        a: arm values.
        b: baseline values.

    Returns:
        ``(p_welch, p_mannwhitney)``; NaN if a sample has fewer than two
        values or SciPy cannot compute a value.
    """
    if a.size < 2 or b.size < 2:
        return NAN, NAN
    with quiet():
        p_welch = _pvalue(stats.ttest_ind(a, b, equal_var=False))
        try:
            p_mw = _pvalue(stats.mannwhitneyu(a, b, alternative="two-sided"))
        except ValueError:
            p_mw = NAN
    return p_welch, p_mw
