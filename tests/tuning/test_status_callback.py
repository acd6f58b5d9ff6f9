"""The driver's status callback: the final status of a trial's MLflow run, and when it writes nothing.

A trial ends its own run before its last result goes to Ray and says so in that result
(``RESULT_RUN_ENDED``); the driver then makes no MLflow call for it. ASHA's stops and errors are seen
only by the driver. The runs are made by the trial's own writer (``TrialRun``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from mlflow.tracking import MlflowClient

from rblock_tune.config import config_from_dict
from rblock_tune.layout import (
    COMPLETED,
    DIVERGED,
    EARLY_STOPPED,
    FAILED,
    RESULT_RUN_ENDED,
    RUNNING,
    STATUS_TAG,
)
from rblock_tune.tuning._phases import _StatusCallback
from rblock_tune.tuning._tracking import TrialRun, ensure_experiment, find_or_create_parent, read_run_log

CONFIG = config_from_dict({"data": {"name": "synthetic"}, "model": {"name": "resnet8"}})


@pytest.fixture
def store(tmp_path: Path) -> dict[str, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = ensure_experiment(client, "cb", (tmp_path / "artifacts").as_uri())
    parent = find_or_create_parent(client, experiment, "cb", "search")
    return {"uri": uri, "experiment": experiment, "parent": parent}


def _run(store: dict[str, str], trial_id: str) -> TrialRun:
    run = TrialRun(
        store["uri"],
        store["experiment"],
        store["parent"],
        study="cb",
        phase="search",
        trial_id=trial_id,
        config=CONFIG,
        arm="search",
        run_name=f"trial-000 {trial_id}",
    )
    run.log_epoch({"epoch": 1, "train_loss": 1.0, "val_acc": 0.3})
    return run


def _callback(store: dict[str, str], budget: int = 2) -> _StatusCallback:
    return _StatusCallback(store["uri"], store["experiment"], store["parent"], budget)


def _trial(trial_id: str, **last: Any) -> Any:
    return SimpleNamespace(trial_id=trial_id, last_result=last)


def _status(store: dict[str, str], run: TrialRun) -> tuple[str, str]:
    info = MlflowClient(tracking_uri=store["uri"]).get_run(run.run_id)
    return info.data.tags[STATUS_TAG], info.info.status


def test_a_trial_that_ended_its_run_costs_the_driver_no_mlflow_call(store: dict[str, str]) -> None:
    run = _run(store, "t1")
    run.finish(COMPLETED, {"epoch": 2, "train_loss": 0.9, "val_acc": 0.4})
    callback = _callback(store)
    with mock.patch("rblock_tune.tuning._phases.MlflowClient", side_effect=AssertionError("MLflow called")):
        callback.on_trial_complete(0, [], _trial("t1", epoch=2, val_acc=0.4, **{RESULT_RUN_ENDED: 1}))
    assert _status(store, run) == (COMPLETED, "FINISHED")
    log = read_run_log(MlflowClient(tracking_uri=store["uri"]), run.run_id)
    assert log.count("finished: completed") == 1 and log.rstrip().endswith("finished: completed")
    assert log.index("epoch 2:") < log.index("finished: completed")


def test_the_last_epoch_and_the_status_go_in_one_batch(store: dict[str, str]) -> None:
    run = _run(store, "t1")
    client = MlflowClient(tracking_uri=store["uri"])
    with mock.patch.object(run.client, "set_tag", wraps=run.client.set_tag) as set_tag:
        run.finish(COMPLETED, {"epoch": 2, "train_loss": 0.9, "val_acc": 0.4})
    assert set_tag.call_count == 0  # the status went with the epoch's metrics
    assert [m.step for m in client.get_metric_history(run.run_id, "train_loss")] == [1, 2]
    assert _status(store, run) == (COMPLETED, "FINISHED") and run.ended


def test_a_trial_asha_stopped_is_marked_by_the_driver(store: dict[str, str]) -> None:
    run = _run(store, "t2")
    _callback(store).on_trial_complete(0, [], _trial("t2", epoch=1, val_acc=0.3))
    assert _status(store, run) == (EARLY_STOPPED, "FINISHED")
    client = MlflowClient(tracking_uri=store["uri"])
    assert "[stopped 1/2]" in client.get_run(run.run_id).info.run_name
    assert "ASHA stopped it after epoch 1 of 2" in read_run_log(client, run.run_id)


def test_an_error_after_the_trial_ended_its_run_completed_marks_it_failed(store: dict[str, str]) -> None:
    run = _run(store, "t3")
    run.finish(COMPLETED, {"epoch": 2, "train_loss": 0.9, "val_acc": 0.4})  # then its last report failed
    _callback(store).on_trial_error(0, [], _trial("t3", epoch=1))
    assert _status(store, run) == (FAILED, "FAILED")


def test_a_diverged_run_stays_diverged_whatever_ray_says(store: dict[str, str]) -> None:
    run = _run(store, "t4")
    run.finish(DIVERGED)
    callback = _callback(store)
    callback.on_trial_error(0, [], _trial("t4", epoch=1))
    callback.on_trial_complete(0, [], _trial("t4", epoch=1, diverged=1))
    assert _status(store, run) == (DIVERGED, "FAILED")


def test_a_run_still_running_when_its_trial_ends_is_completed_by_the_driver(store: dict[str, str]) -> None:
    run = _run(store, "t5")
    assert _status(store, run)[0] == RUNNING
    _callback(store).on_trial_complete(0, [], _trial("t5", epoch=2, val_acc=0.4))
    assert _status(store, run) == (COMPLETED, "FINISHED")
    assert (
        read_run_log(MlflowClient(tracking_uri=store["uri"]), run.run_id)
        .rstrip()
        .endswith("finished: completed")
    )
