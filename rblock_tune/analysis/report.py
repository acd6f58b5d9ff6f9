"""The report of a study or seed phase: tables, figures, ``report.md`` and a self-contained
``report.html``.

:func:`write_report` reads an MLflow experiment (the layout the studies write), picks the runs to
compare (the seed phase when there is one; otherwise the completed search trials grouped by
variant), compares every arm with a baseline (:func:`rblock_tune.analysis.stats.compare_arms`),
draws the figures and writes everything to one folder::

    comparisons.csv   one row per arm against the baseline (see stats.COMPARISON_COLUMNS)
    runs.csv          the tidy run table (load_runs)
    figures/*.png     distribution, learning_curves, hyperparameters, importances, parallel
    report.md         question, protocol, table, figures, caveats (figures linked)
    report.html       the same, figures embedded: one file to share
"""

from __future__ import annotations

import base64
import html
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from rblock_tune import __version__
from rblock_tune.analysis._load import load_artifact_text, load_histories, load_runs
from rblock_tune.analysis.stats import compare_arms, seeds_needed, summarize_arms
from rblock_tune.config import SPLIT_VARIANTS
from rblock_tune.errors import ConfigError

__all__ = [
    "BASELINE_PREFERENCE",
    "RATE_MISMATCH",
    "Protocol",
    "ReportResult",
    "choose_baseline",
    "comparison_values",
    "param_importances",
    "planning_table",
    "read_protocol",
    "realised_rates",
    "write_report",
]

BASELINE_PREFERENCE = ("dropblock", "dropout", "spatial_dropout", "none", "random_dml")
"""Default baseline: the first arm whose ``reg.variant`` comes first in this order."""

MIN_SEEDS = 5
"""Below this many runs per arm the report warns that n is too small."""

RATE_MISMATCH = 0.25
"""A caveat fires when an arm's realised per-sub-model drop rate differs from the baseline's by more
than this share of the baseline's."""

_SEARCHED = ("reg.alpha", "reg.drop_prob", "reg.block_size", "reg.variant")


