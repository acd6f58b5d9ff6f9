"""The report's document: ``report.md``, a self-contained ``report.html``, and the files and
figures beside them.

:func:`write_report` reads an MLflow experiment (the layout the studies write), picks the runs to
compare (the seed phase when there is one; otherwise the completed search trials grouped by
variant), compares every arm with a baseline (:func:`rblock_tune.analysis.comparison.compare_arms`),
draws the figures and writes everything to one folder::

    comparisons.csv   one row per arm against the baseline (see comparison.COMPARISON_COLUMNS)
    runs.csv          the tidy run table (load_runs)
    figures/*.png     forest, race (a raced seed phase), paired_seeds, distribution,
                      learning_curves, hyperparameters, importances, parallel
    report.md         question, protocol, table, figures, caveats (figures linked)
    report.html       the same, figures embedded: one file to share

What the report says (protocol, tables, realised drop rates, caveats) comes from
:mod:`rblock_tune.analysis.report`, and for a raced seed phase the race's own record from
:mod:`rblock_tune.analysis.race_record` (its intervals replace the fixed-n tests when the report
compares the race's metric against its baseline); this module lays it out and writes it.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rblock_tune import __version__
from rblock_tune._stores import redact_url
from rblock_tune.analysis._runs import load_histories, load_runs, runs_of
from rblock_tune.analysis.comparison import compare_arms, summarize_arms
from rblock_tune.analysis.race_record import RaceRecord, is_raced, raced_comparisons, read_race
from rblock_tune.analysis.report import (
    Protocol,
    choose_baseline,
    comparison_caveats,
    comparison_values,
    fairness_caveats,
    fmt,
    param_importances,
    planning_table,
    race_caveats,
    read_protocol,
    realised_rates,
    reused_seeds,
)
from rblock_tune.config import SPLIT_VARIANTS
from rblock_tune.errors import ConfigError
from rblock_tune.layout import COMPLETED, EARLY_STOPPED, PHASE_SEARCH, PHASE_SEEDS
from rblock_tune.racing import BETTER, WORSE

__all__ = ["ReportResult", "write_report"]

_SEARCHED = ("reg.alpha", "reg.drop_prob", "reg.block_size", "reg.variant")


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


def _table_for_people(comparisons: pd.DataFrame, alpha: float) -> pd.DataFrame:
    rows = []
    for r in comparisons.itertuples(index=False):
        mark = "**yes**" if r.significant else "no"
        rows.append(
            {
                "arm": r.arm,
                "n (pairs)": f"{r.n} ({r.n_pairs})" if r.paired else f"{r.n} (unpaired)",
                "mean": fmt(r.mean_arm),
                "baseline mean": fmt(r.mean_baseline),
                "difference [95% CI]": f"{fmt(r.mean_diff)} [{fmt(r.ci_low)}, {fmt(r.ci_high)}]",
                "test": r.primary_test,
                "p": fmt(r.p_primary),
                "p (Holm)": fmt(r.p_holm),
                f"significant at {alpha}": mark,
                "Hedges' g": fmt(r.hedges_g, 2),
                "P(arm > baseline)": fmt(r.prob_improvement, 2),
                "power": fmt(r.power, 2),
                "seeds for 80% power": "-" if pd.isna(r.seeds_needed) else str(int(r.seeds_needed)),
            }
        )
    return pd.DataFrame(rows)


def _decision_text(decision: str) -> str:
    return f"**{decision}**" if decision in (BETTER, WORSE) else str(decision)


def _race_table_for_people(comparisons: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The comparisons of a report that took the race's intervals: raced arms with the race's interval,
    decision and pairs and no fixed-n p-value; other arms with their fixed-n test."""
    rows = []
    for r in comparisons.itertuples(index=False):
        raced = is_raced(r)
        if raced:
            pairs, decided = f"{r.n} ({r.n_pairs} in the race)", _decision_text(str(r.decision))
        else:
            pairs = f"{r.n} ({r.n_pairs})" if r.paired else f"{r.n} (unpaired)"
            decided = f"**significant at {alpha}** (Holm)" if r.significant else f"n.s. at {alpha} (Holm)"
        rows.append(
            {
                "arm": r.arm,
                "n (pairs)": pairs,
                "mean": fmt(r.mean_arm),
                "baseline mean": fmt(r.mean_baseline),
                "difference [interval]": f"{fmt(r.mean_diff)} [{fmt(r.ci_low)}, {fmt(r.ci_high)}]",
                "interval": r.interval,
                "decision": decided,
                "test": r.primary_test,
                "p": fmt(r.p_primary),
                "p (Holm)": fmt(r.p_holm),
                "Hedges' g": fmt(r.hedges_g, 2),
                "P(arm > baseline)": fmt(r.prob_improvement, 2),
                "seeds for 80% power": "-" if pd.isna(r.seeds_needed) else str(int(r.seeds_needed)),
            }
        )
    return pd.DataFrame(rows)


