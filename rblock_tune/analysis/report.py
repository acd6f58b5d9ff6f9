"""The report's data: what a study's report says, before any of it is rendered.

Reads the protocol of a study from its parent runs (:func:`read_protocol`), picks the runs to
compare (:func:`comparison_values`) and the baseline (:func:`choose_baseline`), measures the
drop rate each arm realised (:func:`realised_rates`), builds the planning table
(:func:`planning_table`) and the hyperparameter importances (:func:`param_importances`), and
finds the caveats (:func:`comparison_caveats`, :func:`fairness_caveats`, :func:`race_caveats`).
:mod:`rblock_tune.analysis.report_document` renders all of it into ``report.md`` and
``report.html`` (:func:`~rblock_tune.analysis.report_document.write_report`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rblock_tune._files import load_yaml
from rblock_tune.analysis._runs import load_artifact_text, runs_of
from rblock_tune.analysis.race_record import RaceRecord
from rblock_tune.analysis.sample_size import seeds_needed
from rblock_tune.errors import ConfigError
from rblock_tune.layout import (
    ARMS_ARTIFACT,
    COMPLETED,
    DIVERGED,
    NORMALISED_SPEC_ARTIFACT,
    PHASE_SEARCH,
    PHASE_SEEDS,
    PHASES,
    RACE_LOOKS_ARTIFACT,
    ROLE_PARENT,
)
from rblock_tune.variants import BASELINE_PREFERENCE, SPLIT_VARIANTS, VARIANTS, get_variant

__all__ = [
    "BASELINE_PREFERENCE",
    "MIN_SEEDS",
    "RATE_MISMATCH",
    "Protocol",
    "choose_baseline",
    "comparison_caveats",
    "race_caveats",
    "comparison_values",
    "fairness_caveats",
    "fmt",
    "param_importances",
    "planning_table",
    "read_protocol",
    "realised_rates",
    "reused_seeds",
]


MIN_SEEDS = 5
"""Below this many runs per arm the report warns that n is too small."""

RATE_MISMATCH = 0.25
"""A caveat fires when an arm's realised per-sub-model drop rate differs from the baseline's by more
than this share of the baseline's."""


@dataclass(frozen=True)
class Protocol:
    """How the compared runs were made, read from the study's parent runs.

    Attributes:
        selection_metric: the metric the search optimised (chose the configurations), or None.
        selection_mode: ``max`` or ``min``, or None.
        space: searched dimensions (dotted key -> ``type``, ``low``, ``high``, ``step``, ``values``,
            ``when``, as the normalised spec has them).
        search_budget: epochs of a search trial, or None.
        seeds: the seed list of the seed phase (empty when there is none).
        arms: seed-phase arm label -> overrides of the base config.
        search_seeds: study -> seeds its search trials ran with (this study and every
            ``from_study`` study whose winner is an arm), as the seed phase recorded them.
        allow_search_seeds: the spec let the seed phase reuse search seeds.
    """

    selection_metric: str | None = None
    selection_mode: str | None = None
    space: dict[str, Any] = field(default_factory=dict)
    search_budget: int | None = None
    seeds: list[int] = field(default_factory=list)
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)
    search_seeds: dict[str, list[int]] = field(default_factory=dict)
    allow_search_seeds: bool = False


