"""A raced seed phase's own record, as the report reads it: the design (tag
:data:`~rblock_tune.layout.RACE_TAG`) and every look (artifact
:data:`~rblock_tune.layout.RACE_LOOKS_ARTIFACT`) on the seeds parent run.

:func:`read_race` finds them; :meth:`RaceRecord.final` is each arm's row at the race's last look (a
decided arm keeps the row of the look that decided it), :func:`race_trajectory` an arm's interval at
each number of pairs and :func:`decision_points` where each arm stopped. :func:`raced_comparisons`
puts the race's intervals and decisions into the comparisons table in place of the fixed-n tests,
which are not valid once the number of seeds depended on the data (see ``docs/racing.md``).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rblock_tune.analysis._runs import load_artifact_text, runs_of
from rblock_tune.errors import ConfigError
from rblock_tune.layout import (
    PHASE_SEEDS,
    RACE_LOOK_COLUMNS,
    RACE_LOOKS_ARTIFACT,
    RACE_TAG,
    ROLE_PARENT,
    parse_race_tag,
)
from rblock_tune.racing import BETTER, DECISIONS, UNDECIDED, WORSE

__all__ = [
    "RACE_COMPARISON_COLUMNS",
    "RACE_INTERVAL",
    "RaceRecord",
    "decision_points",
    "interval_method",
    "is_raced",
    "race_trajectory",
    "raced_comparisons",
    "read_race",
]

RACE_INTERVAL = "race"
"""The ``interval`` column of a raced arm starts with this; ``primary_test`` is this."""

FIXED_INTERVAL = "95% BCa bootstrap"
"""The ``interval`` column of an arm compared by the fixed-n tests in a raced report."""

RACE_COMPARISON_COLUMNS: tuple[str, ...] = ("interval", "decision", "race_level")
"""Columns a report that uses the race's intervals adds at the end of the comparisons table:
``interval`` (the method: ``race (anytime-valid, level 0.025)`` or :data:`FIXED_INTERVAL`),
``decision`` (the race's, one of :data:`~rblock_tune.racing.DECISIONS`; empty for an arm the race did
not have) and ``race_level`` (the arm's per-arm level at its final look, Holm-recycled)."""

_P_COLUMNS = ("p_paired_t", "p_wilcoxon", "p_welch", "p_mannwhitney", "p_primary", "p_holm")


@dataclass(frozen=True)
class RaceRecord:
    """A race's design and looks, read from its seeds parent run.

    Attributes:
        design: the :data:`~rblock_tune.layout.RACE_TAG` as parsed (values as strings).
        looks: every look, columns :data:`~rblock_tune.layout.RACE_LOOK_COLUMNS` (empty when the race
            recorded none yet), ``live`` as booleans.
        run_id: the seeds parent run.
    """

    design: dict[str, str]
    looks: pd.DataFrame
    run_id: str = ""
    arms: list[str] = field(default_factory=list)

    def _number(self, key: str, default: float) -> float:
        try:
            return float(self.design.get(key, default))
        except ValueError:
            return float("nan")

    @property
    def alpha(self) -> float:
        return self._number("alpha", 0.05)

    @property
    def margin(self) -> float:
        return self._number("margin", 0.0)

    @property
    def min_seeds(self) -> int | None:
        value = self._number("min_seeds", float("nan"))
        return int(value) if math.isfinite(value) else None

    @property
    def max_seeds(self) -> int | None:
        value = self._number("max_seeds", float("nan"))
        return int(value) if math.isfinite(value) else None

    @property
    def futility(self) -> float:
        return self._number("futility", float("nan"))

    @property
    def metric(self) -> str | None:
        return self.design.get("metric")

    @property
    def mode(self) -> str | None:
        return self.design.get("mode")

    @property
    def baseline(self) -> str | None:
        return self.design.get("baseline")

    def final(self) -> pd.DataFrame:
        """Each arm's row at the race's last look (its decision, pairs and interval as they stand),
        sorted by arm."""
        if not len(self.looks):
            return self.looks.copy()
        last = self.looks.sort_values(["look"], kind="stable").groupby("arm", sort=True).tail(1)
        return last.sort_values("arm").reset_index(drop=True)

    def matches(self, metric: str, baseline: str) -> bool:
        """Whether a report of ``metric`` against ``baseline`` is the race's own comparison (and the
        race has looked at least once): then its intervals are the report's."""
        return bool(len(self.looks)) and self.metric == metric and self.baseline == baseline

    def runs_used(self) -> int:
        """Runs the race's decisions used: every arm's pairs and the baseline's side of the longest."""
        final = self.final()
        if not len(final):
            return 0
        pairs = final["n_pairs"].astype(int)
        return int(pairs.sum() + pairs.max())

    def fixed_runs(self) -> int | None:
        """Runs of a fixed design of ``max_seeds`` seeds for every arm and the baseline."""
        if self.max_seeds is None:
            return None
        arms = len(self.final()) if len(self.looks) else len(self.arms)
        return (arms + 1) * self.max_seeds if arms else None

    def describe(self) -> str:
        """The design in one line: ``alpha=0.05 (family-wise, over arms and looks), margin 0, ...``."""
        margin = f"margin {self.design.get('margin', '0')}"
        if self.margin == 0:
            margin += " (no equivalence decisions)"
        futility = self.design.get("futility", "?")
        return (
            f"alpha={self.design.get('alpha', '?')} (family-wise over all arms and looks), {margin}, "
            f"looks from {self.design.get('min_seeds', '?')} to {self.design.get('max_seeds', '?')} "
            f"seed pairs per arm, futility {futility}"
            + (" (off)" if futility in ("0", "0.0") else "")
            + f", against `{self.baseline}` on `{self.metric}` ({self.mode})"
        )


def _as_bool(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return str(value).strip().lower() in ("true", "1", "yes")


def parse_looks(text: str | None, where: str = RACE_LOOKS_ARTIFACT) -> pd.DataFrame:
    """The looks table from the text of :data:`~rblock_tune.layout.RACE_LOOKS_ARTIFACT` (None or
    empty: no look yet).

    Raises:
        ConfigError: the text lacks one of :data:`~rblock_tune.layout.RACE_LOOK_COLUMNS`, or a decision
            is not one of :data:`~rblock_tune.racing.DECISIONS`.
    """
    if not text or not text.strip():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in RACE_LOOK_COLUMNS})
    looks = pd.read_csv(io.StringIO(text))
    missing = [c for c in RACE_LOOK_COLUMNS if c not in looks.columns]
    if missing:
        raise ConfigError(f"{where} lacks the race's columns {missing}; it has {list(looks.columns)}")
    looks["arm"] = looks["arm"].astype(str)
    looks["decision"] = looks["decision"].astype(str)
    unknown = sorted(set(looks["decision"]) - set(DECISIONS))
    if unknown:
        raise ConfigError(f"{where} has decisions {unknown}, not one of {list(DECISIONS)}")
    looks["live"] = looks["live"].map(_as_bool).astype(bool)
    looks["look"] = pd.to_numeric(looks["look"]).astype("int64")
    looks["n_pairs"] = pd.to_numeric(looks["n_pairs"]).astype("int64")
    for column in ("mean_diff", "ci_low", "ci_high", "level"):
        looks[column] = pd.to_numeric(looks[column], errors="coerce").astype(float)
    looks = looks.loc[:, list(RACE_LOOK_COLUMNS)].sort_values(["look", "arm"], kind="stable")
    return looks.reset_index(drop=True)


