"""The records rblock-tune leaves behind, by name: the one owner of that contract.

Training, tracking, the study driver, the analysis, the CLI and the tests all read these names
from here, so a change on the writing side is a change on the reading side.

A run directory (``rblock-tune train``) holds :data:`METRICS_FILE` and :data:`CHECKPOINT_FILE`.

MLflow: experiment = the study name. One parent run per phase and one child run per trial or seed
run (tag :data:`PARENT_TAG`). Every run is tagged :data:`ROLE_TAG` (:data:`ROLE_PARENT` or
:data:`ROLE_TRIAL`: one vocabulary for both phases), :data:`PHASE_TAG` (:data:`PHASE_SEARCH` or
:data:`PHASE_SEEDS`), :data:`STUDY_TAG` and :data:`ARM_TAG` (a parent's is :func:`parent_arm`). A
child run is also tagged :data:`TRIAL_TAG`, :data:`SEED_TAG`, its :data:`ARM_TAG` (:data:`SEARCH_ARM`
for search trials), :data:`VARIANT_TAG`,
:data:`ARM_CONFIG_TAG`, :data:`STATUS_TAG` (one of :data:`STATUSES`), :data:`EPOCHS_DONE_TAG`,
:data:`NOT_APPLICABLE_TAG`, for search trials :data:`OPTUNA_TRIAL_TAG` and, when it failed,
:data:`ERROR_TAG`; its name is :func:`trial_run_name` or :func:`seed_run_name` (with
:func:`stopped_name` once ASHA stopped it). Params: the resolved trial config with dotted keys,
without the regularizer keys that do not apply to its variant (:data:`NOT_APPLICABLE_TAG` lists
them). Metrics: each epoch's :data:`EPOCH_METRICS` with step = epoch; :data:`FINAL_METRIC` after
the last epoch (search trials only when the spec asks). Artifacts: :data:`RUN_CONFIG_ARTIFACT`
and :data:`RUN_LOG_ARTIFACT`. The search parent run holds the artifacts :data:`SPEC_ARTIFACT`,
:data:`NORMALISED_SPEC_ARTIFACT` and :data:`BEST_ARTIFACT`, the tags :data:`BEST_TAG_PREFIX` + key and
the metric :func:`best_metric`; the seeds parent run :data:`ARMS_ARTIFACT` (keys :data:`ARMS_KEYS`), a
description listing its arms (:data:`DESCRIPTION_TAG`) and, once the study's report is written, the
report under :data:`REPORT_ARTIFACT_DIR`, :data:`BASELINE_TAG`, per arm the metrics (:func:`arm_metric`)
``<arm>.mean_<metric>``, ``<arm>.diff``, ``<arm>.ci_low``, ``<arm>.ci_high``, ``<arm>.p_holm`` and the tag
:data:`DECISION_TAG_PREFIX` + arm. A racing seed phase's parent also holds :data:`RACE_TAG`,
:data:`RACE_LOOKS_ARTIFACT` and, from its looks on, the decision tags.
Runs written before this layout carry the roles of :data:`LEGACY_ROLES` and no phase tag: readers
go through :func:`role_and_phase`.

A work directory holds ``<study>/``:data:`STATE_FILE` (a :class:`StudyState`),
``<study>/``:data:`SPEC_FILE`, ``<study>/``:data:`STUDY_LOG`, for a racing seed phase
``<study>/``:data:`RACE_STATE_FILE` and, once the search phase has finished, one trial config per best
configuration (:func:`best_config_file`: :data:`BEST_CONFIG_FILE` for the
best, the seed phase's arm ``top1``, then ``top2.yaml``...), which ``rblock-tune train --config`` takes.
"""

from __future__ import annotations

from typing import Any, Final, TypedDict

# ------------------------------------------------------------------ run directory
METRICS_FILE: Final = "metrics.json"
CHECKPOINT_FILE: Final = "checkpoint.pt"

