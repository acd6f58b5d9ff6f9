"""A study's MLflow side: its experiment, one parent run per phase, one child run per trial.

The names and the layout are :mod:`rblock_tune.layout`'s. A retried or resumed trial finds its run
again (by trial id and parent), so it keeps one run, and logs only the epochs that run lacks: no
duplicates, no gaps; its log artifact gets each attempt appended.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mlflow.artifacts
import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from rblock_tune._stores import HEALTH_TIMEOUT_S, check_tracking_uri
from rblock_tune.config import TrialConfig, config_to_dict, describe_config, flatten_config, not_applicable
from rblock_tune.layout import (
    ARM_CONFIG_TAG,
    ARM_TAG,
    ARMS_ARTIFACT,
    ARMS_KEYS,
    BEST_ARTIFACT,
    BEST_TAG_PREFIX,
    DESCRIPTION_TAG,
    EPOCH_METRICS,
    EPOCHS_DONE_TAG,
    ERROR_TAG,
    FAILED,
    FAILED_STATUSES,
    FINAL_METRIC,
    LEGACY_ROLES,
    NORMALISED_SPEC_ARTIFACT,
    NOT_APPLICABLE_TAG,
    OPTUNA_TRIAL_TAG,
    ORPHANED_ERROR,
    PARENT_TAG,
    PHASE_TAG,
    ROLE_PARENT,
    ROLE_TAG,
    ROLE_TRIAL,
    RUN_CONFIG_ARTIFACT,
    RUN_LOG_ARTIFACT,
    RUNNING,
    SEED_TAG,
    SPEC_ARTIFACT,
    STATUS_TAG,
    STUDY_TAG,
    TRIAL_TAG,
    VARIANT_TAG,
    best_metric,
    parent_arm,
    parent_run_name,
)
from rblock_tune.tuning._spec import StudySpec
from rblock_tune.tuning._spec_record import spec_record

__all__ = [
    "RunLogHandler",
    "TrialRun",
    "append_to_log",
    "check_tracking",
    "describe_parent",
    "ensure_experiment",
    "fail_orphan_runs",
    "find_or_create_parent",
    "find_run",
    "find_runs",
    "log_arms_record",
    "log_search_record",
    "set_run_status",
]

log = logging.getLogger(__name__)
# the driver reads and appends trial logs and writes race looks: no MLflow progress bars on the terminal
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

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


def _tag_query(tags: Mapping[str, str]) -> str:
    return " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())


def find_run(client: MlflowClient, experiment_id: str, tags: Mapping[str, str]) -> str | None:
    """The id of a run of ``experiment_id`` with these tag values, or None."""
    runs = client.search_runs([experiment_id], filter_string=_tag_query(tags), max_results=2)
    return str(runs[0].info.run_id) if runs else None


def find_runs(client: MlflowClient, experiment_id: str, tags: Mapping[str, str]) -> list[str]:
    """The ids of every run of ``experiment_id`` with these tag values (a fused trial has one run
    per member, all with the trial's tag)."""
    ids: list[str] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=_tag_query(tags), max_results=1000, page_token=token
        )
        ids += [str(run.info.run_id) for run in page]
        token = page.token
        if not token:
            return ids


def find_or_create_parent(client: MlflowClient, experiment_id: str, study: str, phase: str) -> str:
    """The parent run of one phase (``search`` or ``seeds``), reused on resume; a parent run of the
    earlier layout (:data:`~rblock_tune.layout.LEGACY_ROLES`) gets this layout's tags and name."""
    tags = {ROLE_TAG: ROLE_PARENT, PHASE_TAG: phase, STUDY_TAG: study}
    found = find_run(client, experiment_id, tags)
    if found is not None:
        return found
    tags[ARM_TAG] = parent_arm(phase)  # not a search key: a parent of this layout has it from the start
    legacy = next(old for old, new in LEGACY_ROLES.items() if new == (ROLE_PARENT, phase))
    found = find_run(client, experiment_id, {ROLE_TAG: legacy, STUDY_TAG: study})
    if found is not None:
        client.log_batch(found, tags=[RunTag(k, v) for k, v in tags.items()])
        client.update_run(found, name=parent_run_name(study, phase))
        return found
    run = client.create_run(experiment_id, tags=tags, run_name=parent_run_name(study, phase))
    return str(run.info.run_id)


def describe_parent(client: MlflowClient, run_id: str, text: str) -> None:
    """Set a parent run's description (Markdown, shown on its page in the MLflow UI)."""
    client.set_tag(run_id, DESCRIPTION_TAG, text)


