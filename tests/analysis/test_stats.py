"""Statistics for comparing arms over seeds: tests, effect sizes, bootstrap, power."""

from __future__ import annotations

import math
import statistics
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from rblock_tune.analysis import (
    COMPARISON_COLUMNS,
    bootstrap_diff_ci,
    compare_arms,
    hedges_g,
    holm,
    power,
    prob_improvement,
    seeds_needed,
    summarize_arms,
)
from rblock_tune.analysis.comparison import PRIMARY_PAIRED, PRIMARY_UNPAIRED, SUMMARY_COLUMNS
from rblock_tune.analysis.pvalues import paired_pvalues, unpaired_pvalues
from rblock_tune.errors import ConfigError

ALPHA = 0.05


def _binomial_tol(p: float, reps: int) -> float:
    """Three binomial standard errors of a rejection rate ``p`` over ``reps`` repetitions."""
    return 3.0 * math.sqrt(p * (1.0 - p) / reps)


def _paired_frame() -> tuple[pd.DataFrame, dict[int, float], dict[int, float], list[float]]:
    """A frame whose arm rows come in a different seed order from the baseline rows.

    Returns:
        (frame, baseline by seed, arm "rb" by seed, values of the seedless arm "zz").
    """
    rng = np.random.default_rng(42)
    shared = rng.normal(0.0, 0.02, size=10)
    base = {s: 0.90 + shared[s] + rng.normal(0.0, 0.005) for s in range(10)}
    rb = {s: 0.905 + shared[s] + rng.normal(0.0, 0.005) for s in range(10)}
    rb[10] = 0.93  # a seed the baseline did not run: Welch/MWU only
    zz = [float(v) for v in 0.91 + rng.normal(0.0, 0.02, size=6)]
    rows = [{"arm": "base", "seed": s, "test_acc": v} for s, v in base.items()]
    rb_order = [7, 2, 10, 9, 0, 5, 3, 8, 1, 6, 4]
    rows += [{"arm": "rb", "seed": s, "test_acc": rb[s]} for s in rb_order]
    rows += [{"arm": "zz", "seed": np.nan, "test_acc": v} for v in zz]
    rows += [{"arm": "rb", "seed": 11, "test_acc": np.nan}]  # failed run: dropped
    return pd.DataFrame(rows), base, rb, zz


# --------------------------------------------------------------------------- compare_arms vs SciPy


def test_compare_arms_pvalues_match_scipy_and_pair_by_seed() -> None:
    df, base, rb, zz = _paired_frame()
    out = compare_arms(df, baseline="base", n_resamples=2000)
    assert tuple(out.columns) == COMPARISON_COLUMNS
    assert out["arm"].tolist() == ["rb", "zz"]
    row = out.set_index("arm").loc["rb"]

    seeds = sorted(base)
    a = np.array([rb[s] for s in seeds])
    b = np.array([base[s] for s in seeds])
    a_all = np.array(list(rb.values()))
    b_all = np.array(list(base.values()))
    assert bool(row["paired"]) and row["n_pairs"] == 10 and row["n"] == 11 and row["n_baseline"] == 10
    assert row["p_paired_t"] == pytest.approx(sps.ttest_rel(a, b).pvalue, rel=1e-12)
    assert row["p_wilcoxon"] == pytest.approx(sps.wilcoxon(a, b).pvalue, rel=1e-12)
    assert row["p_welch"] == pytest.approx(sps.ttest_ind(a_all, b_all, equal_var=False).pvalue, rel=1e-12)
    assert row["p_mannwhitney"] == pytest.approx(
        sps.mannwhitneyu(a_all, b_all, alternative="two-sided").pvalue, rel=1e-12
    )
    assert row["mean_diff"] == pytest.approx(float(np.mean(a - b)), rel=1e-12)
    assert row["primary_test"] == PRIMARY_PAIRED
    assert row["p_primary"] == row["p_paired_t"]
    # Row-order pairing would give a different answer, so the checks above can tell them apart.
    rb_rows = df[(df["arm"] == "rb") & df["seed"].isin(seeds)]["test_acc"].to_numpy()
    assert sps.ttest_rel(rb_rows, b).pvalue != pytest.approx(row["p_paired_t"], rel=1e-3)

    unpaired = out.set_index("arm").loc["zz"]
    assert not bool(unpaired["paired"]) and unpaired["n_pairs"] == 0
    assert math.isnan(unpaired["p_paired_t"]) and math.isnan(unpaired["p_wilcoxon"])
    assert unpaired["primary_test"] == PRIMARY_UNPAIRED
    assert unpaired["p_primary"] == pytest.approx(sps.ttest_ind(zz, b_all, equal_var=False).pvalue, rel=1e-12)
    assert unpaired["mean_diff"] == pytest.approx(np.mean(zz) - np.mean(b_all), rel=1e-12)

    expected_holm = holm(out["p_primary"].tolist())
    np.testing.assert_allclose(out["p_holm"].to_numpy(), expected_holm, rtol=1e-12)
    assert out["significant"].tolist() == [bool(p < ALPHA) for p in expected_holm]


