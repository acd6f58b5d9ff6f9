"""The records rblock-tune leaves behind, by name: the one owner of that contract.

Training, tracking, the study driver, the analysis, the CLI and the tests all read these names
from here, so a change on the writing side is a change on the reading side.

A run directory (``rblock-tune train``) holds :data:`METRICS_FILE` and :data:`CHECKPOINT_FILE`.

MLflow: experiment = the study name. One parent run per phase, tagged :data:`ROLE_TAG` =
:data:`ROLE_STUDY` or :data:`ROLE_SEEDS` and :data:`STUDY_TAG`; one child run per trial or seed
run (tag :data:`PARENT_TAG`), tagged :data:`ROLE_TAG` = :data:`ROLE_TRIAL` or
:data:`ROLE_SEED_RUN`, :data:`STUDY_TAG`, :data:`TRIAL_TAG`, :data:`SEED_TAG`, :data:`ARM_TAG`
(seed phase), :data:`STATUS_TAG` (one of :data:`STATUSES`), :data:`EPOCHS_DONE_TAG` and, when it
failed, :data:`ERROR_TAG`. Params: the resolved trial config with dotted keys. Metrics: each
epoch's :data:`EPOCH_METRICS` with step = epoch; ``test_acc`` after the last epoch. The search
parent run holds the artifacts :data:`SPEC_ARTIFACT`, :data:`NORMALISED_SPEC_ARTIFACT` and
:data:`BEST_ARTIFACT`; the seeds parent run :data:`ARMS_ARTIFACT` (keys :data:`ARMS_KEYS`).

A work directory holds ``<study>/``:data:`STATE_FILE` (a :class:`StudyState`),
``<study>/``:data:`SPEC_FILE`, ``<study>/``:data:`STUDY_LOG` and, once the search phase has finished,
one trial config per best configuration (:func:`best_config_file`: :data:`BEST_CONFIG_FILE` for the
best, the seed phase's arm ``top1``, then ``top2.yaml``...), which ``rblock-tune train --config`` takes.
"""

from __future__ import annotations

from typing import Any, Final, TypedDict

# ------------------------------------------------------------------ run directory
METRICS_FILE: Final = "metrics.json"
CHECKPOINT_FILE: Final = "checkpoint.pt"

# ------------------------------------------------------------------ MLflow tags
ROLE_TAG: Final = "rblock.role"
STUDY_TAG: Final = "rblock.study"
TRIAL_TAG: Final = "rblock.trial_id"
SEED_TAG: Final = "rblock.seed"
ARM_TAG: Final = "rblock.arm"
STATUS_TAG: Final = "rblock.status"
EPOCHS_DONE_TAG: Final = "rblock.epochs_done"
ERROR_TAG: Final = "rblock.error"
PARENT_TAG: Final = "mlflow.parentRunId"

TAG_COLUMNS: Final = {
    ROLE_TAG: "role",
    ARM_TAG: "arm",
    SEED_TAG: "seed",
    STATUS_TAG: "status",
    TRIAL_TAG: "trial_id",
    STUDY_TAG: "study",
    EPOCHS_DONE_TAG: "epochs_done",
    ERROR_TAG: "error",
    PARENT_TAG: "parent_run_id",
}
"""Tag -> column of the analysis's run table."""

# ------------------------------------------------------------------ roles and statuses
ROLE_STUDY: Final = "study"
"""The search phase's parent run."""
ROLE_SEEDS: Final = "seeds"
"""The seed phase's parent run."""
ROLE_TRIAL: Final = "trial"
"""A search trial."""
ROLE_SEED_RUN: Final = "seed_run"
"""A seed-phase run of one arm and one seed."""
CHILD_ROLES: Final = (ROLE_TRIAL, ROLE_SEED_RUN)

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

EPOCH_METRICS: Final = (
    "train_loss", "train_ce", "train_kl", "train_acc", "drop_rate", "drop_rate_a", "drop_rate_b",
    "val_loss", "val_acc", "lr", "drop_prob", "consistency_kl_own", "consistency_kl_probe",
    "epoch_seconds", "images_per_second",
)  # fmt: skip
"""Metrics of every epoch record, logged with step = epoch."""
FINAL_METRIC: Final = "test_acc"
"""Logged with the last epoch only."""

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

# ------------------------------------------------------------------ the study's state
STATE_FILE: Final = "study.json"
SPEC_FILE: Final = "spec.yaml"
STUDY_LOG: Final = "study.log"
"""Ray's own output of every run and resume of the study (trial tables, Ray's logs and warnings, the
workers' stdout and stderr), appended; ``rblock-tune -v`` shows it on the terminal instead."""

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