# ------------------------------------------------------------------ MLflow tags
ROLE_TAG: Final = "rblock.role"
PHASE_TAG: Final = "rblock.phase"
STUDY_TAG: Final = "rblock.study"
TRIAL_TAG: Final = "rblock.trial_id"
SEED_TAG: Final = "rblock.seed"
ARM_TAG: Final = "rblock.arm"
VARIANT_TAG: Final = "rblock.variant"
ARM_CONFIG_TAG: Final = "rblock.config"
"""What the run trained, in one line (:func:`describe_config`): ``sdrop_dml a=3.6 p=0.44 b=1``."""
STATUS_TAG: Final = "rblock.status"
EPOCHS_DONE_TAG: Final = "rblock.epochs_done"
ERROR_TAG: Final = "rblock.error"
OPTUNA_TRIAL_TAG: Final = "rblock.optuna_trial"
"""A search trial's Optuna trial number."""
NOT_APPLICABLE_TAG: Final = "rblock.not_applicable"
"""The regularizer keys of the config that do not apply to the run's variant, comma-separated: not
logged as params (``none`` drops nothing, so its ``reg.drop_prob`` would only mislead)."""
DECISION_TAG_PREFIX: Final = "rblock.decision."
"""On the seeds parent run, per arm: ``better``, ``worse`` or ``no difference`` against the baseline
(``higher``/``lower`` for a metric of no known direction); for an arm of a race whose report compared
the race's metric against its baseline, the race's decision (one of
:data:`rblock_tune.racing.DECISIONS`)."""
BASELINE_TAG: Final = "rblock.baseline"
"""On the seeds parent run once the report is published: the arm every other arm was compared with."""
BEST_TAG_PREFIX: Final = "rblock.best."
"""On the search parent run: ``rblock.best.<key>`` = the best configuration's value of each key (tags,
not params: a study run again under the same name on a shared server finds the same parent)."""
PARENT_TAG: Final = "mlflow.parentRunId"
DESCRIPTION_TAG: Final = "mlflow.note.content"
"""MLflow's run description (shown on the run's page)."""

TAG_COLUMNS: Final = {
    ROLE_TAG: "role",
    PHASE_TAG: "phase",
    ARM_TAG: "arm",
    SEED_TAG: "seed",
    STATUS_TAG: "status",
    TRIAL_TAG: "trial_id",
    STUDY_TAG: "study",
    VARIANT_TAG: "variant",
    ARM_CONFIG_TAG: "config",
    EPOCHS_DONE_TAG: "epochs_done",
    OPTUNA_TRIAL_TAG: "optuna_trial",
    ERROR_TAG: "error",
    PARENT_TAG: "parent_run_id",
}
"""Tag -> column of the analysis's run table."""

# ------------------------------------------------------------------ roles and statuses
ROLE_PARENT: Final = "parent"
"""A phase's parent run."""
ROLE_TRIAL: Final = "trial"
"""A child run: a search trial, or a seed-phase run of one arm and one seed."""
PHASE_SEARCH: Final = "search"
PHASE_SEEDS: Final = "seeds"
PHASES: Final = (PHASE_SEARCH, PHASE_SEEDS)
SEARCH_ARM: Final = "search"
"""The arm of every search trial (seed-phase arms are ``top1``..., or the spec's labels)."""
LEGACY_ROLES: Final = {
    "study": (ROLE_PARENT, PHASE_SEARCH),
    "seeds": (ROLE_PARENT, PHASE_SEEDS),
    "seed_run": (ROLE_TRIAL, PHASE_SEEDS),
}
"""Role tag -> (role, phase) of runs written by an rblock-tune before :data:`PHASE_TAG`; their search
trials' role was already ``trial``."""


def role_and_phase(role: str | None, phase: str | None) -> tuple[str | None, str | None]:
    """A run's (role, phase) from its tags, runs of the earlier layout (:data:`LEGACY_ROLES`) included."""
    if role in LEGACY_ROLES:
        return LEGACY_ROLES[role]
    if role == ROLE_TRIAL and phase is None:
        return ROLE_TRIAL, PHASE_SEARCH
    return role, phase