def test_compare_arms_effects_ci_and_power_columns() -> None:
    df, base, rb, _ = _paired_frame()
    out = compare_arms(df, baseline="base", n_resamples=2000, seed=3, confidence=0.9, power_target=0.9)
    row = out.set_index("arm").loc["rb"]
    seeds = sorted(base)
    a = np.array([rb[s] for s in seeds])
    b = np.array([base[s] for s in seeds])
    a_all, b_all = np.array(list(rb.values())), np.array(list(base.values()))
    ci = bootstrap_diff_ci(a, b, paired=True, confidence=0.9, n_resamples=2000, seed=3)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(ci, rel=1e-12)
    assert row["ci_low"] < row["mean_diff"] < row["ci_high"]
    assert row["hedges_g"] == pytest.approx(hedges_g(a_all, b_all), rel=1e-12)
    assert row["prob_improvement"] == pytest.approx(prob_improvement(a_all, b_all), rel=1e-12)
    sd_d = float(np.std(a - b, ddof=1))
    assert row["power"] == pytest.approx(power(10, float(np.mean(a - b)), sd_d), rel=1e-9)
    assert row["seeds_needed"] == seeds_needed(float(np.mean(a - b)), sd_d, power=0.9)
    assert row["mean_arm"] == pytest.approx(a_all.mean())
    assert row["sd_baseline"] == pytest.approx(b.std(ddof=1))


def test_compare_arms_without_seed_column_is_unpaired() -> None:
    df, _, _, _ = _paired_frame()
    out = compare_arms(df.drop(columns="seed"), baseline="base", n_resamples=0)
    assert not out["paired"].any()
    assert (out["primary_test"] == PRIMARY_UNPAIRED).all()
    assert out["ci_low"].isna().all() and out["ci_high"].isna().all()
    np.testing.assert_allclose(out["p_primary"], out["p_welch"], rtol=0)


def test_one_shared_seed_is_not_paired() -> None:
    df = pd.DataFrame(
        {
            "arm": ["a", "a", "a", "b", "b", "b"],
            "seed": [0, 1, 2, 2, 3, 4],
            "test_acc": [0.90, 0.91, 0.92, 0.93, 0.95, 0.94],
        }
    )
    row = compare_arms(df, baseline="a", n_resamples=0).iloc[0]
    assert row["n_pairs"] == 1 and not bool(row["paired"])
    assert row["primary_test"] == PRIMARY_UNPAIRED
    assert row["mean_diff"] == pytest.approx(0.94 - 0.91)


