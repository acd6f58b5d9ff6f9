"""The racing seed phase's decision rule (``rblock_tune.racing``): its error guarantees by
simulation, the ways a wrong rule breaks them, and ``race_step`` as a function of a run table.

The guarantee tests simulate races as a study runs them: every arm's paired differences are its own
noise minus the noise of a *shared* baseline run on the same seed (so the arms are correlated through
the baseline, correlation 1/2), the rule looks after every pair, and an arm is frozen once stopped
(``simulate_races``). A family-wise rate is accepted when it is at most ``alpha`` plus three binomial
standard errors of ``alpha`` over the races simulated; the same harness rejects a naive rule (a
fixed-n paired t-test re-applied at every look), so the test can fail.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from scipy import stats

from rblock_tune.analysis import DECISIONS, RACE_COLUMNS, power, seeds_needed
from rblock_tune.analysis import race_step as exported_race_step
from rblock_tune.errors import ConfigError
from rblock_tune.racing import RaceRule, _statistics, boundaries, race_step, simulate_races

ALPHA = 0.05
RACES = 2000
MAX_SEEDS = 17
"""Seeds of the fixed design with 80% power at an effect of 1 sd over 7 arms (benchmarks/bench_race.py)."""
SKEW_SHAPE = 2.0
"""Gamma shape of the skewed arms' noise: the differences have skewness 2 / sqrt(2) * (1/2)^1.5 = 0.5."""
SKEWNESS = 0.5

Look = Callable[..., dict[str, Any]]
FloatArray = npt.NDArray[np.float64]


def bound(p: float = ALPHA, races: int = RACES) -> float:
    """``p`` plus three binomial standard errors of a rate ``p`` over ``races``."""
    return p + 3.0 * math.sqrt(p * (1.0 - p) / races)


def differences(
    k_arms: int, dist: str, races: int, seed: int, effects: Any = 0.0, max_seeds: int = MAX_SEEDS
) -> FloatArray:
    """Paired differences (races, arms, seeds) of unit variance: arm noise minus the shared baseline
    noise of the same seed (each of variance 1/2), plus ``effects`` (per arm, in sd of a difference).

    ``dist``: ``normal``; ``t3`` (Student t, 3 df: heavy tails, no finite 4th moment); ``skewed`` (arm
    noise a centred gamma of shape 2, skewness 1.41; baseline noise normal: differences of skewness
    0.5, excess kurtosis 0.75, as when an arm's runs now and then land far on one side); ``exponential``
    (independent centred exponential differences, skewness 2, no shared baseline: the case that breaks
    the rule).
    """
    rng = np.random.default_rng(seed)
    arm_shape, base_shape = (races, k_arms, max_seeds), (races, 1, max_seeds)
    if dist == "normal":
        arm, base = rng.standard_normal(arm_shape), rng.standard_normal(base_shape)
    elif dist == "t3":
        arm = rng.standard_t(3, arm_shape) / math.sqrt(3.0)
        base = rng.standard_t(3, base_shape) / math.sqrt(3.0)
    elif dist == "skewed":
        arm = (rng.gamma(SKEW_SHAPE, size=arm_shape) - SKEW_SHAPE) / math.sqrt(SKEW_SHAPE)
        base = rng.standard_normal(base_shape)
    elif dist == "independent-skewed":  # no shared part: centred gamma(16) differences, skewness 0.5
        shape = 16.0
        d = (rng.gamma(shape, size=arm_shape) - shape) / math.sqrt(shape)
        return d + np.asarray(effects, dtype=np.float64)[..., None]
    elif dist == "exponential":
        return rng.exponential(size=arm_shape) - 1.0 + np.asarray(effects, dtype=np.float64)[..., None]
    else:
        raise AssertionError(dist)
    return (arm - base) / math.sqrt(2.0) + np.asarray(effects, dtype=np.float64)[..., None]


def race_outcomes(rule_or_look: RaceRule | Look, d: FloatArray, **design: Any) -> dict[str, Any]:
    """``simulate_races`` of a rule, or of a ``look`` with the real rule's shapes (its ``design``)."""
    if isinstance(rule_or_look, RaceRule):
        return simulate_races(d, rule_or_look)
    rule = RaceRule(d.shape[1], ALPHA, max_seeds=d.shape[2], **design)
    return simulate_races(d, rule, look=rule_or_look)