def parent_arm(phase: str) -> str:
    """The arm of a phase's parent run: the phase (``search``, ``seeds``), so that every run has an arm
    and grouping by it puts the search parent with its trials and the seeds parent, the study's
    answer, in a group of its own."""
    return phase


def parent_run_name(study: str, phase: str) -> str:
    """Name of a phase's parent run: ``quickstart search``."""
    return f"{study} {phase}"


def trial_run_name(number: int | None, description: str, trial_id: str) -> str:
    """Name of a search trial's run: ``trial-003 sdrop_dml a=3.6 p=0.44 b=1`` (Optuna's trial number;
    the Ray trial id when a trial has none)."""
    head = f"trial-{number:03d}" if number is not None else f"trial-{trial_id}"
    return f"{head} {description}".strip()


def seed_run_name(arm: str, seed: int) -> str:
    """Name of a seed-phase run: ``top1 s2``."""
    return f"{arm} s{seed}"


def stopped_name(name: str, epoch: int, budget: int) -> str:
    """The name of a run that ASHA stopped early: ``trial-003 [stopped 1/4] sdrop_dml ...`` (epochs run
    of the budget, right after the trial number, where a narrow name column still shows it; MLflow has
    no run status for it). A name that already says so is returned as it is."""
    if STOPPED_MARK in name:
        return name
    head, _, rest = name.partition(" ")
    return " ".join(part for part in (head, f"{STOPPED_MARK}{epoch}/{budget}]", rest) if part)


STOPPED_MARK: Final = "[stopped "


RUNNING: Final = "running"
COMPLETED: Final = "completed"
EARLY_STOPPED: Final = "early_stopped"
DIVERGED: Final = "diverged"
FAILED: Final = "failed"
STATUSES: Final = (RUNNING, COMPLETED, EARLY_STOPPED, DIVERGED, FAILED)
FAILED_STATUSES: Final = (DIVERGED, FAILED)
"""Statuses whose MLflow run ends FAILED."""
FINAL_STATUSES: Final = (COMPLETED, DIVERGED)
"""Statuses a trial sets itself, which the driver does not overwrite."""
ORPHANED: Final = "orphaned"
"""Shown (by ``study status``) for a failed run whose error starts with :data:`ORPHANED_ERROR`."""
ORPHANED_ERROR: Final = (
    "orphaned: the driver stopped before Ray recorded this trial; resume ran another trial instead"
)

OPTUNA_STATUS_ATTR: Final = "rblock_status"
"""User attribute of an Optuna trial that did not complete: :data:`DIVERGED`, :data:`FAILED` or
:data:`EARLY_STOPPED` (what optuna-dashboard shows beside FAIL and PRUNED)."""
RAY_TRIAL_ATTR: Final = "ray_trial_id"
"""User attribute of an Optuna trial: the Ray trial that ran it."""
MLFLOW_RUN_ATTR: Final = "mlflow_run_id"
"""User attribute of an Optuna trial: its MLflow run."""
OPTUNA_STUDY_ATTRS: Final = ("mlflow_experiment", "mlflow_experiment_id", "mlflow_tracking_uri", "workdir")
OPTUNA_RUNS_URL_ATTR: Final = "mlflow_runs_url"
"""User attributes of the Optuna study: the MLflow experiment (name, id, tracking URI without its
password) and the work directory; :data:`OPTUNA_RUNS_URL_ATTR` too when the tracking URI is a server."""
RESULT_RUN_ID: Final = "mlflow_run_id"
"""Key of a trial's Ray results carrying its MLflow run id (the searcher reads it)."""
RESULT_MEMBERS_DIVERGED: Final = "members_diverged"
"""Key of each result of a fused trial (several seeds' runs in one Ray trial): how many of its
members have diverged so far, so that the driver's display counts runs, not trials."""
RESULT_RUN_ENDED: Final = "run_ended"
"""Key of a trial's last Ray result, 1 when the trial gave its MLflow run (each member's, for a fused
trial) its final status before reporting it: the driver then writes nothing to MLflow for it."""
CONFIG_NUMBER_KEY: Final = "number"
"""Key of a search trial's Ray config carrying its Optuna trial number (the searcher sets it)."""