def test_degenerate_inputs_give_nan_without_warnings() -> None:
    equal = pd.DataFrame({"arm": ["a"] * 4 + ["b"] * 4, "seed": [0, 1, 2, 3] * 2, "test_acc": [0.5] * 8})
    tiny = pd.DataFrame({"arm": ["a", "a", "b"], "seed": [0, 1, 0], "test_acc": [0.5, 0.6, 0.7]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = compare_arms(equal, baseline="a", n_resamples=500).iloc[0]
        assert bool(row["paired"]) and row["mean_diff"] == 0.0
        for col in ["p_paired_t", "p_wilcoxon", "p_welch", "hedges_g", "power", "p_holm"]:
            assert math.isnan(row[col]), col
        assert (row["ci_low"], row["ci_high"]) == (0.0, 0.0)
        assert row["prob_improvement"] == 0.5 and not bool(row["significant"])
        assert pd.isna(row["seeds_needed"])

        small = compare_arms(tiny, baseline="a", n_resamples=500).iloc[0]
        assert small["n"] == 1 and not bool(small["paired"])
        for col in ["p_welch", "p_mannwhitney", "p_primary", "hedges_g", "ci_low", "power"]:
            assert math.isnan(small[col]), col
        assert small["prob_improvement"] == 1.0

        # One arm's differences all zero but not all values equal: Wilcoxon is NaN, no warning.
        shifted = pd.DataFrame(
            {"arm": ["a"] * 3 + ["b"] * 3, "seed": [0, 1, 2] * 2, "test_acc": [0.1, 0.2, 0.4] * 2}
        )
        row = compare_arms(shifted, baseline="a", n_resamples=500).iloc[0]
        assert math.isnan(row["p_wilcoxon"]) and math.isnan(row["p_paired_t"])


def test_summarize_arms() -> None:
    df, _, rb, zz = _paired_frame()
    summary = summarize_arms(df)
    assert tuple(summary.columns) == SUMMARY_COLUMNS
    assert summary["arm"].tolist() == ["base", "rb", "zz"]
    row = summary.set_index("arm").loc["rb"]
    values = list(rb.values())
    assert row["n"] == 11  # the NaN run is dropped
    assert row["mean"] == pytest.approx(statistics.fmean(values))
    assert row["sd"] == pytest.approx(statistics.stdev(values))
    assert row["sem"] == pytest.approx(statistics.stdev(values) / math.sqrt(11))
    assert (row["min"], row["max"]) == (min(values), max(values))
    assert summary.set_index("arm").loc["zz", "n"] == len(zz)


# --------------------------------------------------------------------------- input errors


def test_unknown_baseline_lists_arms() -> None:
    df, _, _, _ = _paired_frame()
    with pytest.raises(ConfigError, match=r"baseline arm 'dropblock' not found.*'base', 'rb', 'zz'"):
        compare_arms(df, baseline="dropblock")


def test_duplicate_seed_in_arm_names_arm_and_seed() -> None:
    df, _, _, _ = _paired_frame()
    dup = pd.concat([df, pd.DataFrame([{"arm": "rb", "seed": 3, "test_acc": 0.9}])], ignore_index=True)
    with pytest.raises(ConfigError, match=r"arm 'rb' has seed 3 more than once"):
        compare_arms(dup, baseline="base")
    # A failed (NaN) run next to a successful rerun of the same seed is fine.
    rerun = pd.concat([df, pd.DataFrame([{"arm": "rb", "seed": 3, "test_acc": np.nan}])], ignore_index=True)
    assert compare_arms(rerun, baseline="base", n_resamples=0).set_index("arm").loc["rb", "n_pairs"] == 10


def test_missing_or_non_numeric_metric() -> None:
    df, _, _, _ = _paired_frame()
    df["val_acc"] = df["test_acc"]
    with pytest.raises(
        ConfigError, match=r"metric column 'acc' not found.*\['seed', 'test_acc', 'val_acc'\]"
    ):
        compare_arms(df, baseline="base", metric="acc")
    with pytest.raises(ConfigError, match="metric column 'acc' not found"):
        summarize_arms(df, metric="acc")
    df["note"] = "x"
    with pytest.raises(ConfigError, match="metric column 'note' is not numeric"):
        compare_arms(df, baseline="base", metric="note")


def test_fewer_than_two_arms_and_bad_arguments() -> None:
    df, _, _, _ = _paired_frame()
    with pytest.raises(ConfigError, match="at least two arms"):
        compare_arms(df[df["arm"] == "base"], baseline="base")
    with pytest.raises(ConfigError, match="arm column 'variant' not found"):
        compare_arms(df, baseline="base", arm_col="variant")
    with pytest.raises(ConfigError, match="alpha"):
        compare_arms(df, baseline="base", alpha=1.5)
    with pytest.raises(ConfigError, match="n_resamples"):
        compare_arms(df, baseline="base", n_resamples=-1)


# --------------------------------------------------------------------------- Holm


def test_holm_hand_computed() -> None:
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    np.testing.assert_allclose(holm([0.5, 0.4]), [0.8, 0.8], rtol=1e-12)  # running max
    np.testing.assert_allclose(holm([0.3, 0.9]), [0.6, 0.9], rtol=1e-12)
    np.testing.assert_allclose(holm([0.02]), [0.02], rtol=1e-12)
    assert holm([]).shape == (0,)


def test_holm_nan_not_counted() -> None:
    out = holm([0.01, float("nan"), 0.04, 0.03, float("nan"), 0.005])
    assert np.isnan(out[[1, 4]]).all()
    np.testing.assert_allclose(out[[0, 2, 3, 5]], [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    assert np.isnan(holm([float("nan")])).all()


def test_holm_monotone_capped_and_validated() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.0, 0.5, size=40)
    adj = holm(p.tolist())
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0.0)
    assert np.all(adj >= p) and np.all(adj <= 1.0) and adj.max() == 1.0
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        holm([0.2, 1.3])


# --------------------------------------------------------------------------- calibration and power


def _simulate(reps: int, shift: float, *, paired: bool, seed: int) -> np.ndarray:
    """Primary and secondary p-values of ``reps`` simulated 10-seed comparisons, shape (reps, 2)."""
    rng = np.random.default_rng(seed)
    out = np.empty((reps, 2))
    for i in range(reps):
        if paired:
            per_seed = rng.normal(0.0, 3.0, size=10)  # a shared per-seed effect much larger than the noise
            a = per_seed + rng.normal(size=10) + shift
            b = per_seed + rng.normal(size=10)
            out[i] = paired_pvalues(a, b)
        else:
            out[i] = unpaired_pvalues(rng.normal(size=10) + shift, rng.normal(size=10))
    return out


@pytest.mark.parametrize("paired", [True, False], ids=["paired_t", "welch"])
def test_primary_test_is_calibrated_under_null(paired: bool) -> None:
    reps = 2000
    p = _simulate(reps, 0.0, paired=paired, seed=11 if paired else 12)
    rate = float(np.mean(p[:, 0] < ALPHA))
    assert abs(rate - ALPHA) <= _binomial_tol(ALPHA, reps), rate
    # The rank tests are discrete and at most nominal.
    assert float(np.mean(p[:, 1] < ALPHA)) <= ALPHA + _binomial_tol(ALPHA, reps)


def test_paired_rejection_rate_matches_power() -> None:
    reps = 1000
    p = _simulate(reps, 1.5, paired=True, seed=21)
    rate = float(np.mean(p[:, 0] < ALPHA))
    expected = power(10, 1.5, math.sqrt(2.0), alpha=ALPHA, paired=True)  # sd of differences: sqrt(1 + 1)
    assert rate > 0.8
    assert abs(rate - expected) <= _binomial_tol(expected, reps), (rate, expected)


def test_unpaired_rejection_rate_matches_power() -> None:
    reps = 1000
    p = _simulate(reps, 1.0, paired=False, seed=22)
    rate = float(np.mean(p[:, 0] < ALPHA))
    expected = power(10, 1.0, 1.0, alpha=ALPHA, paired=False)
    assert 0.45 < expected < 0.7  # mid-range power: a wrong df or noncentrality would show
    assert abs(rate - expected) <= _binomial_tol(expected, reps), (rate, expected)


def test_power_textbook_values() -> None:
    assert power(10, 1.0, 1.0) == pytest.approx(0.8031, abs=5e-4)
    assert power(17, 1.0, 1.0, paired=False) == pytest.approx(0.8070, abs=5e-4)
    assert power(64, 0.5, 1.0, paired=False) == pytest.approx(0.8015, abs=5e-4)
    assert power(10, 0.0, 1.0) == pytest.approx(ALPHA, abs=1e-9)
    assert power(10, -1.0, 1.0) == pytest.approx(power(10, 1.0, 1.0))
    assert power(10, 2.0, 2.0) == pytest.approx(power(10, 1.0, 1.0))  # only effect / sd matters
    assert math.isnan(power(1, 1.0, 1.0)) and math.isnan(power(10, 1.0, float("nan")))
    assert power(5, 0.1, 0.0) == 1.0
    with pytest.raises(ConfigError, match="sd"):
        power(10, 1.0, -1.0)


def test_seeds_needed_textbook_values() -> None:
    assert seeds_needed(1.0, 1.0, paired=True) == 10
    assert seeds_needed(1.0, 1.0, paired=False) == 17
    assert seeds_needed(0.5, 1.0, paired=False) == 64
    assert seeds_needed(-0.01, 0.02, paired=False) == 64  # scale and sign free
    n = seeds_needed(0.3, 1.0, power=0.9)
    assert n is not None and power(n, 0.3, 1.0) >= 0.9 > power(n - 1, 0.3, 1.0)
    assert seeds_needed(0.0, 1.0) is None
    assert seeds_needed(1.0, float("nan")) is None
    assert seeds_needed(1.0, 0.0) == 2
    assert seeds_needed(100.0, 1.0) == 2
    assert seeds_needed(10.0, 1.0) == 3  # n=2 pairs (df=1) cannot reach 0.8 at dz=10
    assert seeds_needed(0.5, 1.0, paired=False, max_n=63) is None
    assert seeds_needed(0.5, 1.0, paired=False, max_n=64) == 64


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_equals_scipy_direct() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(1.0, 1.0, size=12), rng.normal(0.0, 2.0, size=12)
    ours = bootstrap_diff_ci(a, b, paired=True, confidence=0.9, n_resamples=2000, seed=7)
    ref = sps.bootstrap(
        (a - b,),
        np.mean,
        n_resamples=2000,
        confidence_level=0.9,
        method="BCa",
        random_state=np.random.default_rng(7),
    ).confidence_interval
    assert ours == pytest.approx((ref.low, ref.high), rel=1e-12)

    c = rng.normal(0.5, 1.0, size=9)
    ours = bootstrap_diff_ci(a, c, paired=False, n_resamples=2000, seed=8)
    ref = sps.bootstrap(
        (a, c),
        lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        n_resamples=2000,
        method="BCa",
        random_state=np.random.default_rng(8),
    ).confidence_interval
    assert ours == pytest.approx((ref.low, ref.high), rel=1e-12)
    # A different seed gives a different interval, so the comparison above is not vacuous.
    assert bootstrap_diff_ci(a, c, paired=False, n_resamples=2000, seed=9) != pytest.approx(ours, rel=1e-9)


@pytest.mark.parametrize("paired", [True, False], ids=["paired", "unpaired"])
def test_bootstrap_coverage(paired: bool) -> None:
    reps, n, true_diff = 300, 20, 0.5
    rng = np.random.default_rng(31 if paired else 32)
    hits = 0
    for i in range(reps):
        if paired:
            per_seed = rng.normal(0.0, 2.0, size=n)
            a, b = per_seed + rng.normal(size=n) + true_diff, per_seed + rng.normal(size=n)
        else:
            a, b = rng.normal(size=n) + true_diff, rng.normal(0.0, 2.0, size=n)
        low, high = bootstrap_diff_ci(a, b, paired=paired, n_resamples=2000, seed=i)
        hits += low <= true_diff <= high
    assert 0.90 <= hits / reps <= 0.99, hits / reps


def test_bootstrap_degenerate_cases() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap_diff_ci([1.0, 2.0, 3.0], [0.5, 1.5, 2.5], paired=True) == (0.5, 0.5)
        assert bootstrap_diff_ci([2.0, 2.0], [1.0, 1.0, 1.0], paired=False) == (1.0, 1.0)
        low, high = bootstrap_diff_ci([1.0], [0.0], paired=True)
        assert math.isnan(low) and math.isnan(high)
        low, high = bootstrap_diff_ci([1.0, 2.0, 3.0], [0.0], paired=False)
        assert math.isnan(low) and math.isnan(high)
        low, high = bootstrap_diff_ci([1.0, 2.0, 4.0], [0.0, 1.0, 1.0], paired=True, n_resamples=0)
        assert math.isnan(low) and math.isnan(high)
        low, high = bootstrap_diff_ci([0.0, 1.0], [0.0, 0.0], paired=True, n_resamples=500)
        assert not (low > 0.5 or high < 0.5)  # n=2 works (or gives NaN) without a warning
    with pytest.raises(ConfigError, match="equal length"):
        bootstrap_diff_ci([1.0, 2.0], [1.0], paired=True)
    with pytest.raises(ConfigError, match="confidence"):
        bootstrap_diff_ci([1.0, 2.0], [1.0, 3.0], paired=True, confidence=95)


# --------------------------------------------------------------------------- effect sizes


def test_hedges_g_formula() -> None:
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 5.0, 6.0, 7.0]
    na, nb = len(a), len(b)
    pooled = math.sqrt(
        ((na - 1) * statistics.variance(a) + (nb - 1) * statistics.variance(b)) / (na + nb - 2)
    )
    j = 1.0 - 3.0 / (4.0 * (na + nb) - 9.0)
    expected = (statistics.fmean(a) - statistics.fmean(b)) / pooled * j
    assert hedges_g(a, b) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(-0.8730, abs=1e-4)  # by hand: -1.9 / 1.9347 * 24 / 27
    assert hedges_g(b, a) == pytest.approx(-expected, rel=1e-12)
    assert hedges_g([*a, float("nan")], b) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(hedges_g([1.0], b))
    assert math.isnan(hedges_g([1.0, 1.0], [2.0, 2.0]))


def test_prob_improvement_hand_cases() -> None:
    assert prob_improvement([3.0, 4.0, 5.0], [1.0, 2.0]) == 1.0
    assert prob_improvement([1.0, 2.0], [3.0, 4.0, 5.0]) == 0.0
    assert prob_improvement([1.0, 1.0], [1.0, 1.0, 1.0]) == 0.5
    # pairs (a>b, tie, a<b): 2 > 1 win, 2 = 2 tie, 1 < 2 loss, 1 = 1 tie -> (1 + 0.5 + 0 + 0.5) / 4
    assert prob_improvement([1.0, 2.0], [1.0, 2.0]) == 0.5
    assert prob_improvement([2.0, 3.0], [1.0, 2.0]) == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5, size=9).astype(float), rng.integers(0, 5, size=7).astype(float)
    assert prob_improvement(a, b) == pytest.approx(sps.mannwhitneyu(a, b).statistic / (9 * 7), rel=1e-12)
    assert math.isnan(prob_improvement([], [1.0]))
