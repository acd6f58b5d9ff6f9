"""Analysis of studies: MLflow runs as a table, multi-seed statistics, figures and the report.

Typical use (or ``rblock-tune report --experiment NAME``)::

    from rblock_tune.analysis import load_runs, compare_arms
    runs = load_runs("quickstart", "sqlite:///rblock_runs/mlflow.db")
    seeds = runs[(runs.phase == "seeds") & (runs.role == "trial") & (runs.status == "completed")]
    compare_arms(seeds, baseline="dropblock", metric="test_acc")
"""

from rblock_tune.analysis._runs import (
    TAG_COLUMNS,
    load_artifact_text,
    load_histories,
    load_runs,
    parse_value,
    runs_of,
)
from rblock_tune.analysis.comparison import COMPARISON_COLUMNS, compare_arms, summarize_arms
from rblock_tune.analysis.effects import bootstrap_diff_ci, hedges_g, prob_improvement
from rblock_tune.analysis.pvalues import holm
from rblock_tune.analysis.report import (
    BASELINE_PREFERENCE,
    RATE_MISMATCH,
    Protocol,
    choose_baseline,
    comparison_values,
    param_importances,
    planning_table,
    read_protocol,
    realised_rates,
)
from rblock_tune.analysis.report_document import ReportResult, write_report
from rblock_tune.analysis.sample_size import power, seeds_needed
from rblock_tune.racing import DECISIONS, RACE_COLUMNS, race_step

__all__ = [
    "BASELINE_PREFERENCE",
    "COMPARISON_COLUMNS",
    "DECISIONS",
    "RACE_COLUMNS",
    "RATE_MISMATCH",
    "TAG_COLUMNS",
    "Protocol",
    "ReportResult",
    "bootstrap_diff_ci",
    "choose_baseline",
    "compare_arms",
    "comparison_values",
    "hedges_g",
    "holm",
    "load_artifact_text",
    "load_histories",
    "load_runs",
    "param_importances",
    "parse_value",
    "planning_table",
    "power",
    "prob_improvement",
    "race_step",
    "read_protocol",
    "realised_rates",
    "runs_of",
    "seeds_needed",
    "summarize_arms",
    "write_report",
]
