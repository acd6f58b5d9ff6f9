"""A Ray Tune searcher over an Optuna study that tells early-stopped trials as *pruned*.

Ray's stock ``OptunaSearch`` tells a trial that ASHA stopped early as COMPLETE with its
partial value, so the study's best trial can be one that never ran its budget, and its records
(optuna-dashboard) show partial values as results. Here every epoch is reported to Optuna as an
intermediate value, and the end of a trial is told as:

* COMPLETE with the final metric when it ran its whole epoch budget;
* PRUNED when it stopped before (ASHA), keeping its intermediate values;
* FAIL when it diverged or raised (after its retries).

Replayed against a recorded grid (``docs/search.md``), TPE suggested the same configurations under
either feedback: with learning curves that rise, a partial value ranks below every whole one, which is
where TPE puts a pruned trial too.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from rblock_tune._stores import redact_url, remember, unredact
from rblock_tune.config import flatten_config
from rblock_tune.errors import CheckpointError
from rblock_tune.layout import (
    CONFIG_NUMBER_KEY,
    DIVERGED,
    EARLY_STOPPED,
    FAILED,
    MLFLOW_RUN_ATTR,
    OPTUNA_STATUS_ATTR,
    RAY_TRIAL_ATTR,
    RESULT_RUN_ID,
)
from rblock_tune.tuning._optuna_mirror import driver_storage, flush_writes
from rblock_tune.tuning._space import grid, is_active
from rblock_tune.tuning._spec import StudySpec

__all__ = ["SEARCHER_STATE_FORMAT", "OptunaStudySearcher", "grid_points", "sample_space"]

SEARCHER_STATE_FORMAT = "rblock-searcher/1"
"""The searcher state Ray saves beside a search (JSON; an earlier rblock-tune pickled it)."""

log = logging.getLogger(__name__)


_active = is_active


def sample_space(trial: optuna.Trial, spec: StudySpec) -> dict[str, Any]:
    """Sample the spec's space define-by-run; conditional dimensions only when their condition holds.

    Returns:
        The dotted overrides of the base config (parameter names are the dotted keys).
    """
    base = flatten_config(spec.base)
    chosen: dict[str, Any] = {}
    for dim in spec.space:
        if not _active(dim, chosen, base):
            continue
        if dim.type == "categorical":
            chosen[dim.key] = trial.suggest_categorical(dim.key, list(dim.values))
        elif dim.type == "int":
            assert dim.low is not None and dim.high is not None
            chosen[dim.key] = trial.suggest_int(dim.key, int(dim.low), int(dim.high), step=dim.step or 1)
        else:
            assert dim.low is not None and dim.high is not None
            chosen[dim.key] = trial.suggest_float(dim.key, dim.low, dim.high, log=dim.type == "loguniform")
    return chosen


def grid_points(spec: StudySpec) -> list[dict[str, Any]]:
    """Every combination of the (finite) dimensions, conditions applied, without repeats."""
    return grid(spec.space, flatten_config(spec.base))


def _sampler(spec: StudySpec, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler; ``offset`` (the trials a resumed study already has) moves its seed, so a
    resumed search does not replay the draws it made before the interruption."""
    seed = spec.search.seed + offset
    if spec.search.algorithm == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, constant_liar=spec.search.max_concurrent > 1
        )
    # random, and grid (whose points are all enqueued: enqueued parameters take precedence)
    return optuna.samplers.RandomSampler(seed=seed)