def read_protocol(runs: pd.DataFrame) -> Protocol:
    """The protocol of a study from its parent runs' artifacts: the normalised spec the search
    saved (:data:`~rblock_tune.layout.NORMALISED_SPEC_ARTIFACT`, every default filled in, so none is
    re-applied here) and the seed phase's :data:`~rblock_tune.layout.ARMS_ARTIFACT`. A study that
    saved neither (its search never finished, or an rblock-tune before the normalised spec) has an
    unknown selection, which the report says."""
    tracking_uri = str(runs.attrs["tracking_uri"])
    docs: dict[str, dict[str, Any]] = {}
    for phase, name in ((PHASE_SEARCH, NORMALISED_SPEC_ARTIFACT), (PHASE_SEEDS, ARMS_ARTIFACT)):
        parents = runs.loc[runs_of(runs, phase, ROLE_PARENT), "run_id"]
        text = load_artifact_text(str(parents.iloc[0]), name, tracking_uri) if len(parents) else None
        doc = load_yaml(text, f"artifact {name} of the study's {phase} parent run") if text else None
        docs[phase] = doc if isinstance(doc, dict) else {}
    spec, arms_doc = docs[PHASE_SEARCH], docs[PHASE_SEEDS]
    searched: dict[str, list[int]] = {
        str(study): sorted(int(s) for s in seeds)
        for study, seeds in (arms_doc.get("search_seeds") or {}).items()
        if isinstance(seeds, list)
    }
    experiment = str(runs.attrs.get("experiment", ""))
    trial_seeds = runs.loc[runs_of(runs, PHASE_SEARCH), "seed"].dropna()
    if len(trial_seeds):  # what this study's search trials were recorded with
        searched[experiment] = sorted({*searched.get(experiment, []), *(int(s) for s in trial_seeds)})
    return Protocol(
        selection_metric=spec.get("metric"),
        selection_mode=spec.get("mode"),
        space=dict(spec.get("space") or {}),
        search_budget=(spec.get("scheduler") or {}).get("budget"),
        seeds=[int(s) for s in arms_doc.get("seeds", [])],
        arms=dict(arms_doc.get("arms") or {}),
        search_seeds=searched,
        allow_search_seeds=bool(arms_doc.get("allow_search_seeds", False)),
    )


