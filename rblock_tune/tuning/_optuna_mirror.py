"""The driver's Optuna storage: the study's trials kept in memory, every write made to the database.

Optuna's database storage (with its cache of finished trials) reads the unfinished trials back from the
database at every read, and TPE reads the study several times per suggestion. In a study's driver on a
2-core machine those reads were a good part of the 60-120 ms a suggestion took at 100-400 trials, on
the critical path between one trial and the next. A study's driver is the only process that writes its
Optuna study (a second driver is refused; ``study status``, reports and optuna-dashboard only read it),
so it can read its own writes from memory.

:class:`MirroredStorage` wraps a database storage (:class:`optuna.storages.RDBStorage`):

- A study's trials are read from the database once, when the driver first asks for them; every later
  read comes from memory.
- Each write goes to the database first, as before, then the same change is made in memory. A change
  of a trial's state is read back from the database rather than copied, so memory holds the database's
  own timestamps.

Study-level reads and writes (names, directions, study attributes) go to the database as before. Built
on Optuna's public ``BaseStorage`` interface; the tests check memory against the database trial by
trial, and a search through this storage against the same search through the database alone.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Container, Sequence
from typing import TYPE_CHECKING, Any

from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from optuna.study._frozen import FrozenStudy  # the type BaseStorage.get_all_studies names

__all__ = ["MirroredStorage", "database_storage", "driver_storage"]


def database_storage(url: str) -> RDBStorage:
    """Optuna's database storage at ``url`` (a PostgreSQL host that drops packets: a 5-s connect
    timeout, not minutes of waiting)."""
    engine_kwargs = {"connect_args": {"connect_timeout": 5}} if url.startswith("postgres") else None
    return RDBStorage(url, engine_kwargs=engine_kwargs)


def driver_storage(url: str) -> MirroredStorage:
    """The storage a study's driver opens its Optuna study with: the database at ``url``, mirrored."""
    return MirroredStorage(database_storage(url))


class MirroredStorage(BaseStorage):
    """An Optuna storage that reads trials from memory and writes through to ``backend``.

    Args:
        backend: the database storage that holds the study (and receives every write first).
    """

    def __init__(self, backend: BaseStorage) -> None:
        self._backend = backend
        self._lock = threading.RLock()
        self._studies: dict[int, dict[int, FrozenTrial]] = {}  # study id -> trial number -> trial
        self._where: dict[int, tuple[int, int]] = {}  # trial id -> (study id, number)
        self._directions: dict[int, list[StudyDirection]] = {}

    @property
    def backend(self) -> BaseStorage:
        """The database storage behind the mirror."""
        return self._backend

    # ------------------------------------------------------------------ the mirror
    def _trials(self, study_id: int) -> dict[int, FrozenTrial]:
        """The mirrored trials of ``study_id``, read from the database on first use."""
        trials = self._studies.get(study_id)
        if trials is None:
            trials = {}
            for trial in self._backend.get_all_trials(study_id, deepcopy=False):
                trials[trial.number] = trial
                self._where[trial._trial_id] = (study_id, trial.number)
            self._studies[study_id] = trials
        return trials

    def _mirrored(self, trial_id: int) -> FrozenTrial | None:
        where = self._where.get(trial_id)
        return None if where is None else self._studies[where[0]][where[1]]

    def _change(self, trial_id: int, change: Callable[[FrozenTrial], None]) -> None:
        """Make a change the database has just taken to the mirror's copy of a trial, if it has one."""
        with self._lock:
            trial = self._mirrored(trial_id)
            if trial is not None:
                change(trial)

    def _reread(self, trial_id: int) -> None:
        """Replace the mirror's copy of a trial by the database's."""
        where = self._where.get(trial_id)
        if where is not None:
            self._studies[where[0]][where[1]] = self._backend.get_trial(trial_id)

    # ------------------------------------------------------------------ studies: the database's
    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        return self._backend.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self._backend.delete_study(study_id)
        with self._lock:
            for trial in self._studies.pop(study_id, {}).values():
                self._where.pop(trial._trial_id, None)
            self._directions.pop(study_id, None)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._backend.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._backend.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._backend.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._backend.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        with self._lock:  # a study's directions never change
            if study_id not in self._directions:
                self._directions[study_id] = list(self._backend.get_study_directions(study_id))
            return list(self._directions[study_id])

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._backend.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._backend.get_study_system_attrs(study_id)

    def get_all_studies(self) -> list[FrozenStudy]:
        return self._backend.get_all_studies()

    # ------------------------------------------------------------------ trials: written through
    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = self._backend.create_new_trial(study_id, template_trial)
        with self._lock:
            trials = self._trials(study_id)  # read after the new trial: it may be in there already
            if trial_id not in self._where:
                trial = self._backend.get_trial(trial_id)
                trials[trial.number] = trial
                self._where[trial_id] = (study_id, trial.number)
        return trial_id

    def set_trial_param(
        self, trial_id: int, param_name: str, param_value_internal: float, distribution: BaseDistribution
    ) -> None:
        self._backend.set_trial_param(trial_id, param_name, param_value_internal, distribution)

        def change(trial: FrozenTrial) -> None:
            trial.params[param_name] = distribution.to_external_repr(param_value_internal)
            trial.distributions[param_name] = distribution

        self._change(trial_id, change)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        try:
            return self._backend.set_trial_state_values(trial_id, state, values)
        finally:  # changed or not (another writer, a finished trial), the mirror has the database's
            with self._lock:
                self._reread(trial_id)

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        self._backend.set_trial_intermediate_value(trial_id, step, intermediate_value)
        self._change(trial_id, lambda trial: trial.intermediate_values.__setitem__(step, intermediate_value))

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._backend.set_trial_user_attr(trial_id, key, value)
        self._change(trial_id, lambda trial: trial.user_attrs.__setitem__(key, value))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._backend.set_trial_system_attr(trial_id, key, value)
        self._change(trial_id, lambda trial: trial.system_attrs.__setitem__(key, value))

    # ------------------------------------------------------------------ trials: read from memory
    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        with self._lock:
            trial = self._trials(study_id).get(trial_number)
        if trial is None:
            return self._backend.get_trial_id_from_study_id_trial_number(study_id, trial_number)
        return trial._trial_id

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            trial = self._mirrored(trial_id)
            if trial is not None:
                # an unfinished trial's copy is the caller's: optuna.Trial updates the one it holds
                return trial if trial.state.is_finished() else copy.deepcopy(trial)
        return self._backend.get_trial(trial_id)

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        with self._lock:
            trials = self._trials(study_id)
            found = [trials[n] for n in sorted(trials) if states is None or trials[n].state in states]
            return copy.deepcopy(found) if deepcopy else found

    def remove_session(self) -> None:
        self._backend.remove_session()