def false_decision_rate(
    rule_or_look: RaceRule | Look, k_arms: int, dist: str, races: int = RACES, seed: int = 0
) -> float:
    """Share of races under the global null (every arm's mean difference 0) in which any arm is
    decided ``better`` or ``worse``, looking after every seed."""
    assert races >= 2000
    out = race_outcomes(rule_or_look, differences(k_arms, dist, races, seed))
    return float(np.isin(out["decision"], (1, 2)).any(axis=1).mean())


def naive_look(k_arms: int, alpha: float = ALPHA, min_seeds: int = 3, max_seeds: int = MAX_SEEDS) -> Look:
    """A wrong rule with the signature of ``RaceRule.look``: the fixed-n paired t-test at level
    ``alpha / k`` (Bonferroni over the arms), re-applied at every look as if it were the only one."""

    def look(mean: Any, sd: Any, n: Any, frozen: Any, stopped: Any, critical: Any = None) -> dict[str, Any]:
        c = np.where(n >= min_seeds, stats.t.ppf(1 - alpha / k_arms / 2, np.maximum(n - 1, 1)), np.inf)
        with np.errstate(invalid="ignore"):
            low, high = mean - c * sd / np.sqrt(n), mean + c * sd / np.sqrt(n)
        decision = frozen.copy()
        open_ = (frozen == 0) & ~stopped
        decision[open_ & (low > 0)] = 1
        decision[open_ & (high < 0)] = 2
        live = (decision == 0) & ~stopped & (n < max_seeds)
        return {"decision": decision, "level": np.full(n.shape, alpha / k_arms), "low": low,
                "high": high, "live": live}  # fmt: skip

    return look


def with_table(rule: RaceRule, table: FloatArray) -> Look:
    """``rule.look`` with its critical values replaced by ``table`` (a deliberately wrong rule)."""

    def look(mean: Any, sd: Any, n: Any, frozen: Any, stopped: Any, critical: Any = None) -> dict[str, Any]:
        return rule.look(mean, sd, n, frozen, stopped, critical=table)

    return look


# --------------------------------------------------------------------------- the family-wise guarantee


@pytest.mark.parametrize("statistic", ["t", "hall"])
@pytest.mark.parametrize("dist", ["normal", "t3", "skewed"])
@pytest.mark.parametrize("k_arms", [3, 8])
def test_family_wise_false_decision_rate_under_the_global_null(
    k_arms: int, dist: str, statistic: str
) -> None:
    rule = RaceRule(k_arms, ALPHA, max_seeds=MAX_SEEDS, statistic=statistic)
    rate = false_decision_rate(rule, k_arms, dist, seed=k_arms)
    assert rate <= bound(), f"{k_arms} arms, {dist}, {statistic}: family-wise rate {rate:.4f} > {bound():.4f}"


@pytest.mark.parametrize("k_arms", [3, 8])
def test_hall_holds_for_independent_skewed_differences(k_arms: int) -> None:
    """Hall's skewness-corrected statistic also holds where the skew is not diluted by a symmetric
    shared baseline (skewness 0.5 of the differences themselves); the plain t is liberal there."""
    d = differences(k_arms, "independent-skewed", RACES, seed=100 + k_arms)
    assert abs(float(stats.skew(d.ravel())) - 0.5) < 0.05
    out = simulate_races(d, RaceRule(k_arms, ALPHA, max_seeds=MAX_SEEDS, statistic="hall"))
    rate = float(np.isin(out["decision"], (1, 2)).any(axis=1).mean())
    assert rate <= bound(), f"{k_arms} arms, hall: family-wise rate {rate:.4f} > {bound():.4f}"