def _statistics_item(comparisons: pd.DataFrame, n_resamples: int, raced: Sequence[str]) -> str:
    """The protocol's line on the statistics; for raced arms, what stands in for the fixed-n tests."""
    fixed = (
        "primary test = paired t-test for paired arms, Welch's t-test otherwise; p-values "
        f"adjusted by Holm's method over the {len(comparisons)} comparison(s); 95% BCa "
        f"bootstrap intervals ({n_resamples} resamples, seeded) of the mean difference (of per-seed "
        "differences when paired); "
    )
    if not raced:
        return (
            "statistics: " + fixed + "Hedges' g; P(arm > baseline) = U / (n1 n2); power of the primary test "
            "at the observed difference and spread, and the seeds needed for 80% power."
        )
    listed = ", ".join(f"`{a}`" for a in raced)
    others = len(comparisons) - len(raced)
    return (
        f"statistics: for the raced arms ({listed}) the difference, interval and decision are the race's "
        "(see `race` below): no fixed-n p-value, Holm adjustment, bootstrap interval or power is given "
        "for them, as those assume a number of seeds fixed in advance"
        + (f"; for the {others} other arm(s): " + fixed if others else "; ")
        + "Hedges' g and P(arm > baseline) = U / (n1 n2) over all completed runs; the seeds a fixed design "
        "would need for 80% power."
    )


def _race_item(race: RaceRecord, values: pd.DataFrame, metric: str, baseline: str) -> str:
    """The protocol's line on a raced seed phase: its design, the seeds it used against a fixed
    design's, and what its intervals are."""
    final = race.final()
    used = race.runs_used()
    text = f"race: the seed phase was a race, {race.describe()}."
    if len(final):
        pairs = ", ".join(f"`{r.arm}` {int(r.n_pairs)} ({r.decision})" for r in final.itertuples(index=False))
        text += (
            f" Seeds used: the race's decisions used {used} runs (pairs per arm: {pairs}; the baseline "
            f"{int(final['n_pairs'].max())}); the seed phase completed {len(values)} runs"
            + (
                f" ({len(values) - used} of them started before their arm was decided and finished after: "
                "not in the race's intervals)"
                if len(values) > used
                else ""
            )
        )
    else:
        text += f" The race has recorded no look yet; the seed phase completed {len(values)} runs"
    fixed, max_seeds = race.fixed_runs(), race.max_seeds
    if fixed is not None and max_seeds is not None:
        text += (
            f", against {fixed} for a fixed design of {max_seeds} seeds per arm "
            f"({fixed // max_seeds} arms, the baseline included)."
        )
    else:
        text += "."
    if race.matches(metric, baseline):
        text += (
            " The raced arms' intervals are the race's anytime-valid group-sequential intervals: at each "
            "arm's Holm-recycled level (alpha / the arms not yet decided different), an arm's interval "
            "covers its true difference at all looks together, so it stays valid after the optional "
            "stopping the race made (see `docs/racing.md`); each arm's is its row at the look that "
            "decided it, or at the race's last look."
        )
    else:
        text += (
            f" This report compares `{metric}` against `{baseline}`, not the race's comparison: its "
            "tables show fixed-n tests, which the race's stopping invalidates (see the caveats and "
            "`docs/racing.md`)."
        )
    return text


