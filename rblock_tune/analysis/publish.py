"""The report's answer, on the study's own MLflow records: what a reviewer opens from the MLflow UI.

:func:`publish_report` puts a written report (:func:`~rblock_tune.analysis.write_report`) on the
parent run of the phase it compared (the seeds parent; the search parent for a study without a
seed phase): per arm the mean of the compared metric, the difference from the baseline with its
interval and the decision, as metrics and tags; the files the report wrote (HTML, Markdown, CSVs,
figures) as artifacts under :data:`~rblock_tune.layout.REPORT_ARTIFACT_DIR`; and a results table at the
top of the run's description. Publishing again (a report written anew) replaces the table, the
baseline and the decisions (an arm's decision it no longer has is removed), gives each metric a new
value (MLflow keeps a metric's history; its latest value is the one shown) and overwrites the files.

For an arm whose interval is a race's (:func:`~rblock_tune.analysis.race_record.is_raced`: the report
compared the race's metric against its baseline), the decision is the race's (``better``, ``worse``,
``equivalent`` or ``undecided``), the interval the race's, and no ``<arm>.p_holm`` is logged: the
fixed-n test is not valid after the race's stopping. A report of a raced seed phase against another
baseline or metric publishes its table and files but leaves the race's baseline, decisions and
per-arm metrics as they are.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Metric, RunTag

from rblock_tune.analysis._runs import runs_of
from rblock_tune.analysis.race_record import is_raced
from rblock_tune.analysis.report import fmt
from rblock_tune.analysis.report_document import ReportResult
from rblock_tune.layout import (
    BASELINE_TAG,
    DECISION_TAG_PREFIX,
    DESCRIPTION_TAG,
    METRIC_MODES,
    RACE_TAG,
    REPORT_ARTIFACT_DIR,
    ROLE_PARENT,
    arm_metric,
    parse_race_tag,
)

__all__ = ["RESULT_HEADING", "decision", "publish_report"]

log = logging.getLogger(__name__)

RESULT_HEADING = "#### Result"
"""Starts the part of a parent run's description that :func:`publish_report` writes: first, where
the run's page shows the description before its "Show more"."""


def decision(row: Any, mode: str | None) -> str:
    """``better``, ``worse`` or ``no difference``: the arm against the baseline at the report's
    significance (Holm-adjusted), in the metric's direction (``max`` or ``min``); ``higher`` or
    ``lower`` for a metric of no known direction (``None``: ``epoch_seconds``, say). A raced arm's
    (:func:`~rblock_tune.analysis.race_record.is_raced`) is the race's decision."""
    if is_raced(row):
        return str(row.decision)
    if not bool(row.significant) or not math.isfinite(float(row.mean_diff)):
        return "no difference"
    higher = float(row.mean_diff) > 0
    if mode is None:
        return "higher" if higher else "lower"
    return "better" if higher == (mode == "max") else "worse"


def _result_table(comparisons: pd.DataFrame, metric: str, baseline: str, mode: str | None) -> str:
    if any(is_raced(r) for r in comparisons.itertuples(index=False)):
        return _raced_result_table(comparisons, metric, baseline, mode)
    lines = [
        RESULT_HEADING
        + f": {metric} against `{baseline}` (artifact {REPORT_ARTIFACT_DIR}/report.html has it all)",
        "| arm | n | mean | difference [95% CI] | p (Holm) | decision |",
        "|---|---|---|---|---|---|",
    ]
    for r in comparisons.itertuples(index=False):
        lines.append(
            f"| {r.arm} | {r.n} | {fmt(r.mean_arm)} | {fmt(r.mean_diff)} [{fmt(r.ci_low)}, {fmt(r.ci_high)}] "
            f"| {fmt(r.p_holm)} | {decision(r, mode)} |"
        )
    return "\n".join(lines)