def read_race(runs: pd.DataFrame) -> RaceRecord | None:
    """The race record of a study (:func:`~rblock_tune.analysis.load_runs`), or None when its seed
    phase is not a race (no :data:`~rblock_tune.layout.RACE_TAG` on the seeds parent run)."""
    parents = runs.loc[runs_of(runs, PHASE_SEEDS, ROLE_PARENT), "run_id"]
    if not len(parents):
        return None
    from mlflow.tracking import MlflowClient

    tracking_uri = str(runs.attrs["tracking_uri"])
    run_id = str(parents.iloc[0])
    text = MlflowClient(tracking_uri=tracking_uri).get_run(run_id).data.tags.get(RACE_TAG)
    if text is None:
        return None
    looks = parse_looks(load_artifact_text(run_id, RACE_LOOKS_ARTIFACT, tracking_uri))
    arms = sorted(runs.loc[runs_of(runs, PHASE_SEEDS), "arm"].dropna().astype(str).unique())
    design = parse_race_tag(text)
    return RaceRecord(design, looks, run_id, [a for a in arms if a != design.get("baseline")])


def race_trajectory(looks: pd.DataFrame) -> pd.DataFrame:
    """Each arm's interval against the pairs it had: one row per (arm, n_pairs), the last look at
    that number of pairs (a look between two of its pairs repeats the row, or has the level another
    arm's decision recycled), sorted by arm and n_pairs; columns of the looks."""
    if not len(looks):
        return looks.copy()
    ordered = looks.sort_values(["look"], kind="stable")
    last = ordered.groupby(["arm", "n_pairs"], sort=True).tail(1)
    return last.sort_values(["arm", "n_pairs"], kind="stable").reset_index(drop=True)