def _fallback_space(trials: pd.DataFrame, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The searched dimensions of a study that saved no normalised spec, as the trials show them:
    numbers as a continuous range (log when positive and spanning 20x or more), anything else as
    categories (a continuous key read as categories would give fANOVA one level per trial)."""
    space: dict[str, dict[str, Any]] = {}
    for key in keys:
        seen = trials[key].dropna()
        numeric = len(seen) and not seen.map(lambda v: isinstance(v, (str, bool))).any()
        if not numeric:
            space[key] = {"type": "categorical"}
            continue
        values = pd.to_numeric(seen)
        wide = float(values.min()) > 0 and float(values.max()) / float(values.min()) >= 20
        space[key] = {"type": "loguniform" if wide else "uniform"}
    return space


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
    significance: float = 0.05,
    n_resamples: int = 10000,
    seed: int = 0,
) -> ReportResult:
    """Write the report of ``experiment`` into ``out`` (see the module docstring).

    Args:
        experiment: MLflow experiment (the study name).
        tracking_uri: where it is (``sqlite:///...`` or ``http://...``).
        out: output folder (created).
        metric: the compared metric (default ``test_acc``).
        baseline: the arm every other arm is compared with (default: a raced seed phase's baseline,
            else :func:`choose_baseline`).
        significance: significance level of the Holm-adjusted primary p-values (the report's
            alpha; named apart from ``reg.alpha``, the KL weight).
        n_resamples: bootstrap resamples of the confidence intervals.
        seed: seed of the bootstrap.

    Raises:
        ConfigError: no such experiment, metric or baseline, nothing to compare, bad significance.
    """
    from rblock_tune.analysis import plots

    if not 0 < significance < 1:
        raise ConfigError(f"significance={significance} must be between 0 and 1 (e.g. 0.05)")
    alpha = significance
    runs = load_runs(experiment, tracking_uri)
    values, phase, left_out = comparison_values(runs, metric)
    arms = sorted(values["arm"].astype(str).unique())
    race = read_race(runs) if phase == PHASE_SEEDS else None
    if baseline is None and race is not None and race.baseline is not None and race.baseline in arms:
        baseline = race.baseline
    elif baseline is None:
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
    use_race = race is not None and race.matches(metric, baseline)
    if use_race:
        assert race is not None
        comparisons = raced_comparisons(comparisons, race)
    summary = summarize_arms(values, metric=metric)

    folder = Path(out)
    figures_dir = folder / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    comparisons.to_csv(folder / "comparisons.csv", index=False)
    runs.to_csv(folder / "runs.csv", index=False)

    figures: dict[str, Path] = {}
    figures["forest"] = _save(
        plots.plot_forest(comparisons, metric, significance=alpha), figures_dir / "forest.png"
    )
    if race is not None and len(race.looks):
        figures["race"] = _save(
            plots.plot_race(race.looks, str(race.baseline), str(race.metric), margin=race.margin),
            figures_dir / "race.png",
        )
    if phase == "seeds" and comparisons["paired"].astype(bool).any():
        figures["paired_seeds"] = _save(
            plots.plot_paired_seeds(values, metric, baseline), figures_dir / "paired_seeds.png"
        )
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
    trials = runs[runs_of(runs, PHASE_SEARCH) & (runs["status"].isin([COMPLETED, EARLY_STOPPED]))]
    selection = protocol.selection_metric or "val_acc"
    searched = [k for k in (protocol.space or dict.fromkeys(_SEARCHED)) if k in runs.columns]
    searched = [k for k in searched if trials[k].dropna().astype(str).nunique() > 1] if len(trials) else []
    importances: dict[str, float] = {}
    if searched and selection in trials.columns:
        figures["hyperparameters"] = _save(
            plots.plot_hyperparameters(trials, searched, selection), figures_dir / "hyperparameters.png"
        )
        space = protocol.space or _fallback_space(trials, searched)
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
        recorded = runs.loc[runs_of(runs, PHASE_SEEDS), "seed"].dropna()
        seeds = sorted({*protocol.seeds, *(int(s) for s in recorded)})
    raced = [str(r.arm) for r in comparisons.itertuples(index=False) if is_raced(r)]
    caveats = comparison_caveats(
        comparisons, summary, left_out, protocol, metric, phase, len(trials), importances,
        raced=[*raced, baseline] if raced else (),
    )  # fmt: skip
    caveats += race_caveats(race, metric, baseline, phase)
    caveats += fairness_caveats(comparisons, rates, protocol, seeds, phase)
    doc = _document(
        experiment, tracking_uri, runs, values, phase, protocol, comparisons, summary, baseline, metric,
        alpha,
        figures, caveats, trials, importances, n_resamples, rates, race,
    )  # fmt: skip
    markdown = folder / "report.md"
    markdown.write_text(doc.markdown(folder))
    html_path = folder / "report.html"
    html_path.write_text(doc.html(f"R-Block report: {experiment}"))
    return ReportResult(folder, comparisons, runs, figures, markdown, html_path, baseline, phase, caveats)


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
    race: RaceRecord | None = None,
) -> _Doc:
    doc = _Doc()
    doc.heading(f"R-Block report: {experiment}", 1)
    others = ", ".join(a for a in sorted(values["arm"].astype(str).unique()) if a != baseline)
    doc.para(
        f"**Question.** Does each arm ({others}) reach a different `{metric}` than the baseline "
        f"`{baseline}`, "
        "by how much, and how sure are we?"
    )
    raced_rows = [r for r in comparisons.itertuples(index=False) if is_raced(r)]
    significant = comparisons[comparisons["significant"].astype(bool)]
    if raced_rows:
        assert race is not None
        doc.para(
            f"**Answer.** The race decided, at its alpha = {race.alpha:g} family-wise over the arms and "
            f"its looks (anytime-valid intervals, valid after its optional stopping):"
        )
        doc.bullets(
            [
                f"`{r.arm}`: {_decision_text(r.decision)}, {fmt(r.mean_diff)} [{fmt(r.ci_low)}, "
                f"{fmt(r.ci_high)}] after {r.n_pairs} seed pairs (level {r.race_level:.3g})"
                for r in raced_rows
            ]
            + [
                f"`{r.arm}` (not raced, fixed-n): {fmt(r.mean_diff)} [{fmt(r.ci_low)}, {fmt(r.ci_high)}] "
                f"(p Holm {fmt(r.p_holm)}{', significant' if r.significant else ''})"
                for r in comparisons.itertuples(index=False)
                if not is_raced(r)
            ]
        )
    elif len(significant):
        lines = [
            f"`{r.arm}`: {fmt(r.mean_diff)} [{fmt(r.ci_low)}, {fmt(r.ci_high)}] (p Holm {fmt(r.p_holm)})"
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
    n_trials = int(runs_of(runs, PHASE_SEARCH).sum())
    raced_phase = race is not None and phase == "seeds"
    items = [
        f"experiment `{experiment}` at `{redact_url(tracking_uri)}`; {len(runs)} MLflow runs "
        f"({n_trials} search trials).",
        (
            f"compared: the seed phase, a race, {len(values)} completed runs; arms took the seeds {seeds} "
            "in order until the race stopped them, so runs pair by seed (same data order and "
            "initialisation across arms)."
            if raced_phase
            else f"compared: the seed phase, {len(values)} completed runs; every arm ran the same seeds "
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
        _statistics_item(comparisons, n_resamples, [str(r.arm) for r in raced_rows]),
        f"made by rblock-tune {__version__}.",
    ]  # fmt: skip
    if raced_phase:
        assert race is not None
        items.append(_race_item(race, values, metric, baseline))
    items.append(_seeds_item(experiment, protocol, seeds, phase))
    items.append(_rates_item(rates))
    if protocol.arms:
        items.append(
            "arms: "
            + "; ".join(
                f"`{label}` = "
                + (
                    ", ".join(f"{k}={fmt(v, 4) if isinstance(v, float) else v}" for k, v in sets.items())
                    or "the base config"
                )
                for label, sets in protocol.arms.items()
            )
        )
    doc.bullets(items)
    doc.heading("Results")
    doc.para(f"Per arm, `{metric}`:")
    doc.table(summary.assign(**{c: summary[c].map(fmt) for c in ("mean", "sd", "sem", "min", "max")}))
    doc.para(
        f"Each arm against `{baseline}` (difference = arm - baseline; `comparisons.csv` has every column):"
    )
    people = _race_table_for_people if raced_rows else _table_for_people
    doc.table(people(comparisons, alpha))
    planning = planning_table(values, comparisons, metric, alpha)
    doc.para(
        "Planning: seeds per arm needed to detect a difference of the given size with 80% power at "
        f"alpha = {alpha}, at the spread observed here (of the per-seed differences when paired):"
    )
    doc.table(planning)
    captions = {
        "forest": f"Each arm's difference from {baseline} in {metric} (point: mean difference, bar: the "
        "interval of the table above, dashed line: no difference); "
        + (
            "filled and red: decided better or worse by the race (raced arms), significant after Holm "
            "(the others)."
            if raced_rows
            else "filled and red: significant after Holm."
        ),
        "race": (
            f"The race on {race.metric} against {race.baseline}: each arm's mean difference (point) and "
            "anytime-valid interval (bar) after each number of seed pairs; dashed: no difference"
            + (f", dotted: ±margin {race.margin:g}" if race.margin > 0 else "")
            + "; star: where the arm stopped, with its decision (no interval before the race's first "
            "look, at its min_seeds pairs)."
            if race is not None
            else ""
        ),
        "paired_seeds": f"{metric} per seed: a line from {baseline}'s value to each arm's on the same seed.",
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
    reused = reused_seeds(protocol, seeds)
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
