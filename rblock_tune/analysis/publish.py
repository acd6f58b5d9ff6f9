"""The report's answer, on the study's own MLflow records: what a reviewer opens from the MLflow UI.

:func:`publish_report` puts a written report (:func:`~rblock_tune.analysis.write_report`) on the
parent run of the phase it compared (the seeds parent; the search parent for a study without a
seed phase): per arm the mean of the compared metric, the difference from the baseline with its
interval and the decision, as metrics and tags; the report's files (HTML, Markdown, CSVs, figures)
as artifacts under :data:`~rblock_tune.layout.REPORT_ARTIFACT_DIR`; and a results table at the top of
the run's description. Publishing again (a report written anew) replaces all of it.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from mlflow.entities import Metric, RunTag

from rblock_tune.analysis._runs import runs_of
from rblock_tune.analysis.report import fmt
from rblock_tune.analysis.report_document import ReportResult
from rblock_tune.layout import (
    DECISION_TAG_PREFIX,
    DESCRIPTION_TAG,
    METRIC_MODES,
    REPORT_ARTIFACT_DIR,
    ROLE_PARENT,
)

__all__ = ["BASELINE_TAG", "RESULT_HEADING", "decision", "publish_report"]

BASELINE_TAG = "rblock.baseline"
"""Tag of the published parent run: the arm every other arm was compared with."""
RESULT_HEADING = "#### Result"
"""Starts the part of a parent run's description that :func:`publish_report` writes: first, where
the run's page shows the description before its "Show more"."""


def decision(row: Any, mode: str) -> str:
    """``better``, ``worse`` or ``no difference``: the arm against the baseline at the report's
    significance (Holm-adjusted), in the metric's direction (``max`` or ``min``)."""
    if not bool(row.significant) or not math.isfinite(float(row.mean_diff)):
        return "no difference"
    higher = float(row.mean_diff) > 0
    return "better" if higher == (mode == "max") else "worse"


def _result_table(comparisons: pd.DataFrame, metric: str, baseline: str, mode: str) -> str:
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
    mode = METRIC_MODES.get(metric, "max")
    step, now = 0, int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
    metrics: list[Metric] = []
    tags = [RunTag(BASELINE_TAG, result.baseline)]
    for r in comparisons.itertuples(index=False):
        values = {
            f"{r.arm}.mean_{metric}": r.mean_arm,
            f"{r.arm}.diff": r.mean_diff,
            f"{r.arm}.ci_low": r.ci_low,
            f"{r.arm}.ci_high": r.ci_high,
            f"{r.arm}.p_holm": r.p_holm,
        }
        metrics += [Metric(k, float(v), now, step) for k, v in values.items() if _finite(v)]
        tags.append(RunTag(DECISION_TAG_PREFIX + str(r.arm), decision(r, mode)))
    if len(comparisons):
        base_mean = comparisons["mean_baseline"].iloc[0]
        if _finite(base_mean):
            metrics.append(Metric(f"{result.baseline}.mean_{metric}", float(base_mean), now, step))
    described = client.get_run(run_id).data.tags.get(DESCRIPTION_TAG, "")
    if described.startswith(RESULT_HEADING):  # published before: replaced
        described = described.partition("\n\n")[2]
    table = _result_table(comparisons, metric, result.baseline, mode)
    tags.append(RunTag(DESCRIPTION_TAG, f"{table}\n\n{described}" if described else table))
    client.log_batch(run_id, metrics=metrics, tags=tags)
    client.log_artifacts(run_id, str(result.out), REPORT_ARTIFACT_DIR)
    return run_id


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