@dataclass(frozen=True)
class Protocol:
    """How the compared runs were made, read from the study's parent runs.

    Attributes:
        selection_metric: the metric the search optimised (chose the configurations), or None.
        selection_mode: ``max`` or ``min``, or None.
        space: searched dimensions (dotted key -> the spec's definition).
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


@dataclass(frozen=True)
class ReportResult:
    """What :func:`write_report` wrote and found."""

    out: Path
    comparisons: pd.DataFrame
    runs: pd.DataFrame
    figures: dict[str, Path]
    markdown: Path
    html: Path
    baseline: str
    phase: str
    caveats: list[str]


def read_protocol(runs: pd.DataFrame) -> Protocol:
    """The protocol of a study from its parent runs' artifacts (``spec.yaml``, ``arms.yaml``)."""
    tracking_uri = str(runs.attrs["tracking_uri"])
    spec: dict[str, Any] = {}
    arms_doc: dict[str, Any] = {}
    for role, name in (("study", "spec.yaml"), ("seeds", "arms.yaml")):
        parents = runs.loc[runs["role"] == role, "run_id"]
        text = load_artifact_text(str(parents.iloc[0]), name, tracking_uri) if len(parents) else None
        doc = yaml.safe_load(text) if text else None
        if isinstance(doc, dict):
            if role == "study":
                spec = doc
            else:
                arms_doc = doc
    scheduler = spec.get("scheduler") or {}
    base_train = (spec.get("base") or {}).get("train") or {}
    budget = scheduler.get("budget") or base_train.get("epochs")
    searched: dict[str, list[int]] = {
        str(study): sorted(int(s) for s in seeds)
        for study, seeds in (arms_doc.get("search_seeds") or {}).items()
        if isinstance(seeds, list)
    }
    experiment = str(runs.attrs.get("experiment", ""))
    trial_seeds = runs.loc[runs["role"] == "trial", "seed"].dropna()
    if len(trial_seeds):  # what this study's search trials were recorded with
        searched[experiment] = sorted({*searched.get(experiment, []), *(int(s) for s in trial_seeds)})
    return Protocol(
        selection_metric=(spec.get("metric", "val_acc") if spec else None),
        selection_mode=(spec.get("mode", "max") if spec else None),
        space=dict(spec.get("space") or {}),
        search_budget=int(budget) if budget else None,
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
    if metric not in runs.columns:
        numeric = [c for c in runs.columns if c not in ("seed", "epochs_done") and runs[c].dtype.kind == "f"]
        raise ConfigError(
            f"metric {metric!r} is not in the runs (metrics there: {', '.join(numeric) or 'none'}); "
            "pass --metric with one of them"
        )
    seed_runs = runs[runs["role"] == "seed_run"]
    if len(seed_runs):
        phase, chosen = "seeds", seed_runs.copy()
    else:
        phase, chosen = "search", runs[runs["role"] == "trial"].copy()
        if "reg.variant" in chosen:
            chosen["arm"] = chosen["reg.variant"].astype(str)
        chosen["seed"] = pd.array([pd.NA] * len(chosen), dtype="Int64")
    if not len(chosen):
        raise ConfigError(
            f"experiment {runs.attrs.get('experiment')!r} has no trial or seed run to compare "
            "(is it a study made by rblock-tune study run?)"
        )
    done = chosen["status"] == "completed"
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
        dim = {"type": "categorical", "values": dim} if isinstance(dim, list) else dict(dim)
        seen = data[key].dropna()
        if dim.get("type") == "categorical" or seen.map(lambda v: isinstance(v, (str, bool))).any():
            choices = tuple(dict.fromkeys([*(dim.get("values") or []), *seen.tolist()]))
            distributions[key] = CategoricalDistribution(choices)
        else:
            low = min(float(dim.get("low", seen.min())), float(seen.min()))
            high = max(float(dim.get("high", seen.max())), float(seen.max()))
            if dim.get("type") == "int":
                distributions[key] = IntDistribution(int(low), int(high))
            else:
                distributions[key] = FloatDistribution(low, high, log=dim.get("type") == "loguniform")
    if len(data) < 4 or not distributions:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for _, row in data.iterrows():
        params = {k: (row[k].item() if hasattr(row[k], "item") else row[k]) for k in distributions}
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, value=float(row[metric]))
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        return {
            k: float(v)
            for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()
        }


