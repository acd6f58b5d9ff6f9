"""The driver's mirrored Optuna storage: what it reads is what the database holds, and a search through it
is the search through the database alone."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from rblock_tune.tuning._optuna_mirror import MirroredStorage, database_storage, driver_storage, flush_writes

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _space(trial: optuna.Trial) -> None:
    variant = trial.suggest_categorical("reg.variant", ["bdrop_dml", "dropblock"])
    if variant == "bdrop_dml":
        trial.suggest_float("reg.alpha", 0.1, 10, log=True)
    trial.suggest_float("reg.drop_prob", 0.05, 0.45)
    trial.suggest_int("reg.block_size", 1, 7, step=2)


def _drive(storage: Any, n: int = 24, check: Callable[[], None] = lambda: None) -> list[dict[str, Any]]:
    """A search as a study's driver runs it: enqueued points, two trials in flight (constant liar),
    intermediate values, user attributes, and complete, pruned and failed ends; ``check`` runs after
    each trial is asked, after its results and after its end."""
    study = optuna.create_study(
        study_name="mirror",
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=3, multivariate=True, constant_liar=True, n_startup_trials=5),
        direction="maximize",
        load_if_exists=True,
    )
    study.set_user_attr("workdir", "/somewhere")
    study.enqueue_trial({"reg.variant": "dropblock", "reg.drop_prob": 0.1, "reg.block_size": 3})
    flying: list[optuna.Trial] = []
    asked = []
    for i in range(n):
        trial = study.ask()
        _space(trial)
        trial.set_user_attr("ray_trial_id", f"t{i}")
        flush_writes(study._storage)  # as the searcher does before it hands the trial to Ray
        check()
        asked.append(dict(trial.params))
        flying.append(trial)
        if len(flying) < 2:
            continue
        done = flying.pop(0)
        value = math.sin(done.number) * 0.1 + done.params["reg.drop_prob"]
        done.set_user_attr("mlflow_run_id", f"run-{done.number}")
        done.report(value / 2, 1)
        check()
        if done.number % 7 == 3:
            done.set_user_attr("rblock_status", "early_stopped")
            study.tell(done.number, state=TrialState.PRUNED)
        elif done.number % 11 == 5:
            study.tell(done.number, state=TrialState.FAIL)
        else:
            done.report(value, 2)
            check()
            study.tell(done.number, value)
        check()
    return asked


def _fields(trial: FrozenTrial) -> tuple[Any, ...]:
    return (
        trial.number,
        trial._trial_id,
        trial.state,
        trial.values,
        trial.params,
        trial.distributions,
        trial.user_attrs,
        trial.system_attrs,
        trial.intermediate_values,
        trial.datetime_start,
        trial.datetime_complete,
    )


def test_a_search_through_the_mirror_suggests_what_the_database_alone_does(tmp_path: Path) -> None:
    plain = _drive(f"sqlite:///{tmp_path / 'plain.db'}")
    mirrored = _drive(driver_storage(f"sqlite:///{tmp_path / 'mirrored.db'}"))
    assert mirrored == plain


def test_what_the_mirror_reads_is_what_the_database_holds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    mirror = driver_storage(url)
    fresh = database_storage(url)
    checks = []

    def same() -> None:  # at every step, running trials included
        study_id = mirror.get_study_id_from_name("mirror")
        mirrored = [_fields(t) for t in mirror.get_all_trials(study_id)]
        assert mirrored == [_fields(t) for t in fresh.get_all_trials(study_id)]
        checks.append(len(mirrored))

    _drive(mirror, check=same)
    assert len(checks) > 60 and checks[-1] == 24
    study_id = mirror.get_study_id_from_name("mirror")
    stored = fresh.get_all_trials(study_id)
    assert {t.state for t in stored} == {
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAIL,
        TrialState.RUNNING,
    }
    for state in TrialState:
        assert [t.number for t in mirror.get_all_trials(study_id, states=(state,))] == [
            t.number for t in stored if t.state == state
        ]
    assert mirror.get_study_user_attrs(study_id) == {"workdir": "/somewhere"}


def test_a_driver_restarted_reads_the_study_back_from_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    _drive(driver_storage(url), n=10)
    again = driver_storage(url)
    study = optuna.load_study(study_name="mirror", storage=again)
    assert len(study.trials) == 10
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    assert [t.number for t in running] == [9]
    study.tell(9, 0.5)  # the trial asked before the restart is told through the new mirror
    assert database_storage(url).get_trial(running[0]._trial_id).state == TrialState.COMPLETE


def test_an_unfinished_trial_read_is_a_copy_the_reader_may_change(tmp_path: Path) -> None:
    mirror = driver_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="s", storage=mirror)
    trial = study.ask()
    copy = mirror.get_trial(trial._trial_id)
    copy.user_attrs["x"] = 1  # optuna.Trial updates the frozen trial it holds like this
    assert "x" not in mirror.get_trial(trial._trial_id).user_attrs


def test_a_write_the_database_refuses_leaves_the_mirror_as_the_database_is(tmp_path: Path) -> None:
    mirror = driver_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="s", storage=mirror)
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        mirror.set_trial_user_attr(trial._trial_id, "late", 1)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        mirror.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    read = mirror.get_trial(trial._trial_id)
    assert read.state == TrialState.COMPLETE and read.values == [1.0] and "late" not in read.user_attrs


def test_the_searcher_opens_its_url_mirrored(tmp_path: Path) -> None:
    from rblock_tune.tuning import spec_from_dict
    from rblock_tune.tuning._searcher import OptunaStudySearcher

    spec = spec_from_dict(
        {
            "name": "m",
            "base": {"data": {"name": "synthetic"}, "model": {"name": "resnet8"}},
            "space": {"reg.drop_prob": {"type": "uniform", "low": 0.05, "high": 0.3}},
        }
    )
    searcher = OptunaStudySearcher(spec, f"sqlite:///{tmp_path / 'optuna.db'}", "m", budget=1)
    assert isinstance(searcher.study._storage, MirroredStorage)


def _commits(storage: MirroredStorage) -> list[int]:
    """A counter of the database's committed transactions that wrote (an INSERT, UPDATE or DELETE
    before SQLAlchemy's ``commit`` event; a read's session commits too, writing nothing)."""
    import sqlalchemy

    backend = storage.backend
    assert isinstance(backend, optuna.storages.RDBStorage)
    count, wrote = [0], [False]

    def executed(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            wrote[0] = True

    def committed(_conn: Any) -> None:
        if wrote[0]:
            count[0] += 1
        wrote[0] = False

    sqlalchemy.event.listen(backend.engine, "before_cursor_execute", executed)
    sqlalchemy.event.listen(backend.engine, "commit", committed)
    return count


def test_a_new_trial_is_written_with_its_parameters_and_attributes_in_one_transaction(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    mirror = driver_storage(url)
    study = optuna.create_study(
        study_name="s",
        storage=mirror,
        sampler=optuna.samplers.TPESampler(seed=0, multivariate=True, constant_liar=True, n_startup_trials=2),
        direction="maximize",
    )
    for value in (0.1, 0.2, 0.3):  # past the startup trials: TPE's relative parameters are written too
        trial = study.ask()
        _space(trial)
        flush_writes(mirror)
        study.tell(trial, value)
    commits = _commits(mirror)
    trial = study.ask()
    _space(trial)
    trial.set_user_attr("ray_trial_id", "t3")
    fresh = database_storage(url)
    study_id = fresh.get_study_id_from_name("s")
    assert commits[0] == 0 and len(fresh.get_all_trials(study_id)) == 3  # held, not half-written
    flush_writes(mirror)
    assert commits[0] == 1
    stored = fresh.get_all_trials(study_id)[-1]
    assert stored.number == 3 and stored.state == TrialState.RUNNING
    assert stored.params == trial.params and len(stored.params) >= 3
    assert stored.user_attrs == {"ray_trial_id": "t3"}
    assert any(key.startswith("tpe:relative_params") for key in stored.system_attrs)
    assert _fields(mirror.get_trial(stored._trial_id)) == _fields(stored)
    # the provisional id the optuna.Trial holds reaches the written trial
    trial.report(0.5, 1)
    study.tell(trial, 0.5)
    assert fresh.get_trial(stored._trial_id).intermediate_values == {1: 0.5}
    assert fresh.get_trial(stored._trial_id).state == TrialState.COMPLETE


def test_a_driver_gone_before_the_flush_leaves_no_half_suggested_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=driver_storage(url))
    trial = study.ask()
    trial.suggest_float("reg.drop_prob", 0.05, 0.45)  # then the driver dies
    again = optuna.load_study(study_name="s", storage=driver_storage(url))
    assert again.trials == []
    trial = again.ask()
    assert trial.number == 0


def test_the_next_trial_and_any_other_write_flush_the_held_one_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    mirror = driver_storage(url)
    study = optuna.create_study(study_name="s", storage=mirror)
    fresh = database_storage(url)
    first = study.ask()
    first.suggest_float("x", 0, 1)
    second = study.ask()  # asking again writes the first one
    assert [t.number for t in fresh.get_all_trials(study._study_id)] == [0]
    second.suggest_float("x", 0, 1)
    first.report(0.3, 1)  # a write to another trial: the second is written before it
    assert [t.number for t in fresh.get_all_trials(study._study_id)] == [0, 1]
    study.enqueue_trial({"x": 0.5})
    third = study.ask()  # the enqueued trial, written at once as before
    assert third.number == 2 and third.suggest_float("x", 0, 1) == 0.5
    assert [(t.number, t.state) for t in fresh.get_all_trials(study._study_id)] == [
        (0, TrialState.RUNNING),
        (1, TrialState.RUNNING),
        (2, TrialState.RUNNING),
    ]
    assert [_fields(t) for t in mirror.get_all_trials(study._study_id)] == [
        _fields(t) for t in fresh.get_all_trials(study._study_id)
    ]


def test_a_held_trial_refuses_a_parameter_the_study_knows_otherwise_when_it_is_set(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    mirrored = optuna.load_study(study_name="s", storage=driver_storage(url))
    trial = mirrored.ask()
    with pytest.raises(ValueError, match="Cannot set different distribution kind"):
        trial.suggest_categorical("x", ["a", "b"])


def test_a_trial_the_database_numbers_otherwise_makes_the_mirror_read_the_study_again(tmp_path: Path) -> None:
    """The database holds a trial the mirror does not (a write retried after a lost connection had
    committed it, another writer): the held trial's number is the database's, and so is the rest."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    mirror = driver_storage(url)
    study = optuna.create_study(study_name="s", storage=mirror)
    trial = study.ask()  # the mirror expects number 0
    trial.suggest_float("x", 0, 1)
    fresh = database_storage(url)
    fresh.create_new_trial(study._study_id)  # ... but the database gives 0 to this one
    flush_writes(mirror)
    assert mirror.get_trial_number_from_id(trial._trial_id) == 1
    assert [_fields(t) for t in mirror.get_all_trials(study._study_id)] == [
        _fields(t) for t in fresh.get_all_trials(study._study_id)
    ]
    study.tell(trial, 0.5)
    states = [t.state for t in fresh.get_all_trials(study._study_id)]
    assert states == [TrialState.RUNNING, TrialState.COMPLETE]
