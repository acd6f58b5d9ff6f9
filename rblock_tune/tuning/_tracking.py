"""MLflow layout of a study (other tools and the analysis read it).

Experiment = the study name. One parent run per phase, tagged ``rblock.role`` =
``study`` or ``seeds``; one child run per trial or seed run (tag ``mlflow.parentRunId``),
tagged ``rblock.role`` = ``trial`` or ``seed_run``, ``rblock.study``, ``rblock.trial_id``,
``rblock.seed``, ``rblock.arm`` (seed phase) and ``rblock.status`` (``running``,
``completed``, ``early_stopped``, ``diverged``, ``failed``). Params: the resolved trial
config with dotted keys. Metrics: every epoch record with step = epoch; ``test_acc`` after
the last epoch. A retried or resumed trial finds its run again (by trial id and parent),
so it keeps one run, and logs only the epochs that run lacks: no duplicates, no gaps.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from rblock_tune.errors import ConfigError

__all__ = [
    "ROLE_TAG",
    "STATUS_TAG",
    "TrialRun",
    "check_tracking",
    "ensure_experiment",
    "fail_orphan_runs",
    "find_or_create_parent",
    "set_run_status",
]

log = logging.getLogger(__name__)

ROLE_TAG = "rblock.role"
STATUS_TAG = "rblock.status"
STUDY_TAG = "rblock.study"
TRIAL_TAG = "rblock.trial_id"
SEED_TAG = "rblock.seed"
ARM_TAG = "rblock.arm"
PARENT_TAG = "mlflow.parentRunId"
EPOCH_METRICS = (
    "train_loss", "train_ce", "train_kl", "train_acc", "drop_rate", "drop_rate_a", "drop_rate_b",
    "val_loss", "val_acc", "lr", "drop_prob", "consistency_kl_own", "consistency_kl_probe",
    "epoch_seconds", "images_per_second",
)  # fmt: skip


def check_tracking(uri: str, timeout: float = 5.0) -> None:
    """Fail fast with one line when an HTTP tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status >= 400:
                raise ConfigError(f"tracking server {uri} answered HTTP {response.status} on /health")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(
            f"tracking server {uri} is unreachable ({reason}); start it (mlflow server ...) or pass "
            "another --tracking-uri"
        ) from None


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``, created when missing (artifacts under ``artifact_location``;
    None lets a tracking server choose)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_location))


def _find(client: MlflowClient, experiment_id: str, tags: Mapping[str, str]) -> str | None:
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = client.search_runs([experiment_id], filter_string=query, max_results=2)
    return str(runs[0].info.run_id) if runs else None


def find_or_create_parent(client: MlflowClient, experiment_id: str, study: str, role: str) -> str:
    """The parent run of one phase (``role`` = ``study`` or ``seeds``), reused on resume."""
    tags = {ROLE_TAG: role, STUDY_TAG: study}
    found = _find(client, experiment_id, tags)
    if found is not None:
        return found
    name = f"{study}-search" if role == "study" else f"{study}-seeds"
    run = client.create_run(experiment_id, tags=tags, run_name=name)
    return str(run.info.run_id)


def set_run_status(client: MlflowClient, run_id: str, status: str) -> None:
    """Set ``rblock.status`` and end the run (FAILED for diverged/failed)."""
    client.set_tag(run_id, STATUS_TAG, status)
    client.set_terminated(run_id, "FAILED" if status in ("diverged", "failed") else "FINISHED")


def fail_orphan_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> int:
    """End as ``failed`` the child runs of a finished phase that are still ``running``; returns how many.

    Once Ray has finished a phase, every trial it knows has its final status; a run still
    ``running`` belongs to a trial that started just before a driver crash and that Ray's saved
    experiment state never recorded, so resume ran a new trial in its place.
    """
    query = f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{STATUS_TAG}` = 'running'"
    runs = client.search_runs([experiment_id], filter_string=query, max_results=1000)
    for run in runs:
        client.set_tag(
            run.info.run_id,
            "rblock.error",
            "orphaned: the driver stopped before Ray recorded this trial; resume ran another trial instead",
        )
        set_run_status(client, run.info.run_id, "failed")
    return len(runs)


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
        found = _find(self.client, experiment_id, tags)
        if found is None:
            all_tags = {**tags, ROLE_TAG: role, STUDY_TAG: study, SEED_TAG: str(seed), STATUS_TAG: "running"}
            if arm is not None:
                all_tags[ARM_TAG] = arm
            run = self.client.create_run(experiment_id, tags=all_tags, run_name=f"{role}-{trial_id}")
            self.run_id = str(run.info.run_id)
            self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])
            self.logged: set[int] = set()
        else:
            self.run_id = found
            self.client.update_run(self.run_id, status="RUNNING")
            self.client.set_tag(self.run_id, STATUS_TAG, "running")
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
            for k in (*EPOCH_METRICS, "test_acc")
            if record.get(k) is not None
        ]
        self.client.log_batch(self.run_id, metrics=metrics, tags=[RunTag("rblock.epochs_done", str(epoch))])
        self.logged.add(epoch)

    def finish(self, status: str) -> None:
        """Set the final status and end the run."""
        set_run_status(self.client, self.run_id, status)