# ------------------------------------------------------------------------------- rendering
@dataclass
class _Doc:
    """A report as blocks, rendered to Markdown and to HTML from the same source."""

    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def para(self, text: str) -> None:
        self.blocks.append(("para", text))

    def bullets(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(("bullets", list(items)))

    def table(self, frame: pd.DataFrame) -> None:
        self.blocks.append(("table", frame))

    def figure(self, path: Path, caption: str) -> None:
        self.blocks.append(("figure", (path, caption)))

    def markdown(self, root: Path) -> str:
        out: list[str] = []
        for kind, value in self.blocks:
            if kind == "heading":
                out.append("#" * value[0] + " " + value[1])
            elif kind == "para":
                out.append(value)
            elif kind == "bullets":
                out.append("\n".join(f"- {item}" for item in value))
            elif kind == "table":
                header = "| " + " | ".join(map(str, value.columns)) + " |"
                rule = "| " + " | ".join("---" for _ in value.columns) + " |"
                rows = ["| " + " | ".join(map(str, row)) + " |" for row in value.itertuples(index=False)]
                out.append("\n".join([header, rule, *rows]))
            else:
                path, caption = value
                out.append(f"![{caption}]({path.relative_to(root).as_posix()})\n\n*{caption}*")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        def inline(text: str) -> str:
            escaped = html.escape(text)
            parts = escaped.split("`")
            return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts)).replace("**", "")

        body: list[str] = []
        for kind, value in self.blocks:
            if kind == "heading":
                body.append(f"<h{value[0]}>{inline(value[1])}</h{value[0]}>")
            elif kind == "para":
                body.append(f"<p>{inline(value)}</p>")
            elif kind == "bullets":
                body.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in value) + "</ul>")
            elif kind == "table":
                head = "".join(f"<th>{html.escape(str(c))}</th>" for c in value.columns)
                rows = "".join(
                    "<tr>" + "".join(f"<td>{inline(str(v))}</td>" for v in row) + "</tr>"
                    for row in value.itertuples(index=False)
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            else:
                path, caption = value
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                body.append(
                    f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
        style = (
            "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
            "line-height:1.45}table{border-collapse:collapse;font-size:.85rem;display:block;overflow-x:auto}"
            "td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}th{background:#f4f4f4}"
            "img{max-width:100%}code{background:#f4f4f4;padding:0 .2rem}figcaption{font-style:italic}"
        )
        return (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
        )


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return f"{number:.{digits}g}" if abs(number) < 1e-3 and number != 0 else f"{number:.{digits}f}"
    return str(value)


def _table_for_people(comparisons: pd.DataFrame, alpha: float) -> pd.DataFrame:
    rows = []
    for r in comparisons.itertuples(index=False):
        mark = "**yes**" if r.significant else "no"
        rows.append(
            {
                "arm": r.arm,
                "n (pairs)": f"{r.n} ({r.n_pairs})" if r.paired else f"{r.n} (unpaired)",
                "mean": _fmt(r.mean_arm),
                "baseline mean": _fmt(r.mean_baseline),
                "difference [95% CI]": f"{_fmt(r.mean_diff)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]",
                "test": r.primary_test,
                "p": _fmt(r.p_primary),
                "p (Holm)": _fmt(r.p_holm),
                f"significant at {alpha}": mark,
                "Hedges' g": _fmt(r.hedges_g, 2),
                "P(arm > baseline)": _fmt(r.prob_improvement, 2),
                "power": _fmt(r.power, 2),
                "seeds for 80% power": "-" if pd.isna(r.seeds_needed) else str(int(r.seeds_needed)),
            }
        )
    return pd.DataFrame(rows)


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
        row: dict[str, str] = {"arm": str(r.arm), "spread (sd)": _fmt(spread)}
        for label, size in sizes:
            needed = seeds_needed(size, spread, alpha=alpha, power=power, paired=bool(r.paired))
            row[label] = "-" if needed is None else str(needed)
        rows.append(row)
    return pd.DataFrame(rows)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    experiment: str,
    tracking_uri: str,
    out: str | Path,
    *,
    metric: str = "test_acc",
    baseline: str | None = None,
    alpha: float = 0.05,
    n_resamples: int = 10000,
    seed: int = 0,
) -> ReportResult:
    """Write the report of ``experiment`` into ``out`` (see the module docstring).

    Args:
        experiment: MLflow experiment (the study name).
        tracking_uri: where it is (``sqlite:///...`` or ``http://...``).
        out: output folder (created).
        metric: the compared metric (default ``test_acc``).
        baseline: the arm every other arm is compared with (default: :func:`choose_baseline`).
        alpha: significance level of the Holm-adjusted primary p-values.
        n_resamples: bootstrap resamples of the confidence intervals.
        seed: seed of the bootstrap.

    Raises:
        ConfigError: no such experiment, metric or baseline, nothing to compare, bad alpha.
    """
    from rblock_tune.analysis import plots

    if not 0 < alpha < 1:
        raise ConfigError(f"alpha={alpha} must be between 0 and 1 (e.g. 0.05)")
    runs = load_runs(experiment, tracking_uri)
    values, phase, left_out = comparison_values(runs, metric)
    arms = sorted(values["arm"].astype(str).unique())
    if baseline is None:
        baseline = choose_baseline(values)
    elif baseline not in arms:
        raise ConfigError(f"--baseline {baseline!r} is not an arm of {experiment!r}; arms: {', '.join(arms)}")
    if len(arms) < 2:
        raise ConfigError(
            f"only one arm ({arms[0]}) in the {phase} runs of {experiment!r}: nothing to compare with"
        )
    protocol = read_protocol(runs)
    comparisons = compare_arms(
        values, baseline=baseline, metric=metric, alpha=alpha, n_resamples=n_resamples, seed=seed
    )
    summary = summarize_arms(values, metric=metric)

    folder = Path(out)
    figures_dir = folder / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    comparisons.to_csv(folder / "comparisons.csv", index=False)
    runs.to_csv(folder / "runs.csv", index=False)

    figures: dict[str, Path] = {}
    figures["distribution"] = _save(
        plots.plot_distribution(values, metric, baseline=baseline), figures_dir / "distribution.png"
    )
    curve_metric = (
        protocol.selection_metric if protocol.selection_metric in ("val_acc", "val_loss") else "val_acc"
    )
    histories = load_histories(values, [curve_metric])
    if len(histories):
        figures["learning_curves"] = _save(
            plots.plot_learning_curves(histories, values, curve_metric, baseline=baseline),
            figures_dir / "learning_curves.png",
        )
    trials = runs[(runs["role"] == "trial") & (runs["status"].isin(["completed", "early_stopped"]))]
    selection = protocol.selection_metric or "val_acc"
    searched = [k for k in (protocol.space or dict.fromkeys(_SEARCHED)) if k in runs.columns]
    searched = [k for k in searched if trials[k].dropna().astype(str).nunique() > 1] if len(trials) else []
    importances: dict[str, float] = {}
    if searched and selection in trials.columns:
        figures["hyperparameters"] = _save(
            plots.plot_hyperparameters(trials, searched, selection), figures_dir / "hyperparameters.png"
        )
        space = protocol.space or {k: {"type": "categorical"} for k in searched}
        importances = param_importances(
            trials, {k: space[k] for k in searched}, selection, protocol.selection_mode or "max", seed
        )
        if importances:
            figures["importances"] = _save(
                plots.plot_importances(importances), figures_dir / "importances.png"
            )
        figures["parallel"] = _save(
            plots.plot_parallel(trials, searched, selection), figures_dir / "parallel.png"
        )

    rates = realised_rates(values)
    seeds: list[int] = []
    if phase == "seeds":  # what the phase planned (arms.yaml) and what its runs recorded, failed ones too
        recorded = runs.loc[runs["role"] == "seed_run", "seed"].dropna()
        seeds = sorted({*protocol.seeds, *(int(s) for s in recorded)})
    caveats = _caveats(comparisons, summary, left_out, protocol, metric, phase, len(trials), importances)
    caveats += _fairness_caveats(comparisons, rates, protocol, seeds, phase)
    doc = _document(
        experiment, tracking_uri, runs, values, phase, protocol, comparisons, summary, baseline, metric,
        alpha,
        figures, caveats, trials, importances, n_resamples, rates,
    )  # fmt: skip
    markdown = folder / "report.md"
    markdown.write_text(doc.markdown(folder))
    html_path = folder / "report.html"
    html_path.write_text(doc.html(f"R-Block report: {experiment}"))
    return ReportResult(folder, comparisons, runs, figures, markdown, html_path, baseline, phase, caveats)


def _reused_seeds(protocol: Protocol, seeds: Sequence[int]) -> list[int]:
    """Seed-phase seeds that some search trial (of this study or a ``from_study`` one) also ran with."""
    searched = {seed for study_seeds in protocol.search_seeds.values() for seed in study_seeds}
    return sorted(set(seeds) & searched)


def _fairness_caveats(
    comparisons: pd.DataFrame, rates: pd.DataFrame, protocol: Protocol, seeds: Sequence[int], phase: str
) -> list[str]:
    """Caveats about how the arms were measured: reused search seeds, and in a seed phase unequal
    realised drop rates (search trials grouped by variant differ in their sampled p anyway, which
    the search phase's own caveat says)."""
    caveats: list[str] = []
    reused = _reused_seeds(protocol, seeds)
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
    dropping = by_arm[by_arm["variant"].astype(str) != "none"]
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


def _caveats(
    comparisons: pd.DataFrame,
    summary: pd.DataFrame,
    left_out: pd.DataFrame,
    protocol: Protocol,
    metric: str,
    phase: str,
    n_trials: int,
    importances: Mapping[str, float],
) -> list[str]:
    caveats: list[str] = []
    small = summary[summary["n"] < MIN_SEEDS]
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
    diverged = left_out[left_out["status"] == "diverged"]
    if len(diverged):
        per_arm = diverged["arm"].astype(str).value_counts()
        caveats.append(
            "diverged runs were left out, which flatters their arms: "
            + ", ".join(f"{a}: {n}" for a, n in per_arm.items())
        )
    if protocol.selection_metric is None:
        caveats.append(
            "the metric that selected the configurations is unknown (no spec.yaml on a parent run)."
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


def _document(
    experiment: str,
    tracking_uri: str,
    runs: pd.DataFrame,
    values: pd.DataFrame,
    phase: str,
    protocol: Protocol,
    comparisons: pd.DataFrame,
    summary: pd.DataFrame,
    baseline: str,
    metric: str,
    alpha: float,
    figures: Mapping[str, Path],
    caveats: Sequence[str],
    trials: pd.DataFrame,
    importances: Mapping[str, float],
    n_resamples: int,
    rates: pd.DataFrame,
) -> _Doc:
    doc = _Doc()
    doc.heading(f"R-Block report: {experiment}", 1)
    others = ", ".join(a for a in sorted(values["arm"].astype(str).unique()) if a != baseline)
    doc.para(
        f"**Question.** Does each arm ({others}) reach a different `{metric}` than the baseline "
        f"`{baseline}`, "
        "by how much, and how sure are we?"
    )
    significant = comparisons[comparisons["significant"].astype(bool)]
    if len(significant):
        lines = [
            f"`{r.arm}`: {_fmt(r.mean_diff)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] (p Holm {_fmt(r.p_holm)})"
            for r in significant.itertuples(index=False)
        ]
        doc.para(
            f"**Answer.** At alpha = {alpha} after Holm's correction, these arms differ from `{baseline}`:"
        )
        doc.bullets(lines)
    else:
        doc.para(
            f"**Answer.** No arm differs significantly from `{baseline}` at alpha = {alpha} after Holm's "
            "correction. Read the intervals and the power column before concluding there is no difference."
        )
    doc.heading("Protocol")
    seeds = sorted(int(s) for s in values["seed"].dropna().unique()) if phase == "seeds" else []
    epochs = values["train.epochs"].dropna().unique() if "train.epochs" in values else []
    n_trials = int((runs["role"] == "trial").sum())
    items = [
        f"experiment `{experiment}` at `{tracking_uri}`; {len(runs)} MLflow runs ({n_trials} search trials).",
        (
            f"compared: the seed phase, {len(values)} completed runs; every arm ran the same seeds "
            f"{seeds}, so runs pair by seed (same data order and initialisation across arms)."
            if phase == "seeds"
            else f"compared: {len(values)} completed search trials, grouped by `reg.variant`, unpaired."
        ),
        f"epochs per compared run: {', '.join(str(int(e)) for e in epochs) or 'unknown'}"
        + (f"; search trials had a budget of {protocol.search_budget} epochs (ASHA may stop them early)."
           if protocol.search_budget else "."),
        (
            f"selection: the search ranked configurations by `{protocol.selection_metric}` "
            f"({protocol.selection_mode}) on the validation split; this report compares `{metric}`"
            + (" on the test split, which took no part in the selection." if metric.startswith("test")
               else ".")
            if protocol.selection_metric
            else f"selection metric unknown; this report compares `{metric}`."
        ),
        "statistics: primary test = paired t-test for paired arms, Welch's t-test otherwise; p-values "
        f"adjusted by Holm's method over the {len(comparisons)} comparison(s); 95% BCa bootstrap intervals "
        f"({n_resamples} resamples, seeded) of the mean difference (of per-seed differences when paired); "
        "Hedges' g; P(arm > baseline) = U / (n1 n2); power of the primary test at the observed difference "
        "and spread, and the seeds needed for 80% power.",
        f"made by rblock-tune {__version__}.",
    ]  # fmt: skip
    items.append(_seeds_item(experiment, protocol, seeds, phase))
    items.append(_rates_item(rates))
    if protocol.arms:
        items.append(
            "arms: "
            + "; ".join(
                f"`{label}` = "
                + (
                    ", ".join(f"{k}={_fmt(v, 4) if isinstance(v, float) else v}" for k, v in sets.items())
                    or "the base config"
                )
                for label, sets in protocol.arms.items()
            )
        )
    doc.bullets(items)
    doc.heading("Results")
    doc.para(f"Per arm, `{metric}`:")
    doc.table(summary.assign(**{c: summary[c].map(_fmt) for c in ("mean", "sd", "sem", "min", "max")}))
    doc.para(
        f"Each arm against `{baseline}` (difference = arm - baseline; `comparisons.csv` has every column):"
    )
    doc.table(_table_for_people(comparisons, alpha))
    planning = planning_table(values, comparisons, metric, alpha)
    doc.para(
        "Planning: seeds per arm needed to detect a difference of the given size with 80% power at "
        f"alpha = {alpha}, at the spread observed here (of the per-seed differences when paired):"
    )
    doc.table(planning)
    captions = {
        "distribution": f"{metric} of every run, per arm (box: quartiles).",
        "learning_curves": "Validation curves of the compared runs: mean and ±1 sd over seeds.",
        "hyperparameters": "Search trials: the selection metric against each searched hyperparameter.",
        "importances": "fANOVA importances of the searched hyperparameters (Optuna), over the search trials.",
        "parallel": "Parallel coordinates of the search trials, coloured by the selection metric.",
    }
    doc.heading("Figures")
    for key, path in figures.items():
        doc.figure(path, captions[key])
    if importances:
        doc.para(
            "Importances: "
            + ", ".join(f"`{k}` {v:.2f}" for k, v in sorted(importances.items(), key=lambda kv: -kv[1]))
            + f" (over {len(trials)} search trials)."
        )
    doc.heading("Caveats")
    doc.bullets(list(caveats) or ["none found."])
    return doc


def _seeds_item(experiment: str, protocol: Protocol, seeds: Sequence[int], phase: str) -> str:
    """The protocol's line on the seeds each phase used."""
    searched = [
        f"{list(study_seeds)} ({'this study' if study == experiment else f'study `{study}`'})"
        for study, study_seeds in protocol.search_seeds.items()
        if study_seeds
    ]
    text = "seeds: the search trials ran with " + (" and ".join(searched) or "no recorded seed")
    if phase != "seeds":
        return text + "."
    reused = _reused_seeds(protocol, seeds)
    if reused:
        return text + f"; the seed phase ran {list(seeds)}, reusing search seed(s) {reused}."
    return text + f"; the seed phase ran {list(seeds)}, disjoint from every search seed."


def _rates_item(rates: pd.DataFrame) -> str:
    """The protocol's line on the drop rate each arm actually applied."""
    parts = []
    for r in rates.itertuples(index=False):
        realised = "not recorded" if pd.isna(r.realised) else f"{r.realised:.3f}"
        if str(r.variant) == "none":
            parts.append(f"`{r.arm}` 0 (none)")
            continue
        nominal = "" if pd.isna(r.drop_prob) else f", p={float(r.drop_prob):.3g}"
        basis = (
            f", {r.rate_basis} basis"
            if str(r.variant) in SPLIT_VARIANTS and not pd.isna(r.rate_basis)
            else ""
        )
        parts.append(f"`{r.arm}` {realised} ({r.variant}{nominal}{basis})")
    return (
        "realised drop rate per sub-model (share of units the applied masks dropped, last epoch, mean "
        "over runs): " + "; ".join(parts) + "."
    )
