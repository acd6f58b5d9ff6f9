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
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from rblock_tune.analysis._numeric import NAN, FloatArray, check_prob, pooled_sd
from rblock_tune.analysis.effects import bootstrap_diff_ci, hedges_g, prob_improvement
from rblock_tune.analysis.pvalues import holm, paired_pvalues, unpaired_pvalues
from rblock_tune.analysis.sample_size import power, seeds_needed
from rblock_tune.errors import ConfigError

__all__ = [
    "COMPARISON_COLUMNS",
    "PRIMARY_PAIRED",
    "PRIMARY_UNPAIRED",
    "SUMMARY_COLUMNS",
    "compare_arms",
    "summarize_arms",
]

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


def _mean(x: FloatArray) -> float:
    """Mean, NaN for an empty array."""
    return float(np.mean(x)) if x.size else NAN


def _sd(x: FloatArray) -> float:
    """Sample standard deviation (ddof=1), NaN for fewer than two values."""
    return float(np.std(x, ddof=1)) if x.size >= 2 else NAN


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
                "sem": sd / math.sqrt(x.size) if x.size >= 2 else NAN,
                "min": float(x.min()) if x.size else NAN,
                "max": float(x.max()) if x.size else NAN,
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
    check_prob(alpha, "alpha")
    check_prob(confidence, "confidence")
    check_prob(power_target, "power_target")
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
        p_t, p_w = paired_pvalues(a_pair, b_pair) if paired else (NAN, NAN)
        p_welch, p_mw = unpaired_pvalues(arm_all, base_all)
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
            sd_power = pooled_sd(arm_all, base_all)
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
                "power": power(n_power, mean_diff, sd_power, alpha=alpha, paired=paired),
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