def test_hall_intervals_invert_its_statistic() -> None:
    """The interval race_step reports with ``statistic: hall`` is the set of means its statistic does
    not reject: its ends are rejected just outside and kept just inside."""
    rng = np.random.default_rng(7)
    values = pd.DataFrame(
        [{"arm": "b", "seed": s, "value": 0.0} for s in range(9)]
        + [{"arm": "a", "seed": s, "value": float(v)} for s, v in enumerate(rng.exponential(size=9))]
    )
    row = race_step(values, baseline="b", max_seeds=MAX_SEEDS, statistic="hall", futility=0.0).iloc[0]
    d = values[values.arm == "a"]["value"].to_numpy()
    c = RaceRule(1, ALPHA, max_seeds=MAX_SEEDS, statistic="hall").critical()[0, 9]
    for end, inside in ((row.ci_low, 1e-6), (row.ci_high, -1e-6)):
        for shift, rejected in ((inside, False), (-inside, True)):
            stat = _statistics((d - (end + shift))[None, :], "hall")[0, -1]
            assert (stat >= c) == rejected, (end, shift, stat, c)
    assert row.ci_high - row.mean_diff != pytest.approx(row.mean_diff - row.ci_low)  # skewed: asymmetric


def test_the_skewed_setting_is_as_skewed_as_stated() -> None:
    d = differences(8, "skewed", RACES, seed=8)
    assert abs(float(stats.skew(d.ravel())) - SKEWNESS) < 0.05
    assert abs(float(np.var(d)) - 1.0) < 0.02
    # arms are correlated through the shared baseline (correlation 1/2)
    pair = d[:, :2, :].transpose(1, 0, 2).reshape(2, -1)
    assert abs(float(np.corrcoef(pair[0], pair[1])[0, 1]) - 0.5) < 0.03


def test_the_heavy_tailed_setting_has_heavy_tails() -> None:
    d = differences(8, "t3", RACES, seed=8)
    assert float(stats.kurtosis(d.ravel())) > 3.0  # normal: 0
    assert abs(float(np.var(d)) - 1.0) < 0.1


@pytest.mark.parametrize("k_arms", [3, 8])
def test_a_naive_rule_fails_the_same_test(k_arms: int) -> None:
    """A fixed-n t-test at alpha/k re-applied after every seed: the harness catches it."""
    rate = false_decision_rate(naive_look(k_arms), k_arms, "normal", seed=k_arms)
    assert rate > bound(), rate


@pytest.mark.parametrize("k_arms", [3, 8])
def test_a_rule_without_multiplicity_correction_fails_the_same_test(k_arms: int) -> None:
    """The right boundaries at level alpha for every arm (no alpha / k): caught too."""
    rule = RaceRule(k_arms, ALPHA, max_seeds=MAX_SEEDS)
    uncorrected = np.tile(rule.critical()[0], (k_arms, 1))
    rate = false_decision_rate(with_table(rule, uncorrected), k_arms, "normal", seed=k_arms)
    assert rate > bound(), rate


def test_a_rule_that_spends_its_level_at_every_look_fails_the_same_test() -> None:
    """Holm's recycling with the fixed-n critical value at every look (no spending): caught."""
    k_arms = 3
    rule = RaceRule(k_arms, ALPHA, max_seeds=MAX_SEEDS)
    n = np.arange(MAX_SEEDS + 1)
    table = np.full((k_arms, MAX_SEEDS + 1), np.inf)
    for j in range(1, k_arms + 1):
        table[j - 1, 3:] = stats.t.ppf(1 - ALPHA / j / 2, n[3:] - 1)
    rate = false_decision_rate(with_table(rule, table), k_arms, "normal", seed=k_arms)
    assert rate > bound(), rate


def test_strongly_skewed_differences_break_the_guarantee() -> None:
    """The documented limit (docs/racing.md): independent centred-exponential differences (skewness
    2) get far more than alpha, as any t-based rule does on them at these sample sizes."""
    d = differences(8, "exponential", RACES, seed=1)
    assert abs(float(stats.skew(d.ravel())) - 2.0) < 0.15
    out = race_outcomes(RaceRule(8, ALPHA, max_seeds=MAX_SEEDS), d)
    assert float(np.isin(out["decision"], (1, 2)).any(axis=1).mean()) > bound() + 0.05


