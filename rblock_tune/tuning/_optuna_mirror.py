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
- A new trial is the exception: ``ask`` and the suggestions and attributes that follow it (the
  parameters, TPE's shared relative parameters, the Ray trial id) are held in memory under a
  provisional (negative) trial id until :meth:`MirroredStorage.flush`, which writes the trial with all
  of them in one transaction (Optuna's ``create_new_trial`` with a template trial), instead of one
  transaction each. The searcher flushes before it hands the trial to Ray, so the database holds every
  trial Ray runs, as before; a driver that dies before the flush leaves nothing of the trial in the
  database (before, a trial could be left there with some of its parameters). A change of a trial's
  state or an intermediate value, and the creation of the next trial, flush first, and later calls with
  the provisional id reach the trial the database created. Its number is checked against the
  database's; if they differ (the database has a trial the mirror does not), the study is read again.
  An enqueued trial (a grid point, a starting point) is in the database already and is written to as
  before, one transaction per write.

Study-level reads and writes (names, directions, study attributes) go to the database as before. Built
on Optuna's public ``BaseStorage`` interface; the tests check memory against the database trial by
trial, and a search through this storage against the same search through the database alone.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import threading
from collections.abc import Callable, Container, Sequence
from typing import TYPE_CHECKING, Any

from optuna.distributions import BaseDistribution, check_distribution_compatibility
from optuna.storages import BaseStorage, RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from optuna.study._frozen import FrozenStudy  # the type BaseStorage.get_all_studies names

__all__ = ["MirroredStorage", "database_storage", "driver_storage", "flush_writes"]


def database_storage(url: str) -> RDBStorage:
    """Optuna's database storage at ``url`` (a PostgreSQL host that drops packets: a 5-s connect
    timeout, not minutes of waiting)."""
    engine_kwargs = {"connect_args": {"connect_timeout": 5}} if url.startswith("postgres") else None
    return RDBStorage(url, engine_kwargs=engine_kwargs)


def driver_storage(url: str) -> MirroredStorage:
    """The storage a study's driver opens its Optuna study with: the database at ``url``, mirrored."""
    return MirroredStorage(database_storage(url))


def flush_writes(storage: BaseStorage) -> None:
    """Write what ``storage`` holds back (a :class:`MirroredStorage`'s new trial); any other storage
    writes at once and has nothing held."""
    if isinstance(storage, MirroredStorage):
        storage.flush()


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
        self._pending: dict[int, int] = {}  # provisional id of a trial not yet written -> its study id
        self._written: dict[int, int] = {}  # provisional id -> the id the database gave the trial
        self._provisional = itertools.count(-1, -1)
        self._param_distributions: dict[int, dict[str, BaseDistribution]] = {}  # study -> first seen

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
            seen: dict[str, BaseDistribution] = {}
            for trial in self._backend.get_all_trials(study_id, deepcopy=False):
                trials[trial.number] = trial
                self._where[trial._trial_id] = (study_id, trial.number)
                for name, distribution in trial.distributions.items():
                    seen.setdefault(name, distribution)
            self._studies[study_id] = trials
            self._param_distributions[study_id] = seen
        return trials

    def _id(self, trial_id: int) -> int:
        """The database's id for ``trial_id``: for a provisional id whose trial is written, the id the
        database gave it; else ``trial_id`` itself."""
        return self._written.get(trial_id, trial_id)

    def flush(self) -> None:
        """Write the new trials held in memory to the database, each in one transaction."""
        with self._lock:
            while self._pending:
                provisional, study_id = next(iter(self._pending.items()))
                del self._pending[provisional]
                number = self._where[provisional][1]
                trial = self._studies[study_id][number]
                try:
                    trial_id = self._backend.create_new_trial(study_id, template_trial=trial)
                except BaseException:  # the database does not have the trial: nor will the mirror
                    del self._studies[study_id][number]
                    del self._where[provisional]
                    raise
                self._written[provisional] = trial_id
                del self._where[provisional]  # reached through the database's id from now on
                if self._backend.get_trial_number_from_id(trial_id) != number:
                    # the database holds a trial the mirror does not (a write it retried after a lost
                    # connection had committed it, another writer): read the study again
                    self._forget(study_id)
                    self._trials(study_id)
                    continue
                trial._trial_id = trial_id  # the rest as written: number, start time, params, attributes
                self._where[trial_id] = (study_id, number)

    def _forget(self, study_id: int) -> None:
        """Drop the mirror's copy of a study's trials (under the lock, none of them held: one trial at
        most is held, and :meth:`flush` has written it); the next read loads them again."""
        for trial in self._studies.pop(study_id, {}).values():
            self._where.pop(trial._trial_id, None)
        self._param_distributions.pop(study_id, None)

    def _mirrored(self, trial_id: int) -> FrozenTrial | None:
        where = self._where.get(self._id(trial_id))
        return None if where is None else self._studies[where[0]][where[1]]

    def _change(self, trial_id: int, change: Callable[[FrozenTrial], None]) -> None:
        """Make a change the database has just taken to the mirror's copy of a trial, if it has one."""
        with self._lock:
            trial = self._mirrored(trial_id)
            if trial is not None:
                change(trial)

    def _reread(self, trial_id: int) -> None:
        """Replace the mirror's copy of a trial by the database's (``trial_id``: the database's id)."""
        where = self._where.get(trial_id)
        if where is not None:
            self._studies[where[0]][where[1]] = self._backend.get_trial(trial_id)

    # ------------------------------------------------------------------ studies: the database's
    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        return self._backend.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self._backend.delete_study(study_id)
        with self._lock:
            for provisional in [p for p, s in self._pending.items() if s == study_id]:
                del self._pending[provisional]
                self._where.pop(provisional, None)
            for trial in self._studies.pop(study_id, {}).values():
                self._where.pop(trial._trial_id, None)
            self._directions.pop(study_id, None)
            self._param_distributions.pop(study_id, None)

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
        with self._lock:
            self.flush()  # the trials before it are in the database first: numbers as the database counts
            trials = self._trials(study_id)
            if template_trial is None:  # ``ask``: held until :meth:`flush`
                provisional = next(self._provisional)
                number = len(trials)
                trials[number] = FrozenTrial(
                    number=number,
                    state=TrialState.RUNNING,
                    value=None,
                    values=None,
                    datetime_start=datetime.datetime.now(),
                    datetime_complete=None,
                    params={},
                    distributions={},
                    user_attrs={},
                    system_attrs={},
                    intermediate_values={},
                    trial_id=provisional,
                )
                self._where[provisional] = (study_id, number)
                self._pending[provisional] = study_id
                return provisional
        trial_id = self._backend.create_new_trial(study_id, template_trial)
        with self._lock:
            trials = self._trials(study_id)  # loaded before the new trial (then not in it) or after
            if trial_id not in self._where:
                trial = self._backend.get_trial(trial_id)
                trials[trial.number] = trial
                self._where[trial_id] = (study_id, trial.number)
                for name, distribution in trial.distributions.items():
                    self._param_distributions[study_id].setdefault(name, distribution)
        return trial_id

    def _held(self, trial_id: int) -> FrozenTrial | None:
        """The trial of ``trial_id`` if it is held in memory, not yet written (under the lock)."""
        if trial_id not in self._pending:
            return None
        where = self._where[trial_id]
        return self._studies[where[0]][where[1]]

    def set_trial_param(
        self, trial_id: int, param_name: str, param_value_internal: float, distribution: BaseDistribution
    ) -> None:
        with self._lock:
            held = self._held(trial_id)
            if held is not None:  # checked as the database checks it, when it is set
                study_id = self._pending[trial_id]
                known = self._param_distributions[study_id]
                if param_name in known:
                    check_distribution_compatibility(known[param_name], distribution)
                held.params[param_name] = distribution.to_external_repr(param_value_internal)
                held.distributions[param_name] = distribution
                known.setdefault(param_name, distribution)
                return
        trial_id = self._id(trial_id)
        self._backend.set_trial_param(trial_id, param_name, param_value_internal, distribution)

        def change(trial: FrozenTrial) -> None:
            trial.params[param_name] = distribution.to_external_repr(param_value_internal)
            trial.distributions[param_name] = distribution

        self._change(trial_id, change)
        with self._lock:
            where = self._where.get(trial_id)
            if where is not None:
                self._param_distributions[where[0]].setdefault(param_name, distribution)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        self.flush()
        trial_id = self._id(trial_id)
        try:
            return self._backend.set_trial_state_values(trial_id, state, values)
        finally:  # changed or not (another writer, a finished trial), the mirror has the database's
            with self._lock:
                self._reread(trial_id)

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        self.flush()
        trial_id = self._id(trial_id)
        self._backend.set_trial_intermediate_value(trial_id, step, intermediate_value)
        self._change(trial_id, lambda trial: trial.intermediate_values.__setitem__(step, intermediate_value))

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._lock:
            held = self._held(trial_id)
            if held is not None:
                held.user_attrs[key] = copy.deepcopy(value)
                return
        trial_id = self._id(trial_id)
        self._backend.set_trial_user_attr(trial_id, key, value)
        self._change(trial_id, lambda trial: trial.user_attrs.__setitem__(key, value))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._lock:
            held = self._held(trial_id)
            if held is not None:
                held.system_attrs[key] = copy.deepcopy(value)
                return
        trial_id = self._id(trial_id)
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
        return self._backend.get_trial(self._id(trial_id))

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        with self._lock:
            trials = self._trials(study_id)
            found = [trials[n] for n in sorted(trials) if states is None or trials[n].state in states]
            return copy.deepcopy(found) if deepcopy else found

    def remove_session(self) -> None:
        self.flush()
        self._backend.remove_session()