EPOCH_METRICS: Final = (
    "train_loss", "train_ce", "train_kl", "train_acc", "drop_rate", "drop_rate_a", "drop_rate_b",
    "val_loss", "val_acc", "lr", "scheduled_drop_prob", "consistency_kl_own", "consistency_kl_probe",
    "epoch_seconds", "images_per_second",
)  # fmt: skip
"""Metrics of every epoch record, logged with step = epoch."""
REPORTED_METRICS: Final[dict[str, str]] = {
    "val_acc": "max",
    "val_loss": "min",
    "train_acc": "max",
    "train_loss": "min",
    "train_ce": "min",
    "consistency_kl_own": "min",
    "consistency_kl_probe": "min",
}
"""Per-epoch metrics a study may optimise, with their natural direction."""

FINAL_METRIC: Final = "test_acc"
"""Logged with the last epoch only (by search trials only when the spec asks for it)."""
METRIC_MODES: Final = {**REPORTED_METRICS, FINAL_METRIC: "max"}
"""Metric -> ``max`` or ``min``: the direction in which it is better."""
SCHEDULED_DROP_PROB: Final = "scheduled_drop_prob"
"""Epoch record key: the drop probability the schedule reached by the epoch's last step (the param
``reg.drop_prob`` is its target)."""

# ------------------------------------------------------------------ artifacts of every child run
RUN_CONFIG_ARTIFACT: Final = "config.yaml"
"""The run's resolved trial config (``rblock-tune train --config`` takes it)."""
RUN_LOG_ARTIFACT: Final = "trial.log"
"""The run's log: its epochs and warnings, every attempt appended."""

# ------------------------------------------------------------------ artifacts of the parent runs
SPEC_ARTIFACT: Final = "spec.yaml"
"""The spec as written."""
NORMALISED_SPEC_ARTIFACT: Final = "spec.normalised.yaml"
"""The spec with every default filled in (``rblock_tune.tuning.spec_record``): what the report reads,
so it never re-applies defaults of its own. Keys: ``name``, ``metric``, ``mode``, ``base``, ``space``
(dotted key -> ``type``, ``low``, ``high``, ``step``, ``values``, ``when``), ``search``,
``scheduler`` (``budget``: the epochs of one search trial), ``resources``, ``failures``, ``seeds``
(``epochs``: of one seed run) and ``report``."""
BEST_ARTIFACT: Final = "best_configs.yaml"
ARMS_ARTIFACT: Final = "arms.yaml"
ARMS_KEYS: Final = ("arms", "seeds", "search_seeds", "allow_search_seeds")
"""Keys of :data:`ARMS_ARTIFACT`: arm label -> overrides, the seed list, study -> its search trials'
seeds, and whether the seed list may reuse those."""
REPORT_ARTIFACT_DIR: Final = "report"
"""Folder of the seeds parent run's artifacts holding the study's report (HTML, Markdown, CSVs,
figures)."""
RACE_LOOKS_ARTIFACT: Final = "race/looks.csv"
"""A racing seed phase's every look, on its seeds parent run: columns :data:`RACE_LOOK_COLUMNS`, one
row per (look, arm), rewritten after each look."""
RACE_LOOK_COLUMNS: Final = (
    "look",
    "arm",
    "n_pairs",
    "mean_diff",
    "ci_low",
    "ci_high",
    "level",
    "decision",
    "live",
)
"""``look`` (1, 2, ... in the order the race looked) then the columns of
:func:`rblock_tune.racing.race_step`."""
RACE_TAG: Final = "rblock.race"
"""On a racing seed phase's parent run: its design, ``alpha=0.05 margin=0.0 min_seeds=3 max_seeds=10
futility=0.6 statistic=t metric=test_acc mode=max baseline=dropblock`` (:func:`race_tag`,
:func:`parse_race_tag`)."""
RACE_STATE_FILE: Final = "race.json"
"""``<study>/race.json``: the race's seeds handed out, results seen and looks (the racing searcher's
own record, rewritten atomically at every change)."""