def set_run_status(client: MlflowClient, run_id: str, status: str) -> None:
    """Set the run's status tag and end the run (MLflow's FAILED for diverged and failed)."""
    client.set_tag(run_id, STATUS_TAG, status)
    client.set_terminated(run_id, _mlflow_status(status))


def _mlflow_status(status: str) -> str:
    """MLflow's end status of a run of ``status``: FAILED for diverged and failed, else FINISHED."""
    return "FAILED" if status in FAILED_STATUSES else "FINISHED"


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
    client: MlflowClient,
    parent_run_id: str,
    spec: StudySpec,
    best: list[dict[str, Any]],
    best_run: str | None = None,
) -> None:
    """Log a finished search's record on its parent run: the spec as written, the normalised spec
    and the best configurations (best first) as artifacts; the best configuration as tags
    ``rblock.best.<key>``, its value as the metric ``best_<metric>``, and a description naming the
    best trial's run (``best_run``)."""
    artifacts = {
        SPEC_ARTIFACT: yaml.safe_dump(spec.raw, sort_keys=False),
        NORMALISED_SPEC_ARTIFACT: yaml.safe_dump(spec_record(spec), sort_keys=False),
        BEST_ARTIFACT: yaml.safe_dump(best, sort_keys=False),
    }
    for file_name, text in artifacts.items():
        client.log_text(parent_run_id, text, file_name)
    if not best:
        describe_parent(client, parent_run_id, f"Search of study {spec.name}: no trial completed.")
        return
    top = best[0]
    tags = [RunTag(BEST_TAG_PREFIX + key, str(value)) for key, value in top["overrides"].items()]
    value = top.get(spec.metric)
    now = int(time.time() * 1000)
    metrics = [] if value is None else [Metric(best_metric(spec.metric), float(value), now, 0)]
    client.log_batch(parent_run_id, metrics=metrics, tags=tags)
    shown = ", ".join(f"{k}={v}" for k, v in top["overrides"].items()) or "the base config"
    where = f" (run {best_run})" if best_run else ""
    describe_parent(
        client,
        parent_run_id,
        f"Search of study {spec.name}: best {spec.metric} {value} with {shown}{where}. "
        f"The seed phase's arm top1 re-runs it; {BEST_ARTIFACT} lists the top configurations.",
    )


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


