"""A study's trials as its driver hands them to Ray: their context and entry points, without torch.

The driver (``study run``) builds each phase's trainable from :func:`run_trial` or :func:`run_fused_trial`
and a :class:`TrialContext`; Ray pickles the function by reference, and a trial's worker imports the
trainer (:mod:`rblock_tune.tuning._trainable`, :mod:`rblock_tune.tuning._fused_trial`) when the trial
starts. So the driver never imports torch, the models or the data loaders: about 2.5 s less of its
start on a 2-core machine, and a few hundred MB less of its memory. ``tests/test_import_cost.py`` checks
that the driver's modules import no torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from rblock_tune.tuning._spec import ResourceSpec

__all__ = [
    "FUSED_SEEDS_KEY",
    "STATE_DIR",
    "TrialContext",
    "delete_own_checkpoints",
    "run_fused_trial",
    "run_trial",
]

log = logging.getLogger(__name__)

STATE_DIR = "rblock_state"
"""Folder, in a phase's Ray experiment folder, of the trials' own checkpoint copies."""


FUSED_SEEDS_KEY = "seeds"
"""Key of a fused trial's Ray config holding its members' seeds (a plain seed run has ``seed``)."""


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its own config; picklable, shipped to workers.

    Attributes:
        study: study name.
        phase: ``search`` or ``seeds``.
        base: nested base trial config.
        epochs: epochs of every trial of this phase.
        metric: the metric the study optimises.
        mode: ``max`` or ``min``.
        tracking_uri: MLflow tracking URI.
        experiment_id: MLflow experiment id.
        parent_run_id: MLflow parent run of this phase.
        state_uri: folder (path or URI on the Ray storage) of the trials' own checkpoint copies.
        arms: seed phase: arm label -> dotted overrides of the base config.
        measure_test: whether the trials measure and log ``test_acc``.
        test_every_epoch: with ``measure_test``, after every epoch rather than after the last only.
        resources: the spec's ``resources`` (a trial's threads).
        max_concurrent: trials of this phase that run at once at most (``search.max_concurrent``).
        reported: the epoch record's metrics each result carries to Ray besides ``epoch``: those the
            driver reads from results (the searcher's and scheduler's ``metric``, a race's metric).
            Every metric goes to MLflow; Ray keeps summaries of each key of every result of every
            trial in the driver, so a result carries no more than is read.
    """

    study: str
    phase: str
    base: dict[str, Any]
    epochs: int
    metric: str
    mode: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    state_uri: str
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)
    measure_test: bool = True
    test_every_epoch: bool = False
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    max_concurrent: int = 1
    reported: tuple[str, ...] = ()


def delete_own_checkpoints(state_uri: str) -> None:
    """Remove a finished phase's own checkpoint copies (no trial of it will restore again)."""
    from pyarrow import fs as pafs

    filesystem, root = pafs.FileSystem.from_uri(state_uri)
    if filesystem.get_file_info(root).type != pafs.FileType.NotFound:
        filesystem.delete_dir(root)


class _RestoreFallback:
    """Mixed into Ray's function trainable: when the checkpoint Ray restores a trial from no
    longer exists, start the trial without it (instead of failing it for good); :func:`run_trial`
    then continues from the trial's own copy. Ray's iteration counters still continue from the
    result that checkpoint was reported with.

    Ray has no public hook for this: the mixin rides on ``wrap_function``'s ``__mixins__`` and sets
    the trainable's iteration counters, internals of the Ray minor version pinned in pyproject."""

    def restore(self, checkpoint_path: Any) -> Any:
        from pyarrow import fs as pafs

        checkpoint = getattr(checkpoint_path, "checkpoint", None)
        if checkpoint is not None:
            info = checkpoint.filesystem.get_file_info(checkpoint.path)
            if info.type == pafs.FileType.NotFound:
                log.warning("checkpoint %s is gone; the trial continues from its own copy", checkpoint.path)
                metrics = dict(getattr(checkpoint_path, "metrics", None) or {})
                self._iteration = int(metrics.get("training_iteration", 0))
                self._time_total = float(metrics.get("time_total_s", 0.0))
                self._time_since_restore = 0.0
                self._iterations_since_restore = 0
                return None
        return super().restore(checkpoint_path)  # type: ignore[misc]


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Train one trial under Ray Tune (:func:`rblock_tune.tuning._trainable.train_trial`)."""
    from rblock_tune.tuning._trainable import train_trial  # in the trial's worker, not the driver

    train_trial(config, context)


def run_fused_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Train one fused seed-phase trial under Ray Tune
    (:func:`rblock_tune.tuning._fused_trial.train_fused_trial`)."""
    from rblock_tune.tuning._fused_trial import train_fused_trial  # in the trial's worker

    train_fused_trial(config, context)


run_trial.__mixins__ = (_RestoreFallback,)  # type: ignore[attr-defined]  # read by Ray's wrap_function
run_fused_trial.__mixins__ = (_RestoreFallback,)  # type: ignore[attr-defined]
