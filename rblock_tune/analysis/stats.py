"""Statistics for comparing training arms over seeds.

An *arm* is one training recipe (e.g. R-Block, DropBlock, plain dropout) run
over several seeds; a *run* is one (arm, seed) pair with a scalar metric such
as test accuracy. :func:`compare_arms` compares every arm with a baseline arm:

* Runs pair by seed. When an arm shares at least two seeds with the baseline,
  the comparison is *paired*: the paired t-test is the primary test, and the
  Wilcoxon signed-rank test is reported alongside it. Otherwise the primary
  test is Welch's t-test. Welch and Mann-Whitney U are always reported, on all
  runs of both arms.
* The primary p-values of one call are Holm-adjusted together, so a family of
  arms compared with one baseline keeps its family-wise error rate.
* Effect sizes: the mean difference with a BCa bootstrap interval, Hedges' g
  and the probability of improvement P(A > B).
* Planning: the achieved power to detect the observed difference, and the
  number of seeds that would be needed to reach a target power.

Degenerate inputs (too few runs, zero variance, all-equal differences) never
raise and never leak SciPy warnings; the affected statistics are NaN. Input
that cannot be analysed at all raises :class:`~rblock_tune.errors.ConfigError`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from rblock_tune.errors import ConfigError

__all__ = [
    "COMPARISON_COLUMNS",
    "PRIMARY_PAIRED",
    "PRIMARY_UNPAIRED",
    "SUMMARY_COLUMNS",
    "bootstrap_diff_ci",
    "compare_arms",
    "hedges_g",
    "holm",
    "power",
    "prob_improvement",
    "seeds_needed",
    "summarize_arms",
]

FloatArray = npt.NDArray[np.float64]

PRIMARY_PAIRED = "paired_t"
"""Name of the primary test of a paired comparison (paired t-test)."""

PRIMARY_UNPAIRED = "welch"
"""Name of the primary test of an unpaired comparison (Welch's t-test)."""

SUMMARY_COLUMNS: tuple[str, ...] = ("arm", "n", "mean", "sd", "sem", "min", "max")
"""Column order of :func:`summarize_arms`."""

COMPARISON_COLUMNS: tuple[str, ...] = (
    "metric",
    "arm",
    "baseline",
    "n",
    "n_baseline",
    "paired",
    "n_pairs",
    "mean_arm",
    "sd_arm",
    "mean_baseline",
    "sd_baseline",
    "mean_diff",
    "ci_low",
    "ci_high",
    "p_paired_t",
    "p_wilcoxon",
    "p_welch",
    "p_mannwhitney",
    "primary_test",
    "p_primary",
    "p_holm",
    "significant",
    "hedges_g",
    "prob_improvement",
    "power",
    "seeds_needed",
)
"""Column order of :func:`compare_arms`."""

_NAN = float("nan")


@contextmanager
def _quiet() -> Iterator[None]:
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


def _as_1d(x: npt.ArrayLike, name: str) -> FloatArray:
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


def _finite_sample(x: npt.ArrayLike, name: str) -> FloatArray:
    """1-D float array of ``x`` with NaN values dropped."""
    arr = _as_1d(x, name)
    return arr[~np.isnan(arr)]


def _check_prob(value: float, name: str) -> None:
    """Require ``0 < value < 1``.

    Raises:
        ConfigError: otherwise.
    """
    if not (isinstance(value, int | float) and 0.0 < float(value) < 1.0):
        raise ConfigError(f"{name} must be a number strictly between 0 and 1, got {value!r}")


def _check_resamples(n_resamples: int) -> None:
    """Require a non-negative integer number of bootstrap resamples.

    Raises:
        ConfigError: otherwise.
    """
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or n_resamples < 0:
        raise ConfigError(
            f"n_resamples must be a non-negative integer (0: no bootstrap), got {n_resamples!r}"
        )


def _mean(x: FloatArray) -> float:
    """Mean, NaN for an empty array."""
    return float(np.mean(x)) if x.size else _NAN


def _sd(x: FloatArray) -> float:
    """Sample standard deviation (ddof=1), NaN for fewer than two values."""
    return float(np.std(x, ddof=1)) if x.size >= 2 else _NAN


def _pooled_sd(a: FloatArray, b: FloatArray) -> float:
    """Pooled standard deviation (ddof=1 in each group), NaN if a group has fewer than two values."""
    na, nb = a.size, b.size
    if na < 2 or nb < 2:
        return _NAN
    var = ((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2)
    return float(np.sqrt(var))


def _pvalue(result: Any) -> float:
    """The p-value of a SciPy test result as a Python float."""
    return float(result.pvalue)


# --------------------------------------------------------------------------- multiple testing


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
    p = _as_1d(pvalues, "pvalues")
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


# --------------------------------------------------------------------------- effect sizes


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
    sd = _pooled_sd(x, y)
    if math.isnan(sd) or sd == 0.0:
        return _NAN
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
        return _NAN
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
    _check_prob(confidence, "confidence")
    _check_resamples(n_resamples)
    rng = np.random.default_rng(seed)
    if paired:
        x, y = _as_1d(a, "a"), _as_1d(b, "b")
        if x.size != y.size:
            raise ConfigError(
                f"paired bootstrap needs seed-matched arrays of equal length, got {x.size} and {y.size}; "
                "pass paired=False for independent samples"
            )
        d = x - y
        d = d[~np.isnan(d)]
        if d.size < 2 or n_resamples == 0:
            return _NAN, _NAN
        estimate = float(d.mean())
        if np.ptp(d) == 0.0:
            return estimate, estimate
        with _quiet():
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
            return _NAN, _NAN
        estimate = float(x.mean() - y.mean())
        if np.ptp(x) == 0.0 and np.ptp(y) == 0.0:
            return estimate, estimate
        with _quiet():
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


# --------------------------------------------------------------------------- power and sample size


def _validate_power_args(effect: float, sd: float, alpha: float) -> None:
    """Shared argument checks of :func:`power` and :func:`seeds_needed`.

    Raises:
        ConfigError: on a negative ``sd`` or ``alpha`` outside (0, 1).
    """
    _check_prob(alpha, "alpha")
    if sd < 0:
        raise ConfigError(f"sd must be a non-negative standard deviation, got {sd!r}")


def _power(n: int, effect: float, sd: float, alpha: float, paired: bool) -> float:
    """Power of the two-sided t-test (arguments already validated; see :func:`power`)."""
    if n < 2 or math.isnan(effect) or math.isnan(sd):
        return _NAN
    if sd == 0.0:
        return _NAN if effect == 0.0 else 1.0
    if paired:
        df = n - 1
        nc = effect / sd * math.sqrt(n)
    else:
        df = 2 * n - 2
        nc = effect / sd * math.sqrt(n / 2.0)
    with _quiet():
        t_crit = float(stats.t.ppf(1.0 - alpha / 2.0, df))
        p = float(stats.nct.sf(t_crit, df, nc)) + float(stats.nct.cdf(-t_crit, df, nc))
    if math.isnan(p):
        return _NAN
    return min(max(p, 0.0), 1.0)


def power(n: int, effect: float, sd: float, *, alpha: float = 0.05, paired: bool = True) -> float:
    """Power of the two-sided t-test to detect a mean difference ``effect``.

    Paired (one-sample on differences): ``n`` pairs, ``df = n - 1``,
    noncentrality ``effect / sd * sqrt(n)``, ``sd`` the standard deviation of
    the differences. Unpaired: two independent groups of ``n`` each,
    ``df = 2n - 2``, noncentrality ``effect / sd * sqrt(n / 2)``, ``sd`` the
    pooled standard deviation. Computed from the noncentral t distribution.

    Args:
        n: number of pairs (paired) or runs per group (unpaired).
        effect: true mean difference, in metric units.
        sd: standard deviation, in metric units (see above).
        alpha: two-sided significance level.
        paired: paired/one-sample test if True, two-sample test if False.

    Returns:
        The probability of rejecting H0 at level ``alpha``. NaN if ``n < 2``,
        ``effect`` or ``sd`` is NaN, or ``sd == 0`` with ``effect == 0``;
        1.0 if ``sd == 0`` and ``effect != 0``.

    Raises:
        ConfigError: on a negative ``sd`` or ``alpha`` outside (0, 1).
    """
    _validate_power_args(effect, sd, alpha)
    return _power(int(n), float(effect), float(sd), alpha, paired)


def seeds_needed(
    effect: float,
    sd: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    paired: bool = True,
    max_n: int = 100000,
) -> int | None:
    """Smallest number of seeds for which :func:`power` reaches ``power``.

    Reproduces the textbook values, e.g. 10 pairs for a paired effect
    ``dz = 1`` and 17 (``d = 1``) or 64 (``d = 0.5``) runs per group for two
    independent groups, at ``alpha = 0.05`` and power 0.8.

    Args:
        effect: mean difference to detect, in metric units.
        sd: standard deviation (of differences when paired, pooled otherwise).
        alpha: two-sided significance level.
        power: target power, strictly between 0 and 1.
        paired: paired test (``n`` = pairs) or two groups (``n`` per group).
        max_n: largest ``n`` considered.

    Returns:
        The smallest ``n >= 2`` reaching the target, 2 when ``sd == 0`` and
        ``effect != 0``, or None when ``effect`` is 0 or NaN, ``sd`` is NaN,
        or the target is not reached by ``max_n``.

    Raises:
        ConfigError: on a negative ``sd``, ``alpha`` or ``power`` outside
            (0, 1), or ``max_n < 2``.
    """
    target = power
    _validate_power_args(effect, sd, alpha)
    _check_prob(target, "power")
    if max_n < 2:
        raise ConfigError(f"max_n must be at least 2, got {max_n!r}")
    effect, sd = float(effect), float(sd)
    if math.isnan(effect) or math.isnan(sd) or effect == 0.0:
        return None
    if sd == 0.0:
        return 2

    def reached(n: int) -> bool:
        p = _power(n, effect, sd, alpha, paired)
        return not math.isnan(p) and p >= target

    if reached(2):
        return 2
    # Exponential search for an n that reaches the target, then bisection on (lo, hi].
    lo, hi = 2, 4
    while hi < max_n and not reached(hi):
        lo, hi = hi, hi * 2
    if hi >= max_n:
        hi = max_n
        if not reached(hi):
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reached(mid):
            hi = mid
        else:
            lo = mid
    return hi


# --------------------------------------------------------------------------- hypothesis tests


def _paired_pvalues(a: FloatArray, b: FloatArray) -> tuple[float, float]:
    """Two-sided paired t-test and Wilcoxon signed-rank p-values of seed-matched arrays.

    This is what :func:`compare_arms` uses for paired comparisons.

    Args:
        a: arm values, one per shared seed.
        b: baseline values for the same seeds, in the same order.

    Returns:
        ``(p_paired_t, p_wilcoxon)``; NaN for fewer than two pairs, NaN for
        Wilcoxon when every difference is zero, NaN where SciPy cannot compute
        a value.
    """
    if a.size < 2 or a.size != b.size:
        return _NAN, _NAN
    d = a - b
    with _quiet():
        p_t = _pvalue(stats.ttest_rel(a, b))
        if np.all(d == 0.0):
            p_w = _NAN
        else:
            try:
                p_w = _pvalue(stats.wilcoxon(a, b, alternative="two-sided"))
            except ValueError:
                p_w = _NAN
    return p_t, p_w


def _unpaired_pvalues(a: FloatArray, b: FloatArray) -> tuple[float, float]:
    """Two-sided Welch t-test and Mann-Whitney U p-values of two independent samples.

    This is what :func:`compare_arms` uses for all runs of both arms.

    Args:
        a: arm values.
        b: baseline values.

    Returns:
        ``(p_welch, p_mannwhitney)``; NaN if a sample has fewer than two
        values or SciPy cannot compute a value.
    """
    if a.size < 2 or b.size < 2:
        return _NAN, _NAN
    with _quiet():
        p_welch = _pvalue(stats.ttest_ind(a, b, equal_var=False))
        try:
            p_mw = _pvalue(stats.mannwhitneyu(a, b, alternative="two-sided"))
        except ValueError:
            p_mw = _NAN
    return p_welch, p_mw


# --------------------------------------------------------------------------- data frames


def _numeric_columns(values: pd.DataFrame) -> list[str]:
    """Names of the numeric (non-boolean) columns of ``values``."""
    return [
        str(c)
        for c in values.columns
        if pd.api.types.is_numeric_dtype(values[c]) and not pd.api.types.is_bool_dtype(values[c])
    ]


def _tidy(values: pd.DataFrame, metric: str, arm_col: str) -> tuple[npt.NDArray[np.object_], FloatArray]:
    """Validate a tidy run table; return (arm labels as str, metric as float), one entry per row.

    Raises:
        ConfigError: if ``values`` is not a DataFrame, a column is missing,
            the metric is not numeric, or an arm label is missing.
    """
    if not isinstance(values, pd.DataFrame):
        raise ConfigError(
            f"values must be a pandas DataFrame with one row per run, got {type(values).__name__}"
        )
    if arm_col not in values.columns:
        raise ConfigError(
            f"arm column {arm_col!r} not found; columns are {[str(c) for c in values.columns]}; "
            "pass arm_col=<the column naming the arm>"
        )
    if metric not in values.columns:
        raise ConfigError(
            f"metric column {metric!r} not found; numeric columns are {_numeric_columns(values)}; "
            "pass metric=<one of them>"
        )
    raw = values[metric]
    if pd.api.types.is_bool_dtype(raw) or not pd.api.types.is_numeric_dtype(raw):
        try:
            metric_values = pd.to_numeric(raw, errors="raise").astype(np.float64)
        except (TypeError, ValueError):
            raise ConfigError(
                f"metric column {metric!r} is not numeric (dtype {raw.dtype}); "
                f"numeric columns are {_numeric_columns(values)}"
            ) from None
    else:
        metric_values = raw.astype(np.float64)
    arms = values[arm_col]
    n_missing = int(arms.isna().sum())
    if n_missing:
        raise ConfigError(
            f"arm column {arm_col!r} has {n_missing} missing value(s); label or drop those runs"
        )
    labels = np.array([str(v) for v in arms.tolist()], dtype=object)
    return labels, metric_values.to_numpy(dtype=np.float64)


def summarize_arms(values: pd.DataFrame, *, metric: str = "test_acc", arm_col: str = "arm") -> pd.DataFrame:
    """Per-arm summary of a metric over runs.

    Args:
        values: tidy run table, one row per run, with columns ``arm_col`` and
            ``metric``. Rows whose metric is NaN are dropped; arm labels are
            compared as strings.
        metric: name of the numeric metric column.
        arm_col: name of the arm column.

    Returns:
        One row per arm, sorted by arm, with columns :data:`SUMMARY_COLUMNS`:
        ``arm, n, mean, sd, sem, min, max`` (``sd`` with ddof=1,
        ``sem = sd / sqrt(n)``). An arm whose runs all have a NaN metric is
        kept with ``n = 0`` and NaN statistics.

    Raises:
        ConfigError: on a missing or non-numeric column or a missing arm label.
    """
    arms, metric_values = _tidy(values, metric, arm_col)
    rows: list[dict[str, object]] = []
    for arm in sorted(set(arms.tolist())):
        x = metric_values[arms == arm]
        x = x[~np.isnan(x)]
        sd = _sd(x)
        rows.append(
            {
                "arm": arm,
                "n": int(x.size),
                "mean": _mean(x),
                "sd": sd,
                "sem": sd / math.sqrt(x.size) if x.size >= 2 else _NAN,
                "min": float(x.min()) if x.size else _NAN,
                "max": float(x.max()) if x.size else _NAN,
            }
        )
    out = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return out.astype({"n": "int64"})


def _runs_by_arm(
    arms: npt.NDArray[np.object_], metric_values: FloatArray, seeds: pd.Series | None
) -> dict[str, tuple[FloatArray, dict[Any, float]]]:
    """Split runs by arm: all finite metric values, and the seeded ones as ``{seed: value}``.

    Raises:
        ConfigError: if a seed occurs more than once within one arm.
    """
    out: dict[str, tuple[FloatArray, dict[Any, float]]] = {}
    keep = ~np.isnan(metric_values)
    seed_list = seeds.tolist() if seeds is not None else None
    seed_ok = seeds.notna().to_numpy() if seeds is not None else None
    for arm in sorted(set(arms.tolist())):
        mask = (arms == arm) & keep
        x = metric_values[mask]
        by_seed: dict[Any, float] = {}
        if seed_list is not None and seed_ok is not None:
            for i in np.flatnonzero(mask & seed_ok).tolist():
                s, v = seed_list[i], float(metric_values[i])
                if s in by_seed:
                    shown = int(s) if isinstance(s, float) and s.is_integer() else s
                    raise ConfigError(
                        f"arm {arm!r} has seed {shown!r} more than once; keep one run per (arm, seed) "
                        "or give repeated runs distinct seeds"
                    )
                by_seed[s] = v
        out[arm] = (x, by_seed)
    return out


def _shared_seed_arrays(
    arm_seeds: dict[Any, float], base_seeds: dict[Any, float]
) -> tuple[FloatArray, FloatArray]:
    """Seed-matched (arm, baseline) arrays over the seeds both arms ran, ordered by seed."""
    shared = [s for s in base_seeds if s in arm_seeds]
    try:
        shared = sorted(shared)
    except TypeError:
        shared = sorted(shared, key=repr)
    a = np.array([arm_seeds[s] for s in shared], dtype=np.float64)
    b = np.array([base_seeds[s] for s in shared], dtype=np.float64)
    return a, b


def compare_arms(
    values: pd.DataFrame,
    *,
    baseline: str,
    metric: str = "test_acc",
    arm_col: str = "arm",
    seed_col: str = "seed",
    alpha: float = 0.05,
    confidence: float = 0.95,
    n_resamples: int = 10000,
    seed: int = 0,
    power_target: float = 0.8,
) -> pd.DataFrame:
    """Compare every arm with a baseline arm over seeds.

    Runs pair by seed: an arm is *paired* with the baseline when they share at
    least two seeds, and the paired statistics (paired t-test, Wilcoxon
    signed-rank test, mean of the per-seed differences and its bootstrap CI)
    use the shared seeds only. Unpaired arms use Welch's t-test as the primary
    test and ``mean_arm - mean_baseline``. Welch, Mann-Whitney U, Hedges' g
    and the probability of improvement always use all runs of both arms. The
    primary p-values of all rows are Holm-adjusted together.

    Args:
        values: tidy run table, one row per run, with columns ``arm_col``,
            ``metric`` and optionally ``seed_col`` (missing column or NaN
            seed: the run takes part in the unpaired statistics only). Rows
            whose metric is NaN are dropped before anything else, including
            the duplicate-seed check. Arm labels are compared as strings.
        baseline: arm every other arm is compared with.
        metric: name of the numeric metric column (higher or lower is
            better does not matter; differences are arm minus baseline).
        arm_col: name of the arm column.
        seed_col: name of the seed column.
        alpha: family-wise significance level for ``significant``.
        confidence: level of the bootstrap interval.
        n_resamples: bootstrap resamples; ``0`` skips the bootstrap (``ci_low``
            and ``ci_high`` are NaN), e.g. for fast simulations.
        seed: seed of the bootstrap generator (the same for every arm).
        power_target: target power for ``seeds_needed``.

    Returns:
        One row per non-baseline arm, sorted by arm, with columns
        :data:`COMPARISON_COLUMNS`:

        * ``metric``, ``arm``, ``baseline``: labels.
        * ``n``, ``n_baseline``: runs with a metric value; ``paired``: at least
          two shared seeds; ``n_pairs``: number of shared seeds.
        * ``mean_arm``, ``sd_arm``, ``mean_baseline``, ``sd_baseline``: over
          all runs (sd with ddof=1).
        * ``mean_diff``, ``ci_low``, ``ci_high``: arm minus baseline, BCa
          interval from :func:`bootstrap_diff_ci`.
        * ``p_paired_t``, ``p_wilcoxon`` (NaN when unpaired), ``p_welch``,
          ``p_mannwhitney``: two-sided p-values.
        * ``primary_test`` (:data:`PRIMARY_PAIRED` or :data:`PRIMARY_UNPAIRED`),
          ``p_primary``, ``p_holm``, ``significant`` (``p_holm < alpha``,
          False when NaN).
        * ``hedges_g``, ``prob_improvement``: arm vs baseline over all runs.
        * ``power``: achieved power to detect ``mean_diff`` at the observed
          sd (of the differences when paired, pooled otherwise) with
          ``n_pairs`` pairs or ``min(n, n_baseline)`` runs per group.
        * ``seeds_needed``: seeds (pairs or runs per group) to reach
          ``power_target`` for ``mean_diff`` at that sd; pandas nullable
          ``Int64``, ``<NA>`` where :func:`seeds_needed` returns None.

    Raises:
        ConfigError: on an unknown baseline, fewer than two arms, a missing or
            non-numeric metric column, a missing arm label, a seed repeated
            within an arm, or an out-of-range ``alpha``, ``confidence``,
            ``power_target`` or ``n_resamples``.
    """
    _check_prob(alpha, "alpha")
    _check_prob(confidence, "confidence")
    _check_prob(power_target, "power_target")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 0:
        raise ConfigError(
            f"n_resamples must be a non-negative integer (0: no bootstrap), got {n_resamples!r}"
        )
    arms, metric_values = _tidy(values, metric, arm_col)
    present = sorted(set(arms.tolist()))
    if len(present) < 2:
        raise ConfigError(
            f"compare_arms needs at least two arms in column {arm_col!r}, found {present}; "
            "add runs of the arms to compare"
        )
    if str(baseline) not in present:
        raise ConfigError(f"baseline arm {baseline!r} not found; arms present are {present}")
    baseline = str(baseline)
    seeds = values[seed_col] if seed_col in values.columns else None
    runs = _runs_by_arm(arms, metric_values, seeds)
    base_all, base_seeds = runs[baseline]

    rows: list[dict[str, object]] = []
    p_primary: list[float] = []
    for arm in present:
        if arm == baseline:
            continue
        arm_all, arm_seeds = runs[arm]
        a_pair, b_pair = _shared_seed_arrays(arm_seeds, base_seeds)
        n_pairs = int(a_pair.size)
        paired = n_pairs >= 2
        p_t, p_w = _paired_pvalues(a_pair, b_pair) if paired else (_NAN, _NAN)
        p_welch, p_mw = _unpaired_pvalues(arm_all, base_all)
        if paired:
            diffs = a_pair - b_pair
            mean_diff = float(diffs.mean())
            ci = bootstrap_diff_ci(
                a_pair, b_pair, paired=True, confidence=confidence, n_resamples=n_resamples, seed=seed
            )
            sd_power = _sd(diffs)
            n_power = n_pairs
        else:
            mean_diff = _mean(arm_all) - _mean(base_all)
            ci = bootstrap_diff_ci(
                arm_all, base_all, paired=False, confidence=confidence, n_resamples=n_resamples, seed=seed
            )
            sd_power = _pooled_sd(arm_all, base_all)
            n_power = min(arm_all.size, base_all.size)
        p_primary.append(p_t if paired else p_welch)
        needed = seeds_needed(mean_diff, sd_power, alpha=alpha, power=power_target, paired=paired)
        rows.append(
            {
                "metric": metric,
                "arm": arm,
                "baseline": baseline,
                "n": int(arm_all.size),
                "n_baseline": int(base_all.size),
                "paired": paired,
                "n_pairs": n_pairs,
                "mean_arm": _mean(arm_all),
                "sd_arm": _sd(arm_all),
                "mean_baseline": _mean(base_all),
                "sd_baseline": _sd(base_all),
                "mean_diff": mean_diff,
                "ci_low": ci[0],
                "ci_high": ci[1],
                "p_paired_t": p_t,
                "p_wilcoxon": p_w,
                "p_welch": p_welch,
                "p_mannwhitney": p_mw,
                "primary_test": PRIMARY_PAIRED if paired else PRIMARY_UNPAIRED,
                "p_primary": p_primary[-1],
                "hedges_g": hedges_g(arm_all, base_all),
                "prob_improvement": prob_improvement(arm_all, base_all),
                "power": _power(n_power, mean_diff, sd_power, alpha, paired),
                "seeds_needed": needed,
            }
        )
    p_holm = holm(p_primary)
    for row, ph in zip(rows, p_holm.tolist(), strict=True):
        row["p_holm"] = ph
        row["significant"] = bool(ph < alpha)
    out = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    return out.astype(
        {
            "n": "int64",
            "n_baseline": "int64",
            "n_pairs": "int64",
            "paired": "bool",
            "significant": "bool",
            "seeds_needed": "Int64",
        }
    )