def test_zero_arms_keep_the_guarantee_when_other_arms_differ() -> None:
    """A partial null: arms with real effects are decided and pass their level on (Holm); the
    zero-effect arms still get a false decision in at most alpha of the races."""
    effects = [2.0, 1.0, 0.0, 0.0, -1.0, -2.0, -3.0, 0.0]
    d = differences(8, "normal", RACES, seed=5, effects=effects)
    out = race_outcomes(RaceRule(8, ALPHA, max_seeds=MAX_SEEDS), d)
    zero = np.asarray(effects) == 0
    rate = float(np.isin(out["decision"][:, zero], (1, 2)).any(axis=1).mean())
    assert rate <= bound(), rate
    # and no arm with a real effect is decided in the wrong direction beyond alpha
    wrong = ((out["decision"] == 2) & (np.asarray(effects) > 0)) | (
        (out["decision"] == 1) & (np.asarray(effects) < 0)
    )
    assert float(wrong.any(axis=1).mean()) <= bound()


# --------------------------------------------------------------------------- equivalence


EQ_MARGIN, EQ_SEEDS = 1.0, 20  # 20 pairs: a zero-effect arm can be shown inside +-1 sd


@pytest.mark.parametrize("dist", ["normal", "t3", "skewed"])
def test_an_arm_beyond_the_margin_is_rarely_decided_equivalent(dist: str) -> None:
    effects = [1.05, -1.05, 0.0]
    d = differences(3, dist, RACES, seed=11, effects=effects, max_seeds=EQ_SEEDS)
    out = race_outcomes(RaceRule(3, ALPHA, EQ_MARGIN, max_seeds=EQ_SEEDS), d)
    equivalent = (out["decision"] == 3).mean(axis=0)
    assert equivalent[0] <= bound() and equivalent[1] <= bound(), equivalent
    assert equivalent[2] > 0.75, equivalent  # and a zero-effect arm usually is


def test_repeated_fixed_n_equivalence_tests_fail_the_same_test() -> None:
    """TOST at level alpha after every seed (a 90% fixed-n interval inside the margin): caught."""

    def tost(mean: Any, sd: Any, n: Any, frozen: Any, stopped: Any, critical: Any = None) -> dict[str, Any]:
        c = np.where(n >= 3, stats.t.ppf(1 - ALPHA, np.maximum(n - 1, 1)), np.inf)
        with np.errstate(invalid="ignore"):
            low, high = mean - c * sd / np.sqrt(n), mean + c * sd / np.sqrt(n)
        decision = frozen.copy()
        decision[(frozen == 0) & ~stopped & (low > -EQ_MARGIN) & (high < EQ_MARGIN)] = 3
        live = (decision == 0) & ~stopped & (n < EQ_SEEDS)
        return {"decision": decision, "level": np.full(n.shape, ALPHA), "low": low, "high": high,
                "live": live}  # fmt: skip

    d = differences(3, "normal", RACES, seed=11, effects=[1.05, -1.05, 1.05], max_seeds=EQ_SEEDS)
    out = race_outcomes(tost, d, margin=EQ_MARGIN)
    assert float((out["decision"] == 3).mean(axis=0).max()) > bound()


# --------------------------------------------------------------------------- power and behaviour


def test_large_effects_are_decided_in_their_direction_early() -> None:
    effects = [3.0, -3.0, 0.0]
    d = differences(3, "normal", RACES, seed=2, effects=effects, max_seeds=10)
    out = race_outcomes(RaceRule(3, ALPHA, max_seeds=10), d)
    assert (out["decision"][:, 0] == 1).mean() > 0.99
    assert (out["decision"][:, 1] == 2).mean() > 0.99
    assert np.median(out["seeds"][:, :2]) <= 6
    # the baseline runs while any arm is live; nothing costs more than the fixed design
    assert (out["runs"] == out["seeds"].sum(axis=1) + out["seeds"].max(axis=1)).all()
    assert out["runs"].max() <= 4 * 10


def test_the_racing_design_saves_runs_at_the_fixed_designs_power() -> None:
    """The benchmark's scenario (a), smaller: >= 30% fewer runs, power at +1 within 5 points."""
    effects = [2.0, 1.0, 0.0, 0.0, -1.0, -2.0, -3.0]
    d = differences(7, "normal", RACES, seed=3, effects=effects)
    out = race_outcomes(RaceRule(7, ALPHA, max_seeds=MAX_SEEDS), d)
    assert out["runs"].mean() <= 0.7 * 8 * MAX_SEEDS
    assert seeds_needed(1.0, 1.0, alpha=ALPHA / 7, power=0.8) == MAX_SEEDS
    fixed_power = power(MAX_SEEDS, 1.0, 1.0, alpha=ALPHA / 7)  # 0.83
    assert (out["decision"][:, 1] == 1).mean() >= fixed_power - 0.05