def decision_points(looks: pd.DataFrame) -> pd.DataFrame:
    """Where each arm stopped: its first look whose decision is not ``undecided`` or where it is no
    longer live (a futility stop, or ``max_seeds`` reached). Columns of the looks, one row per arm
    that stopped, sorted by arm; an arm still racing has none."""
    if not len(looks):
        return looks.copy()
    stopped = looks[(looks["decision"] != UNDECIDED) | ~looks["live"].astype(bool)]
    first = stopped.sort_values(["look"], kind="stable").groupby("arm", sort=True).head(1)
    return first.sort_values("arm").reset_index(drop=True)


def interval_method(level: float) -> str:
    """The ``interval`` column of a raced arm: ``race (anytime-valid, level 0.025)``."""
    return f"{RACE_INTERVAL} (anytime-valid, level {level:.3g})"


def is_raced(row: Any) -> bool:
    """Whether a comparisons row (a namedtuple or Series) carries the race's interval and decision."""
    return str(getattr(row, "interval", "") or "").startswith(RACE_INTERVAL)


def raced_comparisons(comparisons: pd.DataFrame, race: RaceRecord) -> pd.DataFrame:
    """``comparisons`` (:func:`~rblock_tune.analysis.compare_arms` against the race's baseline on its
    metric) with the race's answer for the arms it raced: ``mean_diff``, ``ci_low``, ``ci_high`` and
    ``n_pairs`` from the arm's final row (runs that finished after their arm was decided are not in
    it), the fixed-n p-values NaN, ``primary_test`` ``race``, ``significant`` when the race decided
    ``better`` or ``worse``, ``power`` NaN (the fixed-n test's); and the columns
    :data:`RACE_COMPARISON_COLUMNS` at the end. Other arms keep their fixed-n row."""
    out = comparisons.copy()
    out["interval"] = FIXED_INTERVAL
    out["decision"] = pd.Series([None] * len(out), index=out.index, dtype=object)
    out["race_level"] = float("nan")
    final = race.final().set_index("arm")
    for i, arm in out["arm"].astype(str).items():
        if arm not in final.index:
            continue
        row = final.loc[arm]
        for column in ("mean_diff", "ci_low", "ci_high"):
            out.loc[i, column] = float(row[column])
        out.loc[i, "n_pairs"] = int(row["n_pairs"])
        out.loc[i, list(_P_COLUMNS)] = float("nan")
        out.loc[i, "power"] = float("nan")
        out.loc[i, "primary_test"] = RACE_INTERVAL
        out.loc[i, "significant"] = str(row["decision"]) in (BETTER, WORSE)
        out.loc[i, "interval"] = interval_method(float(row["level"]))
        out.loc[i, "decision"] = str(row["decision"])
        out.loc[i, "race_level"] = float(row["level"])
    out["significant"] = out["significant"].astype(bool)
    return out