class OptunaStudySearcher(Searcher):  # type: ignore[misc]
    """Ray Tune ``Searcher`` backed by a persistent Optuna study.

    Args:
        spec: the study spec (space, metric, mode, algorithm, starting points).
        storage: Optuna storage URL (``sqlite:///.../optuna.db``), so the study survives
            crashes and optuna-dashboard can read it (the driver reads its own writes from memory:
            :mod:`rblock_tune.tuning._optuna_mirror`); or an Optuna storage object (a replay's
            in-memory one, :mod:`rblock_tune.tuning._replay`).
        study_name: Optuna study name.
        budget: epochs of a full trial; a trial that ends earlier was stopped by ASHA.
        links: user attributes of the study pointing to the study's other records (the MLflow
            experiment, the work directory: :data:`~rblock_tune.layout.OPTUNA_STUDY_ATTRS`).

    Each trial's objective is named after the metric, it reports every epoch (its last one too) as
    an intermediate value, and it carries the Ray trial and the MLflow run that ran it as user
    attributes; its Ray config carries its Optuna number (:data:`~rblock_tune.layout.CONFIG_NUMBER_KEY`).
    """

    def __init__(
        self,
        spec: StudySpec,
        storage: str | optuna.storages.BaseStorage,
        study_name: str,
        budget: int,
        links: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(metric=spec.metric, mode=spec.mode)
        self._spec = spec
        self._storage = remember(storage) if isinstance(storage, str) else storage
        self._study_name = study_name
        self._budget = budget
        self._links = dict(links or {})
        self._linked: set[str] = set()  # Ray trial ids whose MLflow run id the Optuna trial has
        self._trials: dict[str, int] = {}  # Ray trial id -> Optuna trial number
        self._done: set[str] = set()
        self._reported: dict[str, set[int]] = {}  # Ray trial id -> epochs told to Optuna
        self._live: dict[str, optuna.Trial] = {}  # the trials this process asked for
        self._study: optuna.Study | None = None
        self._opened: optuna.storages.BaseStorage | None = None  # the storage the study was opened on

    # -------------------------------------------------------------- plumbing
    @property
    def study(self) -> optuna.Study:
        """The Optuna study, created on first use (or loaded when it exists)."""
        if self._study is None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            direction: Literal["maximize", "minimize"] = (
                "maximize" if self._spec.mode == "max" else "minimize"
            )
            storage = driver_storage(self._storage) if isinstance(self._storage, str) else self._storage
            self._opened = storage
            self._study = optuna.create_study(
                study_name=self._study_name,
                storage=storage,
                sampler=_sampler(self._spec),
                direction=direction,
                load_if_exists=True,
            )
            with warnings.catch_warnings():  # experimental since Optuna 3.2, unchanged since
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                if self._study.metric_names != [self._spec.metric]:
                    self._study.set_metric_names([self._spec.metric])
            for key, value in self._links.items():
                if self._study.user_attrs.get(key) != value:
                    self._study.set_user_attr(key, value)
            if self._study.trials:  # resumed: a sampler seeded as at the start would repeat old configs
                self._study.sampler = _sampler(self._spec, offset=len(self._study.trials))
            else:
                starts = list(self._spec.search.points)
                if self._spec.search.algorithm == "grid":
                    starts += grid_points(self._spec)
                for point in starts:
                    self._study.enqueue_trial(point, skip_if_exists=True)
        return self._study

    def _optuna_trial(self, trial_id: str) -> optuna.Trial:
        """The live Optuna trial of a Ray trial: the one ``ask`` returned, or, for a trial asked
        before the driver restarted (a restored searcher), one rebuilt from the storage."""
        live = self._live.get(trial_id)
        if live is None:
            frozen = self.study.trials[self._trials[trial_id]]
            # Optuna has no public way to reopen a running trial: the pinned optuna range (pyproject)
            # is the one this was tested with.
            live = self._live[trial_id] = optuna.Trial(self.study, frozen._trial_id)
            self._reported[trial_id] = set(frozen.intermediate_values)
        return live

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a searcher pickled by an earlier rblock-tune (an interrupted study) lacks the newer fields
        self.__dict__.update(
            {"_live": {}, "_reported": {}, "_links": {}, "_linked": set(), "_opened": None, **state}
        )
        if isinstance(self._storage, str):
            self._storage = unredact(self._storage)  # the password this driver was given, never pickled

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the searcher into the phase's tuner.pkl: without the storage's password
        state = self.__dict__.copy()
        state["_study"] = None  # reconnected to the storage on first use
        state["_opened"] = None
        state["_live"] = {}
        state["_linked"] = set()
        if isinstance(self._storage, str):
            state["_storage"] = redact_url(self._storage)
        return state

    def save(self, checkpoint_path: str) -> None:
        """The progress of the search (Ray trial -> Optuna trial, the epochs told) as JSON: what Ray
        saves beside the experiment and a resume reads back."""
        record = {
            "format": SEARCHER_STATE_FORMAT,
            "trials": self._trials,
            "done": sorted(self._done),
            "reported": {trial: sorted(epochs) for trial, epochs in self._reported.items()},
        }
        Path(checkpoint_path).write_text(json.dumps(record))

    def restore(self, checkpoint_path: str) -> None:
        data = Path(checkpoint_path).read_bytes()
        if not data.lstrip().startswith(b"{"):  # saved by an earlier rblock-tune: a pickle
            self.__setstate__(pickle.loads(data))
            return
        record = json.loads(data)
        if record.get("format") != SEARCHER_STATE_FORMAT:
            raise CheckpointError(
                f"{checkpoint_path}: searcher state format {record.get('format')!r}, this rblock-tune "
                f"reads {SEARCHER_STATE_FORMAT!r}"
            )
        self._trials = {str(k): int(v) for k, v in record["trials"].items()}
        self._done = {str(t) for t in record["done"]}
        self._reported = {str(t): {int(e) for e in epochs} for t, epochs in record["reported"].items()}
        self._live = {}

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        return True  # metric and mode come from the study spec

    # -------------------------------------------------------------- protocol
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if trial_id in self._trials:  # a restored trial asks again
            number = self._trials[trial_id]
            return {"overrides": dict(self.study.trials[number].params), CONFIG_NUMBER_KEY: number}
        trial = self.study.ask()
        try:
            overrides = sample_space(trial, self._spec)
            trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)
        finally:  # the trial with its parameters and attributes, in one write, before Ray has it
            assert self._opened is not None
            flush_writes(self._opened)
        # the database's number (the mirror checks its own against it when it writes the trial)
        number = self._opened.get_trial_number_from_id(trial._trial_id)
        self._trials[trial_id] = number
        self._live[trial_id] = trial
        self._reported[trial_id] = set()
        return {"overrides": overrides, CONFIG_NUMBER_KEY: number}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id not in self._trials or trial_id in self._done:
            return
        if trial_id not in self._live and self._told_already(trial_id):
            return
        self._report(trial_id, result)

    def _told_already(self, trial_id: str) -> bool:
        """Whether the Optuna trial of a trial asked before the driver restarted is finished already:
        the driver told it, then died before Ray saved the experiment state that has the trial done,
        so Ray resumes the trial (which reports its last epoch again). Its outcome is on record."""
        number = self._trials[trial_id]
        finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        if any(t.number == number for t in self.study.get_trials(deepcopy=False, states=finished)):
            self._done.add(trial_id)
            return True
        return False

    def _link(self, trial_id: str, result: Mapping[str, Any]) -> None:
        """Record the trial's MLflow run id on its Optuna trial (once)."""
        run_id = result.get(RESULT_RUN_ID)
        if trial_id in self._linked or not isinstance(run_id, str):
            return
        self._optuna_trial(trial_id).set_user_attr(MLFLOW_RUN_ATTR, run_id)
        self._linked.add(trial_id)

    def _report(self, trial_id: str, result: dict[str, Any]) -> None:
        """Record one epoch's metric as an intermediate value (once per epoch)."""
        self._link(trial_id, result)
        value = result.get(self._spec.metric)
        epoch = result.get("epoch")
        if result.get("diverged") or value is None or epoch is None or not math.isfinite(value):
            return
        trial = self._optuna_trial(trial_id)
        if int(epoch) not in self._reported[trial_id]:
            trial.report(float(value), int(epoch))
            self._reported[trial_id].add(int(epoch))

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if trial_id not in self._trials or trial_id in self._done:
            return
        self._done.add(trial_id)
        number = self._trials[trial_id]
        # only the running trials: ``study.trials`` would deep-copy every trial, at each completion
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if all(t.number != number for t in running):
            self._live.pop(trial_id, None)
            self._reported.pop(trial_id, None)
            return
        value = None if result is None else result.get(self._spec.metric)
        if result is not None:
            self._link(trial_id, result)
        if error or result is None or result.get("diverged"):
            state = TrialState.FAIL
            status = DIVERGED if result and result.get("diverged") else FAILED
            self._optuna_trial(trial_id).set_user_attr(OPTUNA_STATUS_ATTR, status)
        elif int(result.get("epoch", 0)) < self._budget:
            # Ray passes the result that made ASHA stop the trial only here, not to on_trial_result
            self._report(trial_id, result)
            state = TrialState.PRUNED
            self._optuna_trial(trial_id).set_user_attr(OPTUNA_STATUS_ATTR, EARLY_STOPPED)
        elif value is None or not math.isfinite(float(value)):
            state = TrialState.FAIL
        else:
            # Ray passes the last result only here too: the last epoch is an intermediate value
            # as well, so learning curves run to the end of the budget
            self._report(trial_id, result)
            state = TrialState.COMPLETE
        if state == TrialState.COMPLETE and value is not None:
            self.study.tell(number, float(value), state=state)
        else:
            self.study.tell(number, state=state)
        self._live.pop(trial_id, None)
        self._reported.pop(trial_id, None)
        self._linked.discard(trial_id)

    def fail_orphans(self) -> int:
        """Tell FAIL for Optuna trials still RUNNING that Ray does not know (a driver crash
        between ask and Ray's experiment checkpoint); returns how many."""
        known = set(self._trials.values())
        count = 0
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number not in known:
                self.study.tell(trial.number, state=TrialState.FAIL)
                count += 1
        return count