def test_futility_only_withholds_decisions() -> None:
    d = differences(3, "normal", RACES, seed=4)
    on = race_outcomes(RaceRule(3, ALPHA, max_seeds=MAX_SEEDS), d)
    off = race_outcomes(RaceRule(3, ALPHA, max_seeds=MAX_SEEDS, futility=0.0), d)
    assert on["runs"].mean() < off["runs"].mean()
    # a race decided with the futility stop decided nothing the race without it did not
    decided = on["decision"] != 0
    assert (on["decision"][decided] == off["decision"][decided]).all()


# --------------------------------------------------------------------------- boundaries


@pytest.mark.parametrize("max_seeds", [5, 10, 17])
def test_boundaries_are_sane(max_seeds: int) -> None:
    levels = [ALPHA, ALPHA / 3, ALPHA / 8]
    tables = [boundaries(max_seeds, 3, level) for level in levels]
    n = np.arange(3, max_seeds + 1)
    for level, c in zip(levels, tables, strict=True):
        assert c.shape == (max_seeds - 2,) and np.isfinite(c).all() and (c > 0).all()
        assert (np.diff(c) <= 0).all(), c  # later looks cross more easily
        # no look is easier than a fixed-n test at the whole level, and the last is stricter
        fixed = stats.t.ppf(1 - level / 2, n - 1)
        assert (c >= fixed).all() and c[-1] > fixed[-1]
        assert not c.flags.writeable
    for stricter, looser in zip(tables[1:], tables[:-1], strict=True):
        assert (stricter > looser).all()  # decreasing in the level


def test_boundaries_keep_their_level_on_fresh_sequences() -> None:
    """Calibration check with sequences independent of the calibration's own."""
    max_seeds, level, sims = 10, ALPHA, 1 << 17
    x = np.random.default_rng(99).standard_normal((sims, max_seeds))
    n = np.arange(1, max_seeds + 1)
    mean = np.cumsum(x, axis=1) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt((np.cumsum(x * x, axis=1) - n * mean**2) / (n - 1))
    t = np.abs(mean / (sd / np.sqrt(n)))[:, 2:]
    rate = float((t > boundaries(max_seeds, 3, level)).any(axis=1).mean())
    assert abs(rate - level) < 4 * math.sqrt(level * (1 - level) / sims) + 0.03 * level, rate


def test_boundaries_refuse_a_bad_design() -> None:
    with pytest.raises(ConfigError):
        boundaries(10, 1, ALPHA)
    with pytest.raises(ConfigError):
        boundaries(2, 3, ALPHA)
    with pytest.raises(ConfigError):
        boundaries(10, 3, 1.5)


# --------------------------------------------------------------------------- race_step


def runs_table(values: dict[str, list[float]], seeds: dict[str, list[int]] | None = None) -> pd.DataFrame:
    rows = []
    for arm, vals in values.items():
        for i, v in enumerate(vals):
            rows.append({"arm": arm, "seed": (seeds or {}).get(arm, list(range(len(vals))))[i], "value": v})
    return pd.DataFrame(rows)


def test_race_step_is_exported_and_returns_its_columns_sorted_by_arm() -> None:
    assert exported_race_step is race_step
    rng = np.random.default_rng(0)
    table = runs_table({arm: list(rng.normal(0.9, 0.01, 5)) for arm in ("zeta", "base", "alpha", "mid")})
    out = race_step(table, baseline="base", max_seeds=20)  # 5 pairs: before any futility stop
    assert tuple(out.columns) == RACE_COLUMNS
    assert list(out["arm"]) == ["alpha", "mid", "zeta"]
    assert set(out["decision"]) <= set(DECISIONS)
    assert out["n_pairs"].dtype == np.int64 and out["live"].dtype == bool
    assert (out["decision"] == "undecided").all() and out["live"].all()
    assert (out["level"] == ALPHA / 3).all()


