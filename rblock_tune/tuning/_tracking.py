"""A study's MLflow side: its experiment, one parent run per phase, one child run per trial.

The names and the layout are :mod:`rblock_tune.layout`'s. A retried or resumed trial finds its run
again (by trial id and parent), so it keeps one run, and logs only the epochs that run lacks: no
duplicates, no gaps.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from rblock_tune._stores import HEALTH_TIMEOUT_S, check_tracking_uri
from rblock_tune.layout import (
    ARM_TAG,
    ARMS_ARTIFACT,
    ARMS_KEYS,
    BEST_ARTIFACT,
    EPOCH_METRICS,
    EPOCHS_DONE_TAG,
    ERROR_TAG,
    FAILED,
    FAILED_STATUSES,
    FINAL_METRIC,
    NORMALISED_SPEC_ARTIFACT,
    ORPHANED_ERROR,
    PARENT_TAG,
    ROLE_STUDY,
    ROLE_TAG,
    RUNNING,
    SEED_TAG,
    SPEC_ARTIFACT,
    STATUS_TAG,
    STUDY_TAG,
    TRIAL_TAG,
)
from rblock_tune.tuning._spec import StudySpec
from rblock_tune.tuning._spec_record import spec_record

__all__ = [
    "TrialRun",
    "check_tracking",
    "ensure_experiment",
    "fail_orphan_runs",
    "find_or_create_parent",
    "find_run",
    "log_arms_record",
    "log_search_record",
    "set_run_status",
]

log = logging.getLogger(__name__)

# MLflow prints "View run ... at: URL" with the tracking URI as given, password included: never
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def check_tracking(uri: str, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """Fail fast with one line when tracking URI ``uri`` cannot be written (a garbage URI, a sqlite
    file in a missing directory, a server that does not answer ``/health``): :mod:`rblock_tune._stores`."""
    check_tracking_uri(uri, reading=False, timeout=timeout)


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``, created when missing (artifacts under ``artifact_location``;
    None lets a tracking server choose)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_location))


def find_run(client: MlflowClient, experiment_id: str, tags: Mapping[str, str]) -> str | None:
    """The id of a run of ``experiment_id`` with these tag values, or None."""
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = client.search_runs([experiment_id], filter_string=query, max_results=2)
    return str(runs[0].info.run_id) if runs else None


def find_or_create_parent(client: MlflowClient, experiment_id: str, study: str, role: str) -> str:
    """The parent run of one phase (``role`` = ``study`` or ``seeds``), reused on resume."""
    tags = {ROLE_TAG: role, STUDY_TAG: study}
    found = find_run(client, experiment_id, tags)
    if found is not None:
        return found
    name = f"{study}-search" if role == ROLE_STUDY else f"{study}-seeds"
    run = client.create_run(experiment_id, tags=tags, run_name=name)
    return str(run.info.run_id)


def set_run_status(client: MlflowClient, run_id: str, status: str) -> None:
    """Set the run's status tag and end the run (MLflow's FAILED for diverged and failed)."""
    client.set_tag(run_id, STATUS_TAG, status)
    client.set_terminated(run_id, "FAILED" if status in FAILED_STATUSES else "FINISHED")


def fail_orphan_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> int:
    """End as ``failed`` the child runs of a finished phase that are still ``running``; returns how many.

    Once Ray has finished a phase, every trial it knows has its final status; a run still
    ``running`` belongs to a trial that started just before a driver crash and that Ray's saved
    experiment state never recorded, so resume ran a new trial in its place.
    """
    query = f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{STATUS_TAG}` = '{RUNNING}'"
    runs = client.search_runs([experiment_id], filter_string=query, max_results=1000)
    for run in runs:
        client.set_tag(
            run.info.run_id,
            ERROR_TAG,
            ORPHANED_ERROR,
        )
        set_run_status(client, run.info.run_id, FAILED)
    return len(runs)


def log_search_record(
    client: MlflowClient, parent_run_id: str, spec: StudySpec, best: list[dict[str, Any]]
) -> None:
    """Log a finished search's artifacts on its parent run: the spec as written, the normalised spec
    and the best configurations (best first)."""
    artifacts = {
        SPEC_ARTIFACT: yaml.safe_dump(spec.raw, sort_keys=False),
        NORMALISED_SPEC_ARTIFACT: yaml.safe_dump(spec_record(spec), sort_keys=False),
        BEST_ARTIFACT: yaml.safe_dump(best, sort_keys=False),
    }
    for file_name, text in artifacts.items():
        client.log_text(parent_run_id, text, file_name)


def log_arms_record(
    client: MlflowClient,
    parent_run_id: str,
    *,
    arms: Mapping[str, Mapping[str, Any]],
    seeds: list[int],
    search_seeds: Mapping[str, list[int]],
    allow_search_seeds: bool,
) -> None:
    """Log a finished seed phase's arms, seeds and the search seeds they avoid on its parent run."""
    record = {
        "arms": {label: dict(overrides) for label, overrides in arms.items()},
        "seeds": [int(seed) for seed in seeds],
        "search_seeds": {study: [int(s) for s in used] for study, used in search_seeds.items()},
        "allow_search_seeds": bool(allow_search_seeds),
    }
    assert tuple(record) == ARMS_KEYS
    client.log_text(parent_run_id, yaml.safe_dump(record, sort_keys=False), ARMS_ARTIFACT)


_find = find_run
"""The name an earlier rblock-tune used: the status callback that version pickled into a phase's
``tuner.pkl`` looks it up, so an interrupted study of that version still resumes."""


class TrialRun:
    """The MLflow child run of one trial or seed run; found again after a retry or resume."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        *,
        study: str,
        role: str,
        trial_id: str,
        params: Mapping[str, Any],
        seed: int,
        arm: str | None = None,
    ) -> None:
        self.client = MlflowClient(tracking_uri=tracking_uri)
        tags = {PARENT_TAG: parent_run_id, TRIAL_TAG: trial_id}
        found = find_run(self.client, experiment_id, tags)
        if found is None:
            all_tags = {**tags, ROLE_TAG: role, STUDY_TAG: study, SEED_TAG: str(seed), STATUS_TAG: RUNNING}
            if arm is not None:
                all_tags[ARM_TAG] = arm
            run = self.client.create_run(experiment_id, tags=all_tags, run_name=f"{role}-{trial_id}")
            self.run_id = str(run.info.run_id)
            self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])
            self.logged: set[int] = set()
        else:
            self.run_id = found
            self.client.update_run(self.run_id, status="RUNNING")
            self.client.set_tag(self.run_id, STATUS_TAG, RUNNING)
            history = self.client.get_metric_history(self.run_id, "train_loss")
            self.logged = {int(m.step) for m in history}

    def log_epoch(self, record: Mapping[str, Any]) -> None:
        """Log one epoch record with step = epoch, unless this run already has that epoch."""
        epoch = int(record["epoch"])
        if epoch in self.logged:
            return
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(record[k]), now, epoch)
            for k in (*EPOCH_METRICS, FINAL_METRIC)
            if record.get(k) is not None
        ]
        self.client.log_batch(self.run_id, metrics=metrics, tags=[RunTag(EPOCHS_DONE_TAG, str(epoch))])
        self.logged.add(epoch)

    def finish(self, status: str) -> None:
        """Set the final status and end the run."""
        set_run_status(self.client, self.run_id, status)