def race_tag(design: dict[str, Any]) -> str:
    """The :data:`RACE_TAG` value of a race design (``key=value`` separated by spaces)."""
    return " ".join(f"{k}={v}" for k, v in design.items())


def parse_race_tag(text: str) -> dict[str, str]:
    """The design of a :data:`RACE_TAG` value, values as strings."""
    return dict(part.split("=", 1) for part in text.split() if "=" in part)


# ------------------------------------------------------------------ the study's state
STATE_FILE: Final = "study.json"
SPEC_FILE: Final = "spec.yaml"
STUDY_LOG: Final = "study.log"
"""Ray's own output of every run and resume of the study (trial tables, Ray's logs and warnings, the
workers' stdout and stderr), appended; ``rblock-tune -v`` shows it on the terminal instead."""

RECORDING_FILE: Final = "recording.json"
"""``<study>/recording.json``: where ``rblock-tune study export`` writes the study's recording by default
(:mod:`rblock_tune.tuning._recording`)."""

BEST_CONFIG_FILE: Final = "best.yaml"
"""The best search configuration as a full trial config (arm ``top1`` of the seed phase)."""


def best_config_file(rank: int) -> str:
    """File name of the ``rank``-th best search configuration (1 = the best): :data:`BEST_CONFIG_FILE`
    for rank 1, else ``top<rank>.yaml``, after the seed phase's arm label ``top<rank>``."""
    return BEST_CONFIG_FILE if rank == 1 else f"top{rank}.yaml"


STATE_FORMAT: Final = 2
"""Version of :data:`STATE_FILE`. 2: seed phases avoid search seeds (``seed_phase_seeds``) and
``reg.drop_prob`` is read on ``reg.rate_basis`` (default ``submodel``). A study of format 1 (no
``format`` key) meant other seeds and, for R-Block, half the drop rate: it is neither resumed nor
taken as a ``from_study`` arm."""


class DriverRecord(TypedDict):
    """The ``driver`` of a :class:`StudyState`: which process runs the study."""

    pid: int
    host: str
    started: str | None
    """The process's start time as the OS tells it (``/proc/<pid>/stat``), so that another process
    given the same pid later is not taken for the driver; None where the OS does not tell."""


class StudyState(TypedDict, total=False):
    """The contents of :data:`STATE_FILE`."""

    format: int
    name: str
    spec: dict[str, Any]
    """The spec as written (what ``study resume`` parses again)."""
    workdir: str
    storage: str
    tracking_uri: str
    optuna_storage: str
    address: str | None
    search_seeds: dict[str, list[int]]
    """Study -> the seeds its search trials ran with (this study and each ``from_study`` one)."""
    seed_phase_seeds: list[int]
    search_done: bool
    seeds_done: bool
    best: list[dict[str, Any]]
    """The best configurations: ``{"overrides": {...}, <metric>: value}``, best first."""
    driver: DriverRecord | None
    """The process running the study now; None (or absent) once no driver runs it. A record whose
    process is gone is a driver that died: the study is interrupted, not running."""


def best_metric(metric: str) -> str:
    """The search parent's metric holding the best trial's value: ``best_val_acc``."""
    return f"best_{metric}"


def arm_metric(arm: str, what: str) -> str:
    """A metric of the seeds parent run about one arm: ``top1.diff``, ``top1.mean_test_acc``."""
    return f"{arm}.{what}"


def mlflow_runs_url(server: str, experiment_id: str) -> str:
    """The MLflow UI's page of an experiment's runs in the model-training view (a fresh browser
    otherwise opens MLflow 3's GenAI overview, which is empty for a study)."""
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