def test_race_step_refuses_bad_input() -> None:
    good = runs_table({"base": [0.9, 0.91, 0.92], "a": [0.91, 0.92, 0.93]})
    with pytest.raises(ConfigError, match="more than once"):
        race_step(runs_table({"base": [0.9, 0.91], "a": [0.9, 0.9]}, {"a": [1, 1]}), baseline="base",
                  max_seeds=5)  # fmt: skip
    with pytest.raises(ConfigError, match="baseline"):
        race_step(good, baseline="nope", max_seeds=5)
    with pytest.raises(ConfigError, match="max_seeds"):
        race_step(good, baseline="base")
    with pytest.raises(ConfigError, match="mode"):
        race_step(good, baseline="base", max_seeds=5, mode="maximise")
    with pytest.raises(ConfigError, match="besides the baseline"):
        race_step(runs_table({"base": [0.9, 0.91]}), baseline="base", max_seeds=5)
    with pytest.raises(ConfigError, match="column"):
        race_step(good, baseline="base", max_seeds=5, metric="test_acc")
    bad_settings: list[tuple[dict[str, Any], str]] = [
        ({"max_seeds": "ten"}, "max_seeds='ten' must be an integer"),
        ({"max_seeds": 2.5}, "max_seeds=2.5 must be an integer"),
        ({"max_seeds": 5, "min_seeds": True}, "min_seeds=True must be an integer"),
        ({"max_seeds": 5, "margin": None}, "margin=None must be a number"),
        ({"max_seeds": 5, "futility": "x"}, "futility='x' must be a number"),
        ({"max_seeds": 5, "alpha": "0.05"}, "alpha='0.05' must be a number"),
        ({"max_seeds": 5, "frozen": "x"}, "frozen must be an earlier race_step output"),
        ({"max_seeds": 5, "arms": "a"}, "arms='a' must be a list"),
        ({"max_seeds": 5, "statistic": "z"}, "statistic='z'"),
    ]
    for settings, message in bad_settings:
        with pytest.raises(ConfigError, match=re.escape(message)):
            race_step(good, baseline="base", **settings)
    for bad_seed in (1.5, math.inf):
        with pytest.raises(ConfigError, match="integers"):
            race_step(runs_table({"base": [0.9], "a": [0.9]}, {"a": [bad_seed]}), baseline="base",  # type: ignore[list-item]
                      max_seeds=5)  # fmt: skip


def test_race_step_drops_nan_runs_and_pairs_beyond_max_seeds() -> None:
    base = [0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96]
    arm = [0.91, 0.93, math.nan, 0.90, 0.98, 0.97, 5.0]  # seed 2 failed; seed 6 is beyond max_seeds
    out = race_step(runs_table({"base": base, "a": arm}), baseline="base", max_seeds=5).iloc[0]
    used = [a - b for a, b in zip(arm, base, strict=True) if not math.isnan(a)][:5]
    assert out["n_pairs"] == 5
    assert out["mean_diff"] == pytest.approx(float(np.mean(used)))
    assert not out["live"]  # 5 pairs: the race is over for this arm


def test_race_step_keeps_frozen_rows() -> None:
    base = [0.90, 0.91, 0.92, 0.93]
    strong = [b + 0.05 + 0.001 * i for i, b in enumerate(base)]
    first = race_step(runs_table({"base": base, "a": strong, "b": base}), baseline="base", max_seeds=10)
    a = first.set_index("arm").loc["a"]
    assert a["decision"] == "better" and not a["live"]
    # runs that were already going when "a" was decided finish and come back, pulling its mean down
    more_base = [*base, 0.94, 0.95, 0.96]
    more_a = [*strong, 0.80, 0.81, 0.79]
    table = runs_table({"base": more_base, "a": more_a, "b": more_base})
    second = race_step(table, baseline="base", max_seeds=10, frozen=first)
    pd.testing.assert_series_equal(second.set_index("arm").loc["a"], a)
    assert race_step(table, baseline="base", max_seeds=10).set_index("arm").loc["a", "decision"] != "better"
    # an undecided, live arm is decided anew at the next look
    assert second.set_index("arm").loc["b", "n_pairs"] == 7