def _run_params(config: TrialConfig) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The params of a run of ``config`` (what was built) and the keys left out as not applying."""
    unused = not_applicable(config.reg)
    params = {**flatten_config(config), "model.shortcut": config.model.resolved_shortcut}
    return {k: v for k, v in params.items() if k not in unused}, unused


class TrialRun:
    """The MLflow child run of one trial or seed run; found again after a retry or resume.

    Args:
        phase: ``search`` or ``seeds``.
        config: the run's resolved trial config (its params, its ``config.yaml``).
        arm: the arm label (``search`` for search trials).
        run_name: the run's name in the MLflow table.
        shown_keys: dotted keys the one-line description names besides the R-Block values (the
            values a search sampled, an arm's overrides).
        optuna_trial: a search trial's Optuna trial number.
        member: a member of a fused trial (one Ray trial, one run per seed): the run is found again
            by its seed as well as its trial.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        *,
        study: str,
        phase: str,
        trial_id: str,
        config: TrialConfig,
        arm: str,
        run_name: str,
        shown_keys: Iterable[str] = (),
        optuna_trial: int | None = None,
        member: bool = False,
    ) -> None:
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.log_lines: list[str] = []
        self.ended = False  # whether finish() gave the run its final status in this attempt
        tags = {PARENT_TAG: parent_run_id, TRIAL_TAG: trial_id}
        if member:
            tags[SEED_TAG] = str(config.seed)
        found = find_run(self.client, experiment_id, tags)
        if found is None:
            params, unused = _run_params(config)
            all_tags = {
                **tags,
                SEED_TAG: str(config.seed),
                ROLE_TAG: ROLE_TRIAL,
                PHASE_TAG: phase,
                STUDY_TAG: study,
                ARM_TAG: arm,
                VARIANT_TAG: config.reg.variant,
                ARM_CONFIG_TAG: describe_config(config, shown_keys),
                NOT_APPLICABLE_TAG: ", ".join(unused),
                STATUS_TAG: RUNNING,
            }
            if optuna_trial is not None:
                all_tags[OPTUNA_TRIAL_TAG] = str(optuna_trial)
            run = self.client.create_run(experiment_id, tags=all_tags, run_name=run_name)
            self.run_id = str(run.info.run_id)
            self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])
            self.client.log_text(
                self.run_id, yaml.safe_dump(config_to_dict(config), sort_keys=False), RUN_CONFIG_ARTIFACT
            )
            self.logged: set[int] = set()
        else:
            self.run_id = found
            self.client.update_run(self.run_id, status="RUNNING")
            self.client.set_tag(self.run_id, STATUS_TAG, RUNNING)
            history = self.client.get_metric_history(self.run_id, "train_loss")
            self.logged = {int(m.step) for m in history}
            self.log_lines = self._earlier_log()
            self.note("resumed (a retry, or the study resumed)")

    def _earlier_log(self) -> list[str]:
        """The log the run's earlier attempts left, if any."""
        return read_run_log(self.client, self.run_id).splitlines()

    def note(self, line: str) -> None:
        """Add one line to the run's log (uploaded with the next epoch, or at the end)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.log_lines.append(f"{stamp} {line}")

    def upload_log(self) -> None:
        """Write the run's log artifact (the whole log so far)."""
        self.client.log_text(self.run_id, "\n".join(self.log_lines) + "\n", RUN_LOG_ARTIFACT)

    def log_epoch(self, record: Mapping[str, Any]) -> None:
        """Log one epoch record with step = epoch, unless this run already has that epoch."""
        if self._log_epoch(record):
            self.upload_log()

    def _log_epoch(self, record: Mapping[str, Any], tags: Iterable[RunTag] = ()) -> bool:
        """Log one epoch record (and ``tags``) in one batch and note it in the log (not uploaded);
        False, and nothing written, when this run already has that epoch."""
        epoch = int(record["epoch"])
        if epoch in self.logged:
            return False
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(record[k]), now, epoch)
            for k in (*EPOCH_METRICS, FINAL_METRIC)
            if record.get(k) is not None
        ]
        tags = [RunTag(EPOCHS_DONE_TAG, str(epoch)), *tags]
        self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
        self.logged.add(epoch)
        shown = " ".join(
            f"{k} {float(record[k]):.4g}"
            for k in ("train_loss", "train_acc", "val_loss", "val_acc", FINAL_METRIC, "epoch_seconds")
            if record.get(k) is not None
        )
        self.note(f"epoch {epoch}: {shown}")
        return True

    def finish(self, status: str, record: Mapping[str, Any] | None = None) -> None:
        """Set the final status, write the log and end the run; with ``record``, log that epoch
        first, in the same batch as the status when the run lacks it (one write fewer)."""
        batched = record is not None and self._log_epoch(record, tags=[RunTag(STATUS_TAG, status)])
        self.note(f"finished: {status}")
        self.upload_log()
        if batched:
            self.client.set_terminated(self.run_id, _mlflow_status(status))
        else:
            set_run_status(self.client, self.run_id, status)
        self.ended = True


def read_run_log(client: MlflowClient, run_id: str) -> str:
    """A run's log artifact ("" when it has none: an attempt that died before its first epoch).

    Read through ``mlflow.artifacts.download_artifacts`` (an artifact repository made for this read
    and dropped with it), not ``MlflowClient.download_artifacts``: the client keeps the repository of
    every run it has used (up to 1,024 in MLflow 3.17) with the idle threads of its downloads, and a
    study's driver reads the log of every trial it ends (20 reads through the client left 9 more
    threads in the process, 20 through this none)."""
    with tempfile.TemporaryDirectory() as directory:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=RUN_LOG_ARTIFACT,
                dst_path=directory,
                tracking_uri=client.tracking_uri,
            )
        except Exception:  # noqa: BLE001 - an attempt that died before its first epoch left none
            return ""
        return Path(local).read_text(errors="replace")


def append_to_log(client: MlflowClient, run_id: str, line: str) -> None:
    """Add one line to a run's log artifact from outside its trial (the driver, when the trial's
    worker is gone: Ray ends a trial it stops inside its last report)."""
    text = read_run_log(client, run_id)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    client.log_text(run_id, f"{text}{stamp} {line}\n", RUN_LOG_ARTIFACT)


class RunLogHandler(logging.Handler):
    """Copies the records of rblock-tune's loggers (warnings, restores) into a :class:`TrialRun`'s log."""

    def __init__(self, run: TrialRun) -> None:
        super().__init__(logging.INFO)
        self.run = run

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.run.note(f"{record.levelname.lower()}: {record.getMessage()}")
        except Exception:  # noqa: BLE001 - logging never fails a trial
            self.handleError(record)