def realised_rates(values: pd.DataFrame, arm_col: str = "arm") -> pd.DataFrame:
    """Per arm, the drop rate its runs actually applied, per sub-model, in their last epoch.

    A run's per-sub-model rate is its ``drop_rate`` metric (single-model variants) or the mean
    of ``drop_rate_a`` and ``drop_rate_b`` (paired ones); the arm's is the mean over its runs.

    Returns:
        Columns ``arm``, ``variant``, ``drop_prob`` (nominal p; NaN when its runs differ in it),
        ``rate_basis``
        and ``realised`` (NaN where the runs did not record it: made before rblock-tune recorded
        drop rates), one row per arm, sorted by arm.
    """
    frame = values.copy()
    single = frame["drop_rate"] if "drop_rate" in frame else pd.Series(np.nan, index=frame.index)
    pair = [frame[c] for c in ("drop_rate_a", "drop_rate_b") if c in frame]
    paired = pd.concat(pair, axis=1).mean(axis=1) if len(pair) == 2 else pd.Series(np.nan, index=frame.index)
    frame["_rate"] = pd.to_numeric(single, errors="coerce").fillna(pd.to_numeric(paired, errors="coerce"))
    rows = []
    for arm, group in frame.groupby(frame[arm_col].astype(str), sort=True):
        first = group.iloc[0]
        nominal = group["reg.drop_prob"].dropna().unique() if "reg.drop_prob" in group else []
        rows.append(
            {
                "arm": arm,
                "variant": first.get("reg.variant"),
                "drop_prob": float(nominal[0]) if len(nominal) == 1 else float("nan"),
                "rate_basis": first.get("reg.rate_basis"),
                "realised": float(group["_rate"].mean()) if group["_rate"].notna().any() else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["arm", "variant", "drop_prob", "rate_basis", "realised"])


def choose_baseline(values: pd.DataFrame, arm_col: str = "arm") -> str:
    """The default baseline arm: the first arm (by label) whose ``reg.variant`` comes first in
    :data:`BASELINE_PREFERENCE`.

    Raises:
        ConfigError: no arm runs a baseline method (then ``--baseline`` must name one).
    """
    arms = sorted(values[arm_col].astype(str).unique())
    variants = (
        values.groupby(values[arm_col].astype(str))["reg.variant"].first() if "reg.variant" in values else {}
    )
    for preferred in BASELINE_PREFERENCE:
        for arm in arms:
            if arm == preferred or (arm in variants and variants[arm] == preferred):
                return arm
    raise ConfigError(
        f"no arm runs a baseline method ({', '.join(BASELINE_PREFERENCE)}); pass --baseline, one of: "
        + ", ".join(arms)
    )


def comparison_values(runs: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, str, pd.DataFrame]:
    """The runs to compare, which phase they come from, and the runs of that phase left out.

    The seed phase's completed runs (``arm`` = the arm label, paired by ``seed``) when the
    experiment has a seed phase; otherwise the completed search trials with ``arm`` = their
    ``reg.variant`` and no pairing (``seed`` emptied: trials of a search differ in more than
    their seed).

    Raises:
        ConfigError: the experiment has no completed trial or seed run, or no such metric.
    """
    experiment = runs.attrs.get("experiment")
    if not runs["phase"].isin(PHASES).any():
        where = f" at {runs.attrs['tracking_uri']}" if "tracking_uri" in runs.attrs else ""
        raise ConfigError(
            f"experiment {experiment!r}{where} is not a study made by rblock-tune (none of its "
            f"{len(runs)} runs comes from a study's search or seed phase): "
            "pass --experiment with a study's name"
        )
    if metric not in runs.columns or metric not in runs.attrs.get("metrics", [metric]):
        if "metrics" in runs.attrs:
            names = list(runs.attrs["metrics"])
        else:
            names = [
                c for c in runs.columns if c not in ("seed", "epochs_done") and runs[c].dtype.kind == "f"
            ]
        raise ConfigError(
            f"metric {metric!r} is not in the runs (metrics there: {', '.join(names) or 'none'}); "
            "pass --metric with one of them"
        )
    seed_runs = runs[runs_of(runs, PHASE_SEEDS)]
    if len(seed_runs):
        phase, chosen = "seeds", seed_runs.copy()
    else:
        phase, chosen = "search", runs[runs_of(runs, PHASE_SEARCH)].copy()
        if "reg.variant" in chosen:
            chosen["arm"] = chosen["reg.variant"].astype(str)
        chosen["seed"] = pd.array([pd.NA] * len(chosen), dtype="Int64")
    if not len(chosen):
        raise ConfigError(
            f"experiment {runs.attrs.get('experiment')!r} has no trial or seed run to compare "
            "(is it a study made by rblock-tune study run?)"
        )
    done = chosen["status"] == COMPLETED
    kept, left = chosen[done & chosen[metric].notna()], chosen[~done | chosen[metric].isna()]
    if not len(kept):
        raise ConfigError(f"no completed {phase} run of {runs.attrs.get('experiment')!r} has {metric!r}")
    return kept.reset_index(drop=True), phase, left.reset_index(drop=True)


def param_importances(
    trials: pd.DataFrame, space: Mapping[str, Any], metric: str = "val_acc", mode: str = "max", seed: int = 0
) -> dict[str, float]:
    """Optuna's fANOVA importances of the searched hyperparameters, from the completed trials
    (an in-memory Optuna study rebuilt from MLflow, so no access to the Optuna storage is needed).

    Returns {} when fewer than 4 trials or no dimension varies.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    data = trials.dropna(subset=[metric])
    distributions: dict[str, Any] = {}
    for key, dim in space.items():
        if key not in data.columns or data[key].dropna().nunique() < 2:
            continue
        seen = data[key].dropna()
        if dim["type"] == "categorical" or seen.map(lambda v: isinstance(v, (str, bool))).any():
            choices = tuple(dict.fromkeys([*(dim.get("values") or []), *seen.tolist()]))
            distributions[key] = CategoricalDistribution(choices)
        else:
            low = min([float(seen.min()), *([float(dim["low"])] if dim.get("low") is not None else [])])
            high = max([float(seen.max()), *([float(dim["high"])] if dim.get("high") is not None else [])])
            if dim.get("type") == "int":
                distributions[key] = IntDistribution(int(low), int(high))
            else:
                distributions[key] = FloatDistribution(low, high, log=dim.get("type") == "loguniform")
    if len(data) < 4 or not distributions:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for _, row in data.iterrows():
        # a key that does not apply to a trial's variant is not logged (reg.alpha of dropblock): the
        # trial lacks it, as a conditional dimension is absent from an Optuna trial; Optuna then rates
        # the keys every trial has
        present = {k: row[k] for k in distributions if not pd.isna(row[k])}
        params = {k: (v.item() if hasattr(v, "item") else v) for k, v in present.items()}
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions={k: distributions[k] for k in params}, value=float(row[metric])
            )
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        return {
            k: float(v)
            for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()
        }


def fmt(value: Any, digits: int = 4) -> str:
    """A value as the report's tables show it: ``-`` for None/NaN/NA, ``yes``/``no`` for booleans,
    floats to ``digits`` decimals (significant digits below 1e-3), anything else as ``str``."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return f"{number:.{digits}g}" if abs(number) < 1e-3 and number != 0 else f"{number:.{digits}f}"
    return str(value)


def planning_table(
    values: pd.DataFrame, comparisons: pd.DataFrame, metric: str, alpha: float, power: float = 0.8
) -> pd.DataFrame:
    """Seeds needed per arm to detect differences of a few sizes, at each comparison's observed spread.

    The sizes are 0.25, 0.5 and 1 accuracy points for an accuracy metric (``*_acc``), else 0.25, 0.5 and
    1 standard deviation of the baseline. The spread is the sd of the per-seed differences for a paired
    comparison, the pooled sd otherwise.
    """
    sizes: list[tuple[str, float]]
    if metric.endswith("acc"):
        sizes = [(f"{d * 100:g} points", d) for d in (0.0025, 0.005, 0.01)]
    else:
        sd0 = float(comparisons["sd_baseline"].iloc[0]) if len(comparisons) else float("nan")
        sizes = [(f"{k:g} sd ({k * sd0:.3g})", k * sd0) for k in (0.25, 0.5, 1.0)]
    rows = []
    for r in comparisons.itertuples(index=False):
        arm = values[values["arm"].astype(str) == r.arm].set_index("seed")[metric]
        base = values[values["arm"].astype(str) == r.baseline].set_index("seed")[metric]
        if r.paired:
            shared = arm.index.intersection(base.index).dropna()
            spread = float((arm.loc[shared] - base.loc[shared]).std(ddof=1))
        else:
            na, nb = len(arm), len(base)
            pooled = ((na - 1) * arm.var(ddof=1) + (nb - 1) * base.var(ddof=1)) / max(na + nb - 2, 1)
            spread = float(np.sqrt(pooled))
        row: dict[str, str] = {"arm": str(r.arm), "spread (sd)": fmt(spread)}
        for label, size in sizes:
            needed = seeds_needed(size, spread, alpha=alpha, power=power, paired=bool(r.paired))
            row[label] = "-" if needed is None else str(needed)
        rows.append(row)
    return pd.DataFrame(rows)


def reused_seeds(protocol: Protocol, seeds: Sequence[int]) -> list[int]:
    """Seed-phase seeds that some search trial (of this study or a ``from_study`` one) also ran with."""
    searched = {seed for study_seeds in protocol.search_seeds.values() for seed in study_seeds}
    return sorted(set(seeds) & searched)


def fairness_caveats(
    comparisons: pd.DataFrame, rates: pd.DataFrame, protocol: Protocol, seeds: Sequence[int], phase: str
) -> list[str]:
    """Caveats about how the arms were measured: reused search seeds, and in a seed phase unequal
    realised drop rates (search trials grouped by variant differ in their sampled p anyway, which
    the search phase's own caveat says)."""
    caveats: list[str] = []
    reused = reused_seeds(protocol, seeds)
    if reused:
        allowed = " (allowed by seeds.allow_search_seeds)" if protocol.allow_search_seeds else ""
        caveats.append(
            f"the seed phase reuses search seed(s) {reused}{allowed}: a top arm's run on such a seed can be "
            "the very search trial that selected it, so its advantage is biased upwards (winner's curse); "
            "compare on seeds disjoint from the search's."
        )
    if phase != "seeds":
        return caveats
    by_arm = rates.set_index("arm")
    dropping = by_arm[by_arm["variant"].astype(str).map(lambda v: v in VARIANTS and get_variant(v).drops)]
    unknown = [a for a in dropping.index if pd.isna(dropping.loc[a, "realised"])]
    if unknown:
        caveats.append(
            f"realised drop rates were not recorded for {', '.join(unknown)} (runs made before rblock-tune "
            "measured them): whether the arms dropped comparable shares of units is unknown."
        )
    mismatched: list[str] = []
    causes: set[str] = set()
    for r in comparisons.itertuples(index=False):
        if r.arm not in dropping.index or r.baseline not in dropping.index:
            continue
        mine, base = float(dropping.loc[r.arm, "realised"]), float(dropping.loc[r.baseline, "realised"])
        if (
            not (math.isfinite(mine) and math.isfinite(base) and base > 0)
            or abs(mine - base) / base <= RATE_MISMATCH
        ):
            continue
        text = f"{r.arm} {mine:.3f} vs {r.baseline} {base:.3f} ({(mine - base) / base:+.0%}"
        p_arm, p_base = float(dropping.loc[r.arm, "drop_prob"]), float(dropping.loc[r.baseline, "drop_prob"])
        if math.isfinite(p_arm) and math.isfinite(p_base) and not math.isclose(p_arm, p_base, rel_tol=0.05):
            text += f", at p {p_arm:.3g} vs {p_base:.3g}"
            causes.add("p")
        elif any(
            str(dropping.loc[a, "variant"]) in SPLIT_VARIANTS and dropping.loc[a, "rate_basis"] == "shared"
            for a in (r.arm, r.baseline)
        ):
            causes.add("shared")
        else:
            causes.add("masks")
        mismatched.append(text + ")")
    if mismatched:
        fixes = {
            "p": "where the arms' p differ (each tuned on its own, or set so in the spec) that is by design, "
            "but then the comparison is of methods at different strengths; to compare them at one strength, "
            "add an arm of the baseline at the other arm's p",
            "shared": "run the R-Block arms with reg.rate_basis=submodel, where p is each sub-model's rate",
            "masks": "at equal p on this basis the gap is in the masks themselves (DropBlock's blocks "
            "overlap more at large p and b, see docs/regularizers.md): choose each arm's p so that the "
            "realised rates match, or compare at a smaller p or b",
        }
        advice = "; ".join(fixes[c] for c in ("p", "shared", "masks") if c in causes)
        caveats.append(
            f"unequal drop rates: per sub-model, these arms dropped a share of units more than "
            f"{RATE_MISMATCH:.0%} away from the baseline's: {'; '.join(mismatched)}. A difference in "
            f"accuracy may then come from how much was dropped rather than from how; {advice}."
        )
    return caveats


def comparison_caveats(
    comparisons: pd.DataFrame,
    summary: pd.DataFrame,
    left_out: pd.DataFrame,
    protocol: Protocol,
    metric: str,
    phase: str,
    n_trials: int,
    importances: Mapping[str, float],
    raced: Sequence[str] = (),
) -> list[str]:
    """Caveats about what the comparison can show: too few seeds, unpaired arms, a search phase
    compared instead of a seed phase, runs left out (diverged ones in particular), the compared
    metric being the selection metric, and missing hyperparameter importances.

    Args:
        comparisons: :func:`~rblock_tune.analysis.comparison.compare_arms` of the compared runs.
        summary: :func:`~rblock_tune.analysis.comparison.summarize_arms` of the compared runs.
        left_out: the runs of the phase left out (from :func:`comparison_values`).
        protocol: :func:`read_protocol` of the study.
        metric: the compared metric.
        phase: ``seeds`` or ``search``.
        n_trials: finished search trials.
        importances: :func:`param_importances` of those trials.
        raced: arms whose interval is the race's (its design chose how few seeds decide an arm, and
            its interval holds at any number of them): no "n too small" caveat.
    """
    caveats: list[str] = []
    small = summary[(summary["n"] < MIN_SEEDS) & ~summary["arm"].astype(str).isin([str(a) for a in raced])]
    if len(small):
        listed = ", ".join(f"{a} (n={n})" for a, n in zip(small["arm"], small["n"], strict=True))
        caveats.append(
            f"n too small: {listed}. With fewer than {MIN_SEEDS} seeds per arm the tests have little power "
            "and the bootstrap intervals are unreliable; see 'seeds for 80% power'."
        )
    unpaired = comparisons[~comparisons["paired"].astype(bool)]
    if len(unpaired):
        caveats.append(
            f"unpaired: {', '.join(unpaired['arm'])} share fewer than 2 seeds with the baseline, so they "
            "were "
            "compared with Welch's t-test and Mann-Whitney U, which ignore seed-to-seed variation."
        )
    if phase == "search":
        caveats.append(
            "these are search trials grouped by variant: trials differ in more than the variant (each has "
            "its own hyperparameters), so this is a description of the search, not a controlled comparison; "
            "run a "
            "seed phase for one."
        )
    if len(left_out):
        counts = left_out["status"].fillna("unknown").value_counts()
        listed = ", ".join(f"{n} {status}" for status, n in counts.items())
        caveats.append(f"left out of the comparison: {listed} ({phase} runs without a final {metric}).")
    diverged = left_out[left_out["status"] == DIVERGED]
    if len(diverged):
        per_arm = diverged["arm"].astype(str).value_counts()
        caveats.append(
            "diverged runs were left out, which flatters their arms: "
            + ", ".join(f"{a}: {n}" for a, n in per_arm.items())
        )
    if protocol.selection_metric is None:
        caveats.append(
            f"the metric that selected the configurations is unknown (no {NORMALISED_SPEC_ARTIFACT} on a "
            "parent run: the search did not finish, or ran with an older rblock-tune)."
        )
    elif protocol.selection_metric == metric:
        caveats.append(
            f"the compared metric ({metric}) is the one that selected the configurations: the winners' "
            "scores "
            "are biased upwards (winner's curse); compare on a held-out metric such as test_acc."
        )
    if n_trials and not importances:
        caveats.append(
            "hyperparameter importances need at least 4 finished search trials and a varying dimension."
        )
    return caveats


def race_caveats(race: RaceRecord | None, metric: str, baseline: str, phase: str) -> list[str]:
    """Caveats of a raced seed phase (``race``: :func:`~rblock_tune.analysis.race_record.read_race`)
    that this report cannot take the race's intervals for: another metric or baseline than the
    race's, or no look recorded. Its seeds were stopped by the data, so fixed-n p-values and
    intervals, which assume a number of seeds fixed in advance, are not valid after that stopping."""
    if race is None or phase != PHASE_SEEDS or race.matches(metric, baseline):
        return []
    if not len(race.looks):
        why = f"no look of the race was recorded ({RACE_LOOKS_ARTIFACT} is missing or empty)"
    else:
        differ = [
            f"{what} `{mine}` (the race's: `{theirs}`)"
            for what, mine, theirs in (("metric", metric, race.metric), ("baseline", baseline, race.baseline))
            if mine != theirs
        ]
        why = "this report compares another " + " and ".join(differ)
    return [
        f"the seeds were raced: each arm stopped getting seeds when the race on `{race.metric}` against "
        f"`{race.baseline}` decided it, so how many seeds an arm has depends on its results. {why}, so "
        "the fixed-n tests are shown, and their p-values and intervals assume a number of seeds fixed in "
        "advance: they are not valid after that stopping (read them as descriptive). Report the race's "
        f"metric against its baseline (`--metric {race.metric} --baseline {race.baseline}`) for its "
        "anytime-valid intervals (`docs/racing.md`)."
    ]
