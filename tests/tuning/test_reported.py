"""What a trial reports to Ray: the epoch, the metrics the driver reads, the run; nothing else.

Every metric of an epoch goes to the trial's MLflow run; Ray keeps, in the driver, summaries of each
key of every result of every trial (its ``Trial`` objects), so a result carries only what the
driver reads (see docs/benchmarks.md on the driver's memory)."""

from __future__ import annotations

import math
from typing import Any

from rblock_tune.layout import PHASE_SEARCH, PHASE_SEEDS, RESULT_RUN_ID
from rblock_tune.tuning import spec_from_dict
from rblock_tune.tuning._entry import TrialContext
from rblock_tune.tuning._phases import reported_metrics
from rblock_tune.tuning._trainable import _result

RECORD = {
    "epoch": 3,
    "train_loss": 1.2,
    "train_acc": 0.5,
    "val_loss": 1.4,
    "val_acc": 0.45,
    "test_acc": 0.44,
    "epoch_seconds": 2.5,
    "lr": 0.05,
    "device": "cpu",
}
BASE = {
    "data": {"name": "synthetic", "synthetic_size": 64, "val_size": 16},
    "model": {"name": "resnet8"},
    "train": {"epochs": 1, "device": "cpu"},
}


def _context(metric: str = "val_acc", reported: tuple[str, ...] = ()) -> TrialContext:
    return TrialContext(
        study="s",
        phase=PHASE_SEARCH,
        base={},
        epochs=4,
        metric=metric,
        mode="max",
        tracking_uri="sqlite:///unused.db",
        experiment_id="0",
        parent_run_id="p",
        state_uri="/unused",
        reported=reported,
    )


def test_a_result_carries_the_epoch_the_metric_and_the_run_only() -> None:
    assert _result(RECORD, _context(), "run-1") == {
        "epoch": 3,
        "val_acc": 0.45,
        RESULT_RUN_ID: "run-1",
        "diverged": 0,
    }


def test_a_metric_the_record_lacks_is_nan_and_a_reported_one_is_left_out() -> None:
    record = {k: v for k, v in RECORD.items() if k not in ("val_loss", "test_acc")}
    result = _result(record, _context("val_loss", ("test_acc",)), "run-1")
    assert math.isnan(result["val_loss"]) and "test_acc" not in result
    assert _result(RECORD, _context("val_loss", ("test_acc",)), "r")["test_acc"] == 0.44


def _spec(**overrides: Any) -> Any:
    return spec_from_dict({"name": "s", "base": BASE, "space": {"reg.drop_prob": [0.1, 0.2]}, **overrides})


def test_a_racing_seed_phase_reports_its_metric_and_no_other_phase_more_than_the_studys() -> None:
    arms = {"top_k": 0, "arms": [{"label": "a", "set": {}}, {"label": "b", "set": {"reg.variant": "none"}}]}
    race = _spec(seeds={**arms, "race": {"min_seeds": 2, "max_seeds": 3}}, report={"baseline": "a"})
    assert reported_metrics(race, PHASE_SEEDS) == ("test_acc",)  # the report's metric by default
    assert reported_metrics(race, PHASE_SEARCH) == ()
    fixed = _spec(seeds={**arms, "n_seeds": 2})
    assert reported_metrics(fixed, PHASE_SEEDS) == ()
    same = _spec(seeds={**arms, "race": {"min_seeds": 2}}, report={"baseline": "a", "metric": "val_acc"})
    assert reported_metrics(same, PHASE_SEEDS) == ()
