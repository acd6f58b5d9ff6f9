"""The racing seed phase's decision rule (``rblock_tune.analysis.race_step``; the seed phase's
searcher uses it too, so it sits below both): which arms are already decided against the baseline.

A race hands out seeds seed-major and, after each completed (arm, baseline) pair, asks
:func:`race_step` which arms are decided. An arm decided ``better``, ``worse`` or ``equivalent`` is
frozen (it gets no more seeds); the rest keep running until ``max_seeds`` pairs.

**The method.** A group-sequential paired t-test per arm (Jennison & Turnbull, *Group Sequential
Methods with Applications to Clinical Trials*, 2000, ch. 7 and 11), with a multiplicity correction
across arms by Holm's step-down recycled over the looks (Maurer & Bretz, "Multiple testing in group
sequential trials using graphical approaches", *Stat. Biopharm. Res.* 5, 2013):

* Looks are at ``n = min_seeds .. max_seeds`` pairs. For a per-arm level ``a`` the rule spends ``a``
  over the looks with the Hwang-Shih-DeCani spending function (gamma :data:`SPENDING_GAMMA`, between
  Pocock's and O'Brien-Fleming's) of the information fraction ``(n - min_seeds + 1) / (max_seeds -
  min_seeds + 1)``, and the critical values ``c_n`` of ``|t_n|`` (the one-sample t statistic of the
  ``n`` paired differences) are set so that, for i.i.d. normal differences of mean 0, the chance that
  *any* look crosses is ``a``. The joint law of ``t_min .. t_max`` under that null does not depend on
  the unknown variance, so the values are calibrated once, by :data:`CALIBRATION_SIMS` simulated
  sequences with a fixed seed (Monte Carlo error about 3% of ``a``).
* The interval at a look is ``mean +- c_n * sd / sqrt(n)`` (none while every difference is equal,
  as a coarse test set can make them: then ``sd`` says nothing of the spread): over all looks
  together it covers the true mean difference with probability ``1 - a``, so it stays valid however
  the looks were used to stop.
* With ``k`` arms compared with the baseline, each arm starts at ``a = alpha / k``; an arm decided
  ``better`` or ``worse`` passes its share to the arms still undecided (``a = alpha / j`` with ``j``
  the arms not yet decided different), which Holm's closed test allows at every later look.
* An arm is ``better`` / ``worse`` when its interval excludes 0, ``equivalent`` when ``margin > 0``
  and the interval lies inside ``(-margin, +margin)``; an arm still undecided at a look from half of
  ``max_seeds`` on stops early (``live`` False, decision ``undecided``) when, were its current mean and
  sd to hold, even ``futility`` times the half-width it would have at ``max_seeds`` could not exclude 0
  (nor, with a margin, fit inside it). This futility stop only ever withholds a decision, so it
  cannot raise an error rate (a non-binding futility boundary); ``futility=0`` turns it off.

With ``statistic="hall"`` the per-look statistic is Hall's skewness-corrected t (Hall, "On the removal of
skewness by transformation", *JRSS-B* 54, 1992), increasing in the studentized mean, so its interval is
the set of means it does not reject; it is calibrated the same way and holds at larger skewness, at
some power under normal differences (docs/racing.md).

**The guarantee**, when :func:`race_step` is called after every new pair (or at any other looks, up
to ``max_seeds`` pairs per arm) with ``frozen`` set to its previous output: the probability that any
arm whose true mean difference is 0 is ever decided ``better`` or ``worse`` is at most ``alpha``,
across all arms and all looks together, and an arm whose true |mean difference| exceeds ``margin`` is
decided ``equivalent`` with probability at most ``alpha``.

**What it assumes.** Seeds are independent repetitions (so the paired differences of an arm are
i.i.d.); the order in which runs complete does not depend on their results; and the differences are
roughly symmetric. The calibration is exact for normal differences; symmetric heavy tails make the
t statistic conservative (Student t with 3 df: a family-wise rate near 0.03 at ``alpha`` 0.05), and
skewness makes it liberal in one tail: near ``alpha`` at skewness 0.5 when the skew is in the arms'
noise and the shared baseline's is normal, 0.055-0.066 for independent differences of skewness 0.5,
0.09-0.12 at skewness 1 and 0.23-0.38 at skewness 2 (3 and 8 arms; ``docs/racing.md``). No test of a
mean holds at every distribution without bounds on the data (Bahadur & Savage 1956). The simulation
tests in ``tests/analysis/test_race.py`` hold the family-wise rate within three binomial standard errors
of ``alpha`` for normal, Student-t(3) and skewness-0.5 differences, and show centred-exponential
differences (skewness 2) breaking it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from rblock_tune.errors import ConfigError
from rblock_tune.layout import RACE_LOOK_COLUMNS

FloatArray = npt.NDArray[np.float64]

__all__ = [
    "BETTER",
    "CALIBRATION_SIMS",
    "DECISIONS",
    "EQUIVALENT",
    "RACE_COLUMNS",
    "SPENDING_GAMMA",
    "UNDECIDED",
    "WORSE",
    "RaceRule",
    "boundaries",
    "race_step",
    "simulate_races",
]

BETTER, WORSE, EQUIVALENT, UNDECIDED = "better", "worse", "equivalent", "undecided"
DECISIONS: tuple[str, ...] = (BETTER, WORSE, EQUIVALENT, UNDECIDED)
"""An arm's decision against the baseline, in the metric's direction."""

RACE_COLUMNS: tuple[str, ...] = RACE_LOOK_COLUMNS[1:]
"""Column order of :func:`race_step`: the looks table's (:data:`~rblock_tune.layout.RACE_LOOK_COLUMNS`)
without ``look``."""

SPENDING_GAMMA = -2.0
"""Hwang-Shih-DeCani spending parameter (0: linear spending; -4 is close to O'Brien-Fleming)."""

CALIBRATION_SIMS = 1 << 18
"""Simulated normal sequences that calibrate the critical values."""

FUTILITY_FROM = 0.5
"""Futility stops are considered from this fraction of ``max_seeds`` on."""

# decision codes of the vectorised rule
_UNDECIDED, _BETTER, _WORSE, _EQUIVALENT = 0, 1, 2, 3
_CODES = {_UNDECIDED: UNDECIDED, _BETTER: BETTER, _WORSE: WORSE, _EQUIVALENT: EQUIVALENT}


def _spent(fraction: FloatArray, level: float) -> FloatArray:
    """Cumulative error spent at information ``fraction`` (Hwang-Shih-DeCani)."""
    g = SPENDING_GAMMA
    if g == 0:
        return level * fraction
    return level * (1.0 - np.exp(-g * fraction)) / (1.0 - math.exp(-g))


STATISTICS = ("t", "hall")
"""The per-look statistics: the one-sample t (the default) or Hall's skewness-corrected t."""


def _hall(root_n: FloatArray, theta: FloatArray, skew: FloatArray) -> FloatArray:
    """Hall's (1992) transformation of the studentized mean ``theta = mean / sd`` at skewness ``skew``:
    ``sqrt(n) * (theta + skew theta^2 / 3 + skew^2 theta^3 / 27 + skew / (6 n))``, increasing in theta."""
    n = root_n * root_n
    return root_n * (theta + skew * theta**2 / 3 + skew**2 * theta**3 / 27 + skew / (6 * n))


def _hall_inverse(root_n: FloatArray, value: FloatArray, skew: FloatArray) -> FloatArray:
    """The theta whose :func:`_hall` is ``value``: ``3 / skew * (cbrt(1 + skew (value / sqrt(n) -
    skew / (6 n))) - 1)``, and ``value / sqrt(n)`` at skewness 0."""
    n = root_n * root_n
    y = value / root_n
    with np.errstate(invalid="ignore", divide="ignore"):
        small = np.abs(skew) < 1e-9
        safe = np.where(small, 1.0, skew)
        theta = 3.0 / safe * (np.cbrt(1.0 + safe * (y - safe / (6 * n))) - 1.0)
    return np.where(small, y, theta)


def _statistics(x: FloatArray, statistic: str) -> FloatArray:
    """|statistic| after n = 1, 2, ... of each row of ``x`` (NaN where undefined)."""
    n = np.arange(1, x.shape[-1] + 1, dtype=np.float64)
    total, squares, cubes = (np.cumsum(x**p, axis=-1) for p in (1, 2, 3))
    mean = total / n
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (squares - n * mean * mean) / (n - 1)
        sd = np.sqrt(np.maximum(var, 0.0))
        theta = mean / sd
        if statistic == "t":
            return np.abs(np.sqrt(n) * theta)
        third = cubes / n - 3 * mean * squares / n + 2 * mean**3
        skew = np.nan_to_num(third / sd**3)
        return np.abs(_hall(np.sqrt(n), theta, skew))


@lru_cache(maxsize=4)
def _null_statistics(max_seeds: int, min_seeds: int, statistic: str) -> FloatArray:
    """|statistic| for n = min_seeds..max_seeds of :data:`CALIBRATION_SIMS` null normal sequences."""
    rng = np.random.default_rng(20260712)
    x = rng.standard_normal((CALIBRATION_SIMS, max_seeds))
    return np.ascontiguousarray(np.nan_to_num(_statistics(x, statistic), nan=0.0)[:, min_seeds - 1 :])


@lru_cache(maxsize=256)
def boundaries(max_seeds: int, min_seeds: int, level: float, statistic: str = "t") -> FloatArray:
    """Critical values ``c_n`` of ``|statistic|`` at ``n = min_seeds..max_seeds`` for a per-arm ``level``.

    Raises:
        ConfigError: ``min_seeds < 2``, ``max_seeds < min_seeds``, a level outside (0, 1) or an unknown
            statistic.
    """
    if statistic not in STATISTICS:
        raise ConfigError(f"statistic={statistic!r} must be one of {', '.join(STATISTICS)}")
    _check_design(min_seeds, max_seeds)
    check_prob(level, "level")
    t = _null_statistics(max_seeds, min_seeds, statistic)
    looks = t.shape[1]
    fraction = np.arange(1, looks + 1, dtype=np.float64) / looks
    target = np.rint(_spent(fraction, level) * t.shape[0]).astype(np.int64)
    alive = np.ones(t.shape[0], dtype=bool)
    stopped = 0
    out = np.empty(looks)
    for j in range(looks):
        column = t[alive, j]
        m = int(target[j] - stopped)  # sequences that may cross first at this look
        if m <= 0 or column.size == 0:
            out[j] = float(column.max()) if column.size else math.inf
        elif m >= column.size:
            out[j] = 0.0
        else:
            out[j] = float(np.partition(column, column.size - m - 1)[column.size - m - 1])
        crossed = alive.copy()
        crossed[alive] = column > out[j]
        stopped += int(crossed.sum())
        alive &= ~crossed
    out.flags.writeable = False
    return out


def check_prob(value: float, name: str) -> None:
    """Require ``0 < value < 1``."""
    if not (isinstance(value, int | float) and 0.0 < float(value) < 1.0):
        raise ConfigError(f"{name} must be a number strictly between 0 and 1, got {value!r}")


def _check_design(min_seeds: int, max_seeds: int) -> None:
    if not isinstance(min_seeds, int | np.integer) or min_seeds < 2:
        raise ConfigError(f"min_seeds={min_seeds!r} must be an integer >= 2 (a t statistic needs 2 pairs)")
    if not isinstance(max_seeds, int | np.integer) or max_seeds < min_seeds:
        raise ConfigError(f"max_seeds={max_seeds!r} must be an integer >= min_seeds ({min_seeds})")


@dataclass(frozen=True)
class RaceRule:
    """The decision rule of one race design (see the module docstring), vectorised over races.

    ``look`` takes per-(race, arm) statistics of the current look and the decisions frozen so far,
    and returns the new decisions, levels, intervals and which arms stay live.
    """

    arms: int
    alpha: float = 0.05
    margin: float = 0.0
    min_seeds: int = 3
    max_seeds: int = 10
    futility: float = 0.6
    statistic: str = "t"

    def __post_init__(self) -> None:
        _check_design(self.min_seeds, self.max_seeds)
        check_prob(self.alpha, "alpha")
        if not self.arms >= 1:
            raise ConfigError("a race needs at least one arm besides the baseline")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ConfigError(f"margin={self.margin!r} must be a finite number >= 0 (0: no equivalence)")
        if not (math.isfinite(self.futility) and 0 <= self.futility <= 1):
            raise ConfigError(f"futility={self.futility!r} must be between 0 (off) and 1")
        if self.statistic not in STATISTICS:
            raise ConfigError(f"statistic={self.statistic!r} must be one of {', '.join(STATISTICS)}")

    def critical(self) -> FloatArray:
        """``C[j - 1, n]``: the critical value at ``n`` pairs with ``j`` arms not decided different
        (level ``alpha / j``); infinite below ``min_seeds``, the last look's value above ``max_seeds``."""
        table = np.full((self.arms, self.max_seeds + 1), math.inf)
        for j in range(1, self.arms + 1):
            table[j - 1, self.min_seeds :] = boundaries(
                self.max_seeds, self.min_seeds, self.alpha / j, self.statistic
            )
        return table

    def look(
        self,
        mean: FloatArray,
        sd: FloatArray,
        n: npt.NDArray[np.int64],
        frozen: npt.NDArray[np.int64],
        stopped: npt.NDArray[np.bool_],
        critical: FloatArray | None = None,
        skew: FloatArray | None = None,
    ) -> dict[str, Any]:
        """One look. Arrays are (races, arms); ``frozen``: decision codes so far (0 = undecided),
        ``stopped``: arms that get no more seeds (decided or futile), ``skew``: the sample skewness of
        each arm's differences (for Hall's statistic; None: 0). Frozen arms keep their code."""
        table = self.critical() if critical is None else critical
        skew = np.zeros_like(mean) if skew is None or self.statistic == "t" else np.nan_to_num(skew)
        nn = np.minimum(n, self.max_seeds)
        decision = frozen.copy()
        open_ = (frozen == _UNDECIDED) & ~stopped
        root_n = np.sqrt(np.maximum(nn, 1))
        while True:
            j = self.arms - np.isin(decision, (_BETTER, _WORSE)).sum(axis=1, keepdims=True)
            c = table[np.maximum(j, 1) - 1, nn]
            with np.errstate(invalid="ignore"):  # {mu: |statistic of the differences - mu| < c}
                low = mean - sd * _hall_inverse(root_n, c, skew)
                high = mean - sd * _hall_inverse(root_n, -c, skew)
            new_better = open_ & (decision == _UNDECIDED) & (low > 0)
            new_worse = open_ & (decision == _UNDECIDED) & (high < 0)
            if not (new_better.any() or new_worse.any()):
                break
            decision[new_better] = _BETTER
            decision[new_worse] = _WORSE
        if self.margin > 0:
            equivalent = open_ & (decision == _UNDECIDED) & (low > -self.margin) & (high < self.margin)
            decision[equivalent] = _EQUIVALENT
        level = self.alpha / np.broadcast_to(np.maximum(j, 1), decision.shape)
        live = (decision == _UNDECIDED) & ~stopped & (n < self.max_seeds)
        if self.futility > 0:
            c_last = table[np.maximum(j, 1) - 1, self.max_seeds]
            reach = self.futility * c_last * sd / math.sqrt(self.max_seeds)
            with np.errstate(invalid="ignore"):
                hopeless = np.abs(mean) < reach
                if self.margin > 0:
                    hopeless &= np.abs(mean) + reach >= self.margin
            late = n >= max(self.min_seeds, math.ceil(FUTILITY_FROM * self.max_seeds))
            live &= ~(hopeless & late)
        return {"decision": decision, "level": level, "low": low, "high": high, "live": live}


def _direction(code: int, mode: str) -> str:
    """A decision code in the metric's direction (for ``mode="min"`` a lower metric is better)."""
    if mode == "min" and code in (_BETTER, _WORSE):
        code = _WORSE if code == _BETTER else _BETTER
    return _CODES[code]


def race_step(
    values: pd.DataFrame,
    *,
    baseline: str,
    alpha: float = 0.05,
    margin: float = 0.0,
    max_seeds: int | None = None,
    metric: str = "value",
    min_seeds: int = 3,
    futility: float = 0.6,
    statistic: str = "t",
    mode: str = "max",
    frozen: pd.DataFrame | None = None,
    arms: Sequence[str] | None = None,
    arm_col: str = "arm",
    seed_col: str = "seed",
) -> pd.DataFrame:
    """Decide, at this look, every arm of a race against ``baseline`` (module docstring: method,
    guarantee, assumptions).

    Args:
        values: the completed runs so far, one row per run, columns ``arm``, ``seed`` and ``metric``;
            arms pair with the baseline by seed (a seed twice in one arm is refused).
        baseline: the arm every other arm is compared with.
        alpha: family-wise error rate over all arms and all looks.
        margin: equivalence margin on the metric's scale (0: no ``equivalent`` decisions).
        max_seeds: the race's largest number of pairs per arm (the boundaries need it); pairs beyond it
            (runs started before the arm was decided) are not used.
        metric: the metric column; ``mean_diff`` is arm minus baseline.
        min_seeds: the first look, in pairs.
        futility: slack of the futility stop (0: off; see the module docstring).
        statistic: ``t`` (the one-sample t) or ``hall`` (Hall's skewness-corrected t).
        mode: ``max`` (higher is better) or ``min``: the direction of ``better``.
        arms: the race's arms besides the baseline (default: every other arm of ``values``); an arm
            without runs yet is undecided, and counts in the correction across arms.
        frozen: this race's previous output. Its arms decided ``better``, ``worse`` or
            ``equivalent`` or no longer live keep that row as it was; the other arms are decided anew.

    Returns:
        One row per arm other than the baseline, sorted by arm, columns :data:`RACE_COLUMNS`:
        ``n_pairs`` (paired seeds used, at most ``max_seeds``), ``mean_diff`` and its interval
        ``ci_low``/``ci_high`` at the per-arm ``level`` in force, ``decision`` (one of
        :data:`DECISIONS`) and ``live`` (whether the arm should get more seeds).

    Raises:
        ConfigError: a missing ``max_seeds``, an unknown baseline, a repeated (arm, seed), a missing
            column, or a design setting out of range.
    """
    if max_seeds is None:
        raise ConfigError("race_step needs max_seeds: the group-sequential boundaries are set up to it")
    counts: dict[str, Any] = {"max_seeds": max_seeds, "min_seeds": min_seeds}
    for name, given in counts.items():
        if isinstance(given, bool) or not isinstance(given, int | np.integer):
            raise ConfigError(f"{name}={given!r} must be an integer")
    numbers: dict[str, Any] = {"alpha": alpha, "margin": margin, "futility": futility}
    for name, given in numbers.items():
        if isinstance(given, bool) or not isinstance(given, int | float | np.floating | np.integer):
            raise ConfigError(f"{name}={given!r} must be a number")
    if frozen is not None and not isinstance(frozen, pd.DataFrame):
        raise ConfigError(
            f"frozen must be an earlier race_step output (a DataFrame), got {type(frozen).__name__}"
        )
    if isinstance(arms, str):
        raise ConfigError(f"arms={arms!r} must be a list of arm labels, not one string")
    if mode not in ("max", "min"):
        raise ConfigError(f"mode={mode!r} must be max or min")
    by_arm = _paired_values(values, metric, arm_col, seed_col)
    baseline = str(baseline)
    if baseline not in by_arm:
        raise ConfigError(f"baseline {baseline!r} has no runs; arms are {sorted(by_arm)}")
    labels = sorted(set(by_arm) - {baseline}) if arms is None else sorted({str(a) for a in arms} - {baseline})
    unknown = sorted(set(by_arm) - set(labels) - {baseline})
    if unknown:
        raise ConfigError(f"values has runs of arms {unknown} that are not in arms={sorted(labels)}")
    if not labels:
        raise ConfigError("a race needs at least one arm besides the baseline")
    rule = RaceRule(len(labels), alpha, margin, min_seeds, int(max_seeds), futility, statistic)
    previous = _previous(frozen, labels, arm_col)
    mean, sd, n = (
        np.full((1, len(labels)), np.nan),
        np.full((1, len(labels)), np.nan),
        np.zeros((1, len(labels)), dtype=np.int64),
    )
    codes = np.zeros((1, len(labels)), dtype=np.int64)
    stopped = np.zeros((1, len(labels)), dtype=bool)
    skew = np.zeros((1, len(labels)))
    inverse = {name: code for code, name in _CODES.items()}
    for i, label in enumerate(labels):
        mine, base = by_arm.get(label, {}), by_arm[baseline]
        shared = sorted(set(mine) & set(base))
        d = np.array([mine[s] - base[s] for s in shared], dtype=np.float64)[: rule.max_seeds]
        n[0, i] = d.size
        if d.size:
            mean[0, i] = float(np.mean(d))
        if d.size >= 2 and np.ptp(d) > 0:  # equal differences say nothing of the spread: no interval
            sd[0, i] = float(np.std(d, ddof=1))
            skew[0, i] = float(np.mean((d - d.mean()) ** 3)) / sd[0, i] ** 3
        row = previous.get(label)
        if row is not None:
            code = inverse[str(row["decision"])]
            if mode == "min" and code in (_BETTER, _WORSE):
                code = _WORSE if code == _BETTER else _BETTER
            codes[0, i] = code
            stopped[0, i] = code != _UNDECIDED or not bool(row["live"])
    out = rule.look(mean, sd, n, codes, stopped, skew=skew)
    rows = []
    for i, label in enumerate(labels):
        row = previous.get(label)
        if row is not None and stopped[0, i]:
            rows.append({c: row[c] for c in RACE_COLUMNS})
            continue
        rows.append(
            {
                "arm": label,
                "n_pairs": int(n[0, i]),
                "mean_diff": float(mean[0, i]),
                "ci_low": float(out["low"][0, i]),
                "ci_high": float(out["high"][0, i]),
                "level": float(out["level"][0, i]),
                "decision": _direction(int(out["decision"][0, i]), mode),
                "live": bool(out["live"][0, i]),
            }
        )
    return pd.DataFrame(rows, columns=list(RACE_COLUMNS)).astype({"n_pairs": "int64", "live": "bool"})


def _paired_values(values: Any, metric: str, arm_col: str, seed_col: str) -> dict[str, dict[int, float]]:
    """``{arm: {seed: value}}`` of a run table; rows whose metric is NaN are dropped.

    Raises:
        ConfigError: not a DataFrame, a missing column, a non-numeric metric or seed, a missing arm
            label, or a seed twice in one arm.
    """
    if not isinstance(values, pd.DataFrame):
        raise ConfigError(
            f"values must be a pandas DataFrame with one row per run, got {type(values).__name__}"
        )
    for column, what in ((arm_col, "arm"), (seed_col, "seed"), (metric, "metric")):
        if column not in values.columns:
            raise ConfigError(
                f"{what} column {column!r} not found; columns are {[str(c) for c in values.columns]}"
            )
    try:
        metric_values = pd.to_numeric(values[metric], errors="raise").astype(np.float64).to_numpy()
        seeds = pd.to_numeric(values[seed_col], errors="raise").to_numpy()
    except (TypeError, ValueError):
        raise ConfigError(f"columns {metric!r} and {seed_col!r} must be numeric") from None
    if values[arm_col].isna().any():
        raise ConfigError(f"arm column {arm_col!r} has missing values; label or drop those runs")
    out: dict[str, dict[int, float]] = {}
    for arm, seed, value in zip(
        values[arm_col].astype(str).tolist(), seeds.tolist(), metric_values.tolist(), strict=True
    ):
        if math.isnan(value):
            continue
        if not math.isfinite(seed) or float(seed) != int(seed):
            raise ConfigError(f"arm {arm!r} has seed {seed!r}: seeds must be integers")
        runs = out.setdefault(arm, {})
        if int(seed) in runs:
            raise ConfigError(
                f"arm {arm!r} has seed {int(seed)} more than once; keep one run per (arm, seed)"
            )
        runs[int(seed)] = float(value)
    return out


def _previous(frozen: pd.DataFrame | None, labels: list[str], arm_col: str) -> dict[str, Any]:
    """The rows of ``frozen`` (an earlier :func:`race_step` output) by arm."""
    if frozen is None or len(frozen) == 0:
        return {}
    missing = [c for c in RACE_COLUMNS if c not in frozen.columns]
    if missing:
        raise ConfigError(f"frozen must be an earlier race_step output; it lacks columns {missing}")
    rows = {str(r["arm"]): r for r in frozen.to_dict("records")}
    for label, row in rows.items():
        if str(row["decision"]) not in DECISIONS:
            raise ConfigError(
                f"frozen: arm {label!r} has decision {row['decision']!r}, not one of {DECISIONS}"
            )
    return {label: rows[label] for label in labels if label in rows}


def simulate_races(
    diffs: FloatArray,
    rule: RaceRule,
    look: Callable[..., dict[str, Any]] | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """Run ``rule`` over simulated races, looking after every pair as a race does.

    ``diffs`` has shape (races, arms, max_seeds): the paired differences each arm would see, in seed
    order. ``look`` replaces ``rule.look`` (a test's deliberately wrong rule, with the same
    signature). Returns per (race, arm): ``decision`` codes (0 undecided, 1 better, 2 worse,
    3 equivalent), ``seeds`` used (the pairs seen when the arm stopped) and ``runs`` per race
    (every arm's seeds plus the baseline's, which runs while any arm is live).
    """
    races, arms, max_seeds = diffs.shape
    if arms != rule.arms or max_seeds != rule.max_seeds:
        raise ConfigError(
            f"diffs has {arms} arms x {max_seeds} seeds; the rule is for {rule.arms} x {rule.max_seeds}"
        )
    own = look is None
    look = rule.look if look is None else look
    critical = rule.critical()
    total = np.cumsum(diffs, axis=2)
    squares = np.cumsum(diffs * diffs, axis=2)
    cubes = np.cumsum(diffs**3, axis=2)
    decision = np.zeros((races, arms), dtype=np.int64)
    stopped = np.zeros((races, arms), dtype=bool)
    seeds = np.full((races, arms), max_seeds, dtype=np.int64)
    for n in range(1, max_seeds + 1):
        mean = total[:, :, n - 1] / n
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (squares[:, :, n - 1] - n * mean * mean) / (n - 1) if n > 1 else np.full_like(mean, np.nan)
        sd = np.sqrt(np.maximum(var, 0.0))
        sd[sd <= 0] = np.nan  # equal differences (a discrete metric): no spread estimate, no interval
        counts = np.full((races, arms), n, dtype=np.int64)
        extra: dict[str, Any] = {}
        if own:  # the rule's own look also takes the skewness (a test's wrong rule need not)
            third = cubes[:, :, n - 1] / n - 3 * mean * squares[:, :, n - 1] / n + 2 * mean**3
            with np.errstate(invalid="ignore", divide="ignore"):
                extra["skew"] = np.nan_to_num(third / sd**3)
        out = look(mean, sd, counts, decision, stopped, critical=critical, **extra)
        newly = ~stopped & ~out["live"]
        seeds[newly] = n
        decision = np.where(stopped, decision, out["decision"])
        stopped |= newly
    runs = seeds.sum(axis=1) + seeds.max(axis=1)
    return {"decision": decision, "seeds": seeds, "runs": runs}