def _raced_result_table(comparisons: pd.DataFrame, metric: str, baseline: str, mode: str | None) -> str:
    """The result table of a report that took a race's intervals: the interval's method beside it."""
    lines = [
        RESULT_HEADING
        + f": {metric} against `{baseline}`, raced (artifact {REPORT_ARTIFACT_DIR}/report.html has it all)",
        "| arm | n (pairs) | mean | difference [interval] | interval | p (Holm) | decision |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in comparisons.itertuples(index=False):
        lines.append(
            f"| {r.arm} | {r.n} ({r.n_pairs}) | {fmt(r.mean_arm)} | {fmt(r.mean_diff)} [{fmt(r.ci_low)}, "
            f"{fmt(r.ci_high)}] | {r.interval} | {'-' if is_raced(r) else fmt(r.p_holm)} "
            f"| {decision(r, mode)} |"
        )
    return "\n".join(lines)


def publish_report(result: ReportResult, client: Any) -> str | None:
    """Put ``result`` on the parent run of the phase it compared (see the module docstring); that
    run's id, or None when the experiment has no such parent run (runs not made by a study).

    Args:
        result: a written report.
        client: an ``MlflowClient`` of the study's tracking URI.
    """
    runs = result.runs
    parents = runs.loc[runs_of(runs, result.phase, ROLE_PARENT), "run_id"]
    if not len(parents):
        return None
    run_id = str(parents.iloc[0])
    comparisons = result.comparisons
    metric = str(comparisons["metric"].iloc[0]) if len(comparisons) else "value"
    mode = METRIC_MODES.get(metric)
    step, now = 0, int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
    metrics: list[Metric] = []
    current = client.get_run(run_id).data.tags
    # a race's decisions are the race's: a report against another baseline or metric leaves them
    decides = RACE_TAG not in current or any(is_raced(r) for r in comparisons.itertuples(index=False))
    if not decides:
        log.warning(
            "the seed phase was a race against %s: its decision tags stay; this report (against %s) "
            "publishes its table and files only",
            parse_race_tag(current[RACE_TAG]).get("baseline", "its baseline"),
            result.baseline,
        )
    tags = [RunTag(BASELINE_TAG, result.baseline)] if decides else []
    for r in comparisons.itertuples(index=False):
        arm = str(r.arm)
        values = {
            arm_metric(arm, f"mean_{metric}"): r.mean_arm,
            arm_metric(arm, "diff"): r.mean_diff,
            arm_metric(arm, "ci_low"): r.ci_low,
            arm_metric(arm, "ci_high"): r.ci_high,
        }
        if not is_raced(r):  # a raced arm has no valid fixed-n test
            values[arm_metric(arm, "p_holm")] = r.p_holm
        if decides:
            metrics += [Metric(k, float(v), now, step) for k, v in values.items() if _finite(v)]
            tags.append(RunTag(DECISION_TAG_PREFIX + str(r.arm), decision(r, mode)))
    if len(comparisons) and decides:
        base_mean = comparisons["mean_baseline"].iloc[0]
        if _finite(base_mean):
            metrics.append(Metric(arm_metric(result.baseline, f"mean_{metric}"), float(base_mean), now, step))
    decided = {tag.key for tag in tags}
    for key in current:  # an arm the new report does not have keeps no decision
        if decides and key.startswith(DECISION_TAG_PREFIX) and key not in decided:
            client.delete_tag(run_id, key)
    described = current.get(DESCRIPTION_TAG, "")
    if described.startswith(RESULT_HEADING):  # published before: replaced
        described = described.partition("\n\n")[2]
    table = _result_table(comparisons, metric, result.baseline, mode)
    tags.append(RunTag(DESCRIPTION_TAG, f"{table}\n\n{described}" if described else table))
    client.log_batch(run_id, metrics=metrics, tags=tags)
    for path in _written_files(result):  # what this report wrote, not whatever else is in its folder
        folder = path.parent.relative_to(result.out).as_posix()
        client.log_artifact(
            run_id, str(path), REPORT_ARTIFACT_DIR if folder == "." else f"{REPORT_ARTIFACT_DIR}/{folder}"
        )
    return run_id


def _written_files(result: ReportResult) -> list[Path]:
    """The files :func:`~rblock_tune.analysis.write_report` wrote for ``result``."""
    tables = [result.out / name for name in ("comparisons.csv", "runs.csv")]
    files = [result.html, result.markdown, *tables, *result.figures.values()]
    return [Path(f) for f in files if Path(f).is_file()]


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
