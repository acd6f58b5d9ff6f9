"""The study's answer on its MLflow parent runs (:mod:`rblock_tune.analysis.publish`), read back
through MLflow's own client on the session's real tiny study, and the decision rule on its own."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from rblock_tune.analysis.publish import BASELINE_TAG, RESULT_HEADING, decision
from rblock_tune.cli import main
from rblock_tune.layout import (
    DECISION_TAG_PREFIX,
    DESCRIPTION_TAG,
    PHASE_SEARCH,
    PHASE_SEEDS,
    PHASE_TAG,
    REPORT_ARTIFACT_DIR,
    ROLE_PARENT,
    ROLE_TAG,
    STUDY_TAG,
)

pytestmark = pytest.mark.slow  # the session's tiny study (Ray)


def _parent(client: MlflowClient, study: str, phase: str) -> Any:
    experiment = client.get_experiment_by_name(study)
    assert experiment is not None
    query = (
        f"tags.`{ROLE_TAG}` = '{ROLE_PARENT}' and tags.`{PHASE_TAG}` = '{phase}' "
        f"and tags.`{STUDY_TAG}` = '{study}'"
    )
    (run,) = client.search_runs([experiment.experiment_id], filter_string=query)
    return run


def test_the_seeds_parent_run_carries_the_reports_answer(tiny_study: Any) -> None:
    client = MlflowClient(tracking_uri=tiny_study.tracking_uri)
    parent = _parent(client, tiny_study.name, PHASE_SEEDS)
    comparisons = pd.read_csv(tiny_study.report / "comparisons.csv")
    baseline = str(comparisons["baseline"].iloc[0])
    assert parent.data.tags[BASELINE_TAG] == baseline == "dropblock"
    metrics, tags = parent.data.metrics, parent.data.tags
    assert metrics[f"{baseline}.mean_test_acc"] == pytest.approx(comparisons["mean_baseline"].iloc[0])
    for row in comparisons.itertuples(index=False):
        assert metrics[f"{row.arm}.mean_test_acc"] == pytest.approx(row.mean_arm)
        assert metrics[f"{row.arm}.diff"] == pytest.approx(row.mean_diff)
        assert metrics[f"{row.arm}.ci_low"] == pytest.approx(row.ci_low)
        assert metrics[f"{row.arm}.ci_high"] == pytest.approx(row.ci_high)
        assert tags[DECISION_TAG_PREFIX + row.arm] == decision(row, "max")
    assert {row.arm for row in comparisons.itertuples()} == {"top1", "none"}
    # the description: the result table first (the page shows it before "Show more"), then the arms
    # (the seed phase wrote them)
    description = tags[DESCRIPTION_TAG]
    assert description.startswith(RESULT_HEADING)
    result_part, arms_part = description.split("\n\n", 1)
    assert "- **top1**: " in arms_part and "- **dropblock**: dropblock p=0.1 b=3" in arms_part
    assert "| top1 |" in result_part and "| none |" in result_part
    # the report itself, opened from the run's artifacts
    listed = {a.path for a in client.list_artifacts(parent.info.run_id, REPORT_ARTIFACT_DIR)}
    assert {f"{REPORT_ARTIFACT_DIR}/{n}" for n in ("report.html", "comparisons.csv", "runs.csv")} <= listed
    figures = client.list_artifacts(parent.info.run_id, f"{REPORT_ARTIFACT_DIR}/figures")
    assert {Path(a.path).name for a in figures} >= {"forest.png", "paired_seeds.png"}
    # the search parent: the best configuration and its value
    search = _parent(client, tiny_study.name, PHASE_SEARCH)
    assert search.data.metrics["best_val_acc"] > 0
    assert {"rblock.best.reg.variant", "rblock.best.reg.alpha", "rblock.best.reg.drop_prob"} <= set(
        search.data.tags
    )


def test_publishing_again_replaces_the_result(tiny_study: Any, tmp_path: Path, capsys: Any) -> None:
    """``report --publish`` (a report made anew, here with another baseline) replaces the decisions
    and the result table instead of appending a second one."""
    code = main(
        ["report", "--experiment", tiny_study.name, "--workdir", str(tiny_study.workdir), "--out",
         str(tmp_path / "rep"), "--baseline", "none", "--resamples", "200", "--publish"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "published: run " in out
    client = MlflowClient(tracking_uri=tiny_study.tracking_uri)
    parent = _parent(client, tiny_study.name, PHASE_SEEDS)
    try:
        assert parent.data.tags[BASELINE_TAG] == "none"
        assert parent.data.tags[DESCRIPTION_TAG].count(RESULT_HEADING) == 1
        assert "against `none`" in parent.data.tags[DESCRIPTION_TAG]
        assert DECISION_TAG_PREFIX + "dropblock" in parent.data.tags
        assert DECISION_TAG_PREFIX + "none" not in parent.data.tags  # the baseline now: no decision
    finally:  # the session's study as the other tests expect it: its own report (same settings, same
        # bootstrap seed: the same numbers) published again, from a copy outside the study's folder
        assert main(["report", "--experiment", tiny_study.name, "--workdir", str(tiny_study.workdir),
                     "--out", str(tmp_path / "again"), "--publish"]) == 0  # fmt: skip
        capsys.readouterr()


@pytest.mark.parametrize(
    ("diff", "significant", "mode", "expected"),
    [
        (0.02, True, "max", "better"),
        (-0.02, True, "max", "worse"),
        (0.02, True, "min", "worse"),  # a loss that went up
        (-0.02, True, "min", "better"),
        (0.02, False, "max", "no difference"),
        (float("nan"), True, "max", "no difference"),
    ],
)
def test_decision_follows_significance_and_the_metrics_direction(
    diff: float, significant: bool, mode: str, expected: str
) -> None:
    assert decision(SimpleNamespace(mean_diff=diff, significant=significant), mode) == expected
