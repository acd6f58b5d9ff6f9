"""Studies on Ray Tune with Optuna search, ASHA early stopping and MLflow tracking.

The only package that imports Ray, Optuna and MLflow. A study spec (YAML) becomes a
define-by-run Optuna search over trial configs, run as Ray Tune trials that wrap
:class:`rblock_tune.trainer.Trainer`; a seed phase then re-runs the best configurations
and baseline arms on one seed list.
"""

from __future__ import annotations

from rblock_tune.tuning._spec import StudySpec, load_study_spec, spec_from_dict
from rblock_tune.tuning._study import StudyResult, resume_study, run_study, study_status

__all__ = [
    "StudyResult",
    "StudySpec",
    "load_study_spec",
    "resume_study",
    "run_study",
    "spec_from_dict",
    "study_status",
]
