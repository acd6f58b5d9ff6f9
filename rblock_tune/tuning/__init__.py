"""Studies on Ray Tune with Optuna search, ASHA early stopping and MLflow tracking.

A study spec (YAML) becomes a define-by-run Optuna search over trial configs, run as Ray Tune
trials that wrap :class:`rblock_tune.trainer.Trainer`; a seed phase then re-runs the best
configurations and baseline arms on one seed list. Ray is imported only once a study runs.
:class:`TrialRun`, :func:`ensure_experiment`, :func:`find_or_create_parent`, :func:`log_search_record`,
:func:`log_arms_record` and :func:`set_run_status` are the writing side of the MLflow layout
(:mod:`rblock_tune.layout`): what a study records goes through them.
"""

from __future__ import annotations

from typing import Any

from rblock_tune.tuning._arms import build_arms, plan_seeds, resolve_arms
from rblock_tune.tuning._export import export_study
from rblock_tune.tuning._race_record import race_summary, read_race_state
from rblock_tune.tuning._recording import (
    CURVE_METRICS,
    RecordedPoint,
    Recording,
    load_recording,
    merge_recordings,
)
from rblock_tune.tuning._spec import (
    DIMENSION_TYPES,
    REPORTED_METRICS,
    Arm,
    Dimension,
    FailureSpec,
    ReportSpec,
    ResourceSpec,
    SchedulerSpec,
    SearchSpec,
    SeedSpec,
    StudySpec,
    load_study_spec,
    search_seeds,
    spec_from_dict,
)
from rblock_tune.tuning._spec_record import spec_record
from rblock_tune.tuning._study import StudyResult, resume_study, run_study, study_status
from rblock_tune.tuning._tracking import (
    TrialRun,
    check_tracking,
    ensure_experiment,
    find_or_create_parent,
    log_arms_record,
    log_search_record,
    set_run_status,
)
from rblock_tune.tuning._workdir import StudyPaths, locate_study, redact_url, resolve_paths

__all__ = [
    "CURVE_METRICS",
    "DIMENSION_TYPES",
    "STRATEGIES",
    "REPORTED_METRICS",
    "Arm",
    "Dimension",
    "FailureSpec",
    "ReportSpec",
    "ResourceSpec",
    "SchedulerSpec",
    "SearchSpec",
    "SeedSpec",
    "OptunaStudySearcher",
    "RecordedPoint",
    "Recording",
    "ReplayResult",
    "Strategy",
    "StudyPaths",
    "StudyResult",
    "StudySpec",
    "TrialRun",
    "build_arms",
    "check_tracking",
    "ensure_experiment",
    "export_study",
    "find_or_create_parent",
    "grid_points",
    "list_studies",
    "load_recording",
    "merge_recordings",
    "load_study_spec",
    "locate_study",
    "log_arms_record",
    "log_search_record",
    "plan_seeds",
    "race_summary",
    "read_race_state",
    "redact_url",
    "replay",
    "replay_spec",
    "resolve_arms",
    "resolve_paths",
    "resume_study",
    "run_study",
    "sample_space",
    "search_seeds",
    "set_run_status",
    "spec_from_dict",
    "spec_record",
    "study_status",
]

_LAZY = {"OptunaStudySearcher", "grid_points", "sample_space"}
"""Names of the search side, which imports Ray: loaded on first use."""
_REPLAY = {"STRATEGIES", "ReplayResult", "Strategy", "replay", "replay_spec"}
"""Names of the replay of search strategies (Ray's schedulers when it runs): loaded on first use."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from rblock_tune.tuning import _searcher

        return getattr(_searcher, name)
    if name in _REPLAY:
        from rblock_tune.tuning import _replay

        return getattr(_replay, name)
    if name == "list_studies":  # the work directory at a glance: loaded on first use too
        from rblock_tune.tuning import _listing

        return _listing.list_studies
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