def test_mode_min_flips_better_and_worse() -> None:
    rng = np.random.default_rng(1)
    base = list(rng.normal(0.9, 0.01, 6))
    acc = {"base": base, "up": [b + 0.05 + rng.normal(0, 0.002) for b in base],
           "down": [b - 0.05 + rng.normal(0, 0.002) for b in base]}  # fmt: skip
    loss = {arm: [-v for v in vals] for arm, vals in acc.items()}
    by_max = race_step(runs_table(acc), baseline="base", max_seeds=10)
    by_min = race_step(runs_table(loss), baseline="base", max_seeds=10, mode="min")
    assert list(by_max["decision"]) == ["worse", "better"]  # arms sorted: down, up
    assert list(by_min["decision"]) == ["worse", "better"]  # lower loss is better
    np.testing.assert_allclose(by_min["mean_diff"], -by_max["mean_diff"])
    np.testing.assert_allclose(by_min["ci_low"], -by_max["ci_high"])
    # loss decided the other way round when mode is left at max
    assert list(race_step(runs_table(loss), baseline="base", max_seeds=10)["decision"]) == ["better", "worse"]
    # a frozen decision keeps its direction under mode="min"
    again = race_step(runs_table(loss), baseline="base", max_seeds=10, mode="min", frozen=by_min)
    pd.testing.assert_frame_equal(again, by_min)


def _race_by_race_step(d: FloatArray, base: FloatArray, margin: float, max_seeds: int) -> pd.DataFrame:
    """One race run as a study runs it: after each seed, the completed runs of the live arms and the
    baseline go to ``race_step`` with its previous output."""
    arms = [f"arm{i}" for i in range(d.shape[0])]
    rows: list[dict[str, Any]] = []
    frozen: pd.DataFrame | None = None
    for s in range(max_seeds):
        live = arms if frozen is None else list(frozen.loc[frozen["live"], "arm"])
        if not live:
            break
        rows.append({"arm": "base", "seed": s, "value": float(base[s])})
        rows += [{"arm": a, "seed": s, "value": float(base[s] + d[arms.index(a), s])} for a in live]
        frozen = race_step(pd.DataFrame(rows), baseline="base", margin=margin, max_seeds=max_seeds,
                           frozen=frozen)  # fmt: skip
    assert frozen is not None
    return frozen


@pytest.mark.parametrize("margin", [0.0, 0.6])
def test_race_step_agrees_with_the_vectorised_rule(margin: float) -> None:
    """Look by look with ``frozen``, race_step makes simulate_races's decisions, at the same looks,
    with the interval RaceRule's critical values give at that look."""
    k, max_seeds, races = 4, 10, 12
    effects = [1.5, 0.0, -1.2, 0.3]
    d = differences(k, "normal", races, seed=7, effects=effects, max_seeds=max_seeds) * 0.01
    base = np.random.default_rng(8).normal(0.9, 0.01, (races, max_seeds))
    rule = RaceRule(k, ALPHA, margin * 0.01, max_seeds=max_seeds)
    sim = simulate_races(d, rule)
    table = rule.critical()
    names = {0: "undecided", 1: "better", 2: "worse", 3: "equivalent"}
    seen = set()
    for r in range(races):
        out = _race_by_race_step(d[r], base[r], margin * 0.01, max_seeds)
        assert list(out["decision"]) == [names[int(c)] for c in sim["decision"][r]]
        assert list(out["n_pairs"]) == list(sim["seeds"][r])
        seen |= set(out["decision"])
        for i, row in enumerate(out.to_dict("records")):
            n = int(sim["seeds"][r, i])
            x = d[r, i, :n]
            # arms decided different at this look or before pass their level on (Holm)
            j = k - int(((sim["decision"][r] == 1) | (sim["decision"][r] == 2))[sim["seeds"][r] <= n].sum())
            half = table[j - 1, n] * float(np.std(x, ddof=1)) / math.sqrt(n)
            assert row["mean_diff"] == pytest.approx(float(np.mean(x)), abs=1e-12)
            assert row["ci_low"] == pytest.approx(float(np.mean(x)) - half, abs=1e-12)
            assert row["ci_high"] == pytest.approx(float(np.mean(x)) + half, abs=1e-12)
            assert row["level"] == pytest.approx(ALPHA / j)
    assert {"better", "worse"} <= seen
