"""Running, resuming and inspecting a study: the search phase, then the seed phase.

Where a study keeps everything: :mod:`rblock_tune.tuning._workdir`; what it records:
:mod:`rblock_tune.layout`; the Ray side of each phase: :mod:`rblock_tune.tuning._phases`
(imported when a study runs, so that parsing a spec or reading a study's status does not start Ray).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from mlflow.tracking import MlflowClient

from rblock_tune._stores import check_optuna_url, check_tracking_uri, redact_url, sqlite_path
from rblock_tune.config import with_overrides
from rblock_tune.errors import CheckpointError, ConfigError, RBlockError
from rblock_tune.layout import (
    ERROR_TAG,
    FAILED,
    ORPHANED,
    ORPHANED_ERROR,
    PHASE_TAG,
    RACE_STATE_FILE,
    ROLE_TAG,
    ROLE_TRIAL,
    SPEC_FILE,
    STATE_FORMAT,
    STATUS_TAG,
    STUDY_LOG,
    StudyState,
    role_and_phase,
)
from rblock_tune.tuning._arms import plan_seeds, resolve_arms
from rblock_tune.tuning._best import top_configs, write_best_configs
from rblock_tune.tuning._driver import driver_alive, study_state, this_driver
from rblock_tune.tuning._race_record import race_summary, read_race_state
from rblock_tune.tuning._spec import StudySpec, spec_from_state
from rblock_tune.tuning._tracking import ensure_experiment
from rblock_tune.tuning._verbosity import NORMAL
from rblock_tune.tuning._workdir import (
    ARTIFACTS_DIR,
    StudyPaths,
    check_address,
    check_destinations,
    check_format,
    check_optuna_storage,
    locate_study,
    read_state,
    recorded_url,
    resolve_paths,
    state_path,
    write_private,
    write_state,
)

__all__ = ["StudyResult", "resume_study", "run_study", "study_status"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyResult:
    """What a study run returns (and the CLI prints).

    ``unfinished`` is None when every phase ran to its end; otherwise it says which phase stopped
    early and how many of its trials were left (Ctrl-C: Ray Tune saved the phase's state, and
    :func:`resume_study` continues it), and ``best`` is what was known before that phase.
    """

    name: str
    spec: StudySpec
    state_file: Path
    best: list[dict[str, Any]]
    tracking_uri: str
    storage: str
    optuna_storage: str
    seed_runs: int
    unfinished: str | None = None
    experiment_id: str | None = None
    """The study's MLflow experiment."""

    @property
    def finished(self) -> bool:
        return self.unfinished is None


def check_data(spec: StudySpec, paths: StudyPaths, *, fetch: bool) -> None:
    """Every dataset the study's trials load is there (with ``fetch``, downloaded now where it is
    missing and allowed to be), before Ray starts: otherwise every trial would fail on it. On a remote
    cluster the data live on its nodes, which the driver cannot see: their trials say it."""
    if paths.address not in (None, "local"):
        return
    from rblock_tune.data import ensure_source

    configs = [spec.base]
    if spec.seeds is not None:
        configs += [
            with_overrides(spec.base, overrides) for overrides in resolve_arms(spec, paths.workdir).values()
        ]
    for data in {config.data for config in configs}:
        ensure_source(data, fetch=fetch)


@contextmanager
def _undone_on_error(workdir: Path, study_dir: Path) -> Iterator[None]:
    """A study refused by a check that needs the stores or Ray (its resources, the cluster) leaves
    nothing behind: the work directory, or the study's folder, that this run created is removed."""
    new_workdir, new_study = not workdir.exists(), not study_dir.exists()
    try:
        yield
    except RBlockError:
        if new_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        elif new_study:
            shutil.rmtree(study_dir, ignore_errors=True)
        raise


def run_study(
    spec: StudySpec,
    *,
    workdir: str | Path = "rblock_runs",
    address: str | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    optuna_storage: str | None = None,
    resume: bool = False,
    verbosity: int = NORMAL,
) -> StudyResult:
    """Run (or, with ``resume``, continue) a whole study; the report is the caller's next step
    (``rblock-tune`` writes it when the spec asks for one). ``verbosity``: what the study prints
    (:mod:`rblock_tune.tuning._display`); Ray's own output goes to ``<workdir>/<name>/study.log``,
    or with :data:`~rblock_tune.tuning._display.VERBOSE` to the terminal."""
    if not spec.space and spec.seeds is None:  # else it would "finish" having trained nothing
        raise ConfigError(
            f"study {spec.name!r} has nothing to run: no space to search and no seeds section; "
            "add a space (the search) or seeds (for example seeds: {top_k: 1, n_seeds: 3})"
        )
    paths = resolve_paths(workdir, address, storage, tracking_uri, optuna_storage)
    check_destinations(paths)
    state_file = state_path(paths.workdir, spec.name)
    if state_file.exists() and not resume:
        raise CheckpointError(
            f"study {spec.name!r} already exists in {paths.workdir}: continue it with "
            f"'rblock-tune study resume {spec.name} --workdir {paths.workdir}', or pick another --name"
        )
    state: StudyState = read_state(state_file) if state_file.exists() else {}
    if state:
        check_format(state, state_file, f"cannot resume study {spec.name!r}")
        _check_not_running(state, spec.name)
    plan = plan_seeds(spec, paths.workdir)  # before anything is written: arms of other studies, seeds
    check_data(spec, paths, fetch=False)  # missing data that cannot be downloaded: before anything
    check_address(paths.address)  # seconds, not Ray's minutes of retries
    check_tracking_uri(paths.tracking_uri, reading=False, creates=paths.workdir)  # garbage, a dead server
    with _undone_on_error(paths.workdir, state_file.parent):
        paths.workdir.mkdir(parents=True, exist_ok=True)
        if spec.space:
            check_optuna_storage(paths.optuna_storage)
        check_data(spec, paths, fetch=True)  # a download, once the stores answered and before any state

        from rblock_tune.tuning import _phases  # Ray: only once a study really runs

        # the cluster answers, and can hold a trial, before study.json names it (a bad --address is
        # not frozen into the state) and before any Optuna trial exists
        _phases.init_ray(paths.address, state_file.parent / STUDY_LOG, verbosity)
        _phases.check_resources(_phases.trial_resources(spec))
    client = MlflowClient(tracking_uri=paths.tracking_uri)
    if "seed_phase_seeds" in state:  # resumed: the seeds some runs already used stay fixed
        plan["seeds"] = [int(seed) for seed in state["seed_phase_seeds"]]
    state.update(
        {
            "format": STATE_FORMAT,
            "name": spec.name,
            "spec": spec.raw,
            "workdir": str(paths.workdir),
            "storage": paths.storage,
            "tracking_uri": paths.tracking_uri,
            "optuna_storage": paths.optuna_storage,
            "address": paths.address,
            "search_seeds": plan["search_seeds"],
            "seed_phase_seeds": plan["seeds"],
        }
    )
    state.setdefault("search_done", not spec.space)
    state.setdefault("seeds_done", spec.seeds is None)
    state.setdefault("best", [])
    state["driver"] = this_driver()
    write_state(state_file, state)
    write_private(state_file.parent / SPEC_FILE, yaml.safe_dump(spec.raw, sort_keys=False))

    try:
        local = not paths.tracking_uri.startswith(("http://", "https://", "databricks"))
        artifacts = (paths.workdir / ARTIFACTS_DIR).as_uri() if local else None
        experiment_id = ensure_experiment(client, spec.name, artifacts)

        def result(seed_runs: int = 0, unfinished: _phases.PhaseOutcome | None = None) -> StudyResult:
            state["driver"] = None  # this driver is done with the study (a crash leaves its record)
            write_state(state_file, state)
            return StudyResult(
                spec.name,
                spec,
                state_file,
                state["best"],
                paths.tracking_uri,
                paths.storage,
                paths.optuna_storage,
                seed_runs,
                None if unfinished is None else unfinished.describe(),
                experiment_id,
            )

        if not state["search_done"]:
            outcome, best = _phases.search_phase(spec, paths, client, experiment_id, resume, verbosity)
            if not outcome.done:
                return result(unfinished=outcome)
            state["best"] = best
            write_best_configs(spec, state_file.parent, best, paths.optuna_storage if spec.space else None)
            state["search_done"] = True
            write_state(state_file, state)
        elif not spec.space:
            state["best"] = [{"overrides": {}, spec.metric: None}]
        seed_runs = 0
        if not state["seeds_done"]:
            outcome, seed_runs = _phases.seed_phase(
                spec, paths, client, experiment_id, state["best"], plan, resume, verbosity
            )
            if not outcome.done:
                return result(unfinished=outcome)
            state["seeds_done"] = True
            write_state(state_file, state)
        return result(seed_runs)
    finally:  # an error or Ctrl-C outside a phase's fit(): this driver is gone, its record with it
        if state.get("driver") is not None:
            state["driver"] = None
            write_state(state_file, state)


def _check_not_running(state: StudyState, name: str) -> None:
    """Refuse to run a study whose driver still runs it on this host (a second driver would run its
    trials twice); a driver recorded on another host cannot be checked: a warning, not a refusal, or a
    study whose driver died there could never be resumed."""
    driver: dict[str, Any] = dict(state.get("driver") or {})
    alive = driver_alive(driver)
    if alive is False or (alive and driver.get("pid") == this_driver()["pid"]):  # gone, or this process
        return
    where = f"driver pid {driver.get('pid')} on {driver.get('host')}"
    if alive is None:
        log.warning("study %r was last run by %s, which cannot be checked from here", name, where)
        return
    raise CheckpointError(
        f"study {name!r} is running ({where}): wait for it to end, or stop that driver (Ctrl-C) and "
        "resume it then"
    )


def resume_study(
    name_or_dir: str, workdir: str | Path = "rblock_runs", verbosity: int = NORMAL
) -> StudyResult:
    """Continue an interrupted study where it stopped."""
    state_file = locate_study(name_or_dir, workdir)
    state = read_state(state_file)
    spec = spec_from_state(state, state_file)
    storage = recorded_url(state, "storage", state_file) if state.get("address") else None
    return run_study(
        spec,
        workdir=state["workdir"],
        address=state.get("address"),
        storage=storage,
        tracking_uri=recorded_url(state, "tracking_uri", state_file),
        optuna_storage=recorded_url(state, "optuna_storage", state_file),
        resume=True,
        verbosity=verbosity,
    )


@dataclass(frozen=True)
class StudyStores:
    """Where a study's records are, read from its state file, checked for reading (never created).

    ``has_optuna`` is False for a study without a search (no Optuna storage was ever made)."""

    state_file: Path
    state: StudyState
    spec: StudySpec
    tracking_uri: str
    optuna_url: str
    has_optuna: bool


def open_stores(name_or_dir: str, workdir: str | Path = "rblock_runs") -> StudyStores:
    """The stores of a study by name or folder, for a reader (status, export): one line when the
    study, its state or a store is missing or unreadable."""
    state_file = locate_study(name_or_dir, workdir)
    state = read_state(state_file)
    spec = spec_from_state(state, state_file)
    tracking_uri = recorded_url(state, "tracking_uri", state_file)
    optuna_url = recorded_url(state, "optuna_storage", state_file)
    check_tracking_uri(tracking_uri, reading=True)  # a reader never creates a store
    optuna_path = sqlite_path(optuna_url)
    has_optuna = optuna_path is None or optuna_path.is_file()
    if has_optuna:
        check_optuna_url(optuna_url, reading=True)
        if optuna_path is None:  # a database server: it answers, within seconds, or one line
            check_optuna_storage(optuna_url)
    return StudyStores(state_file, state, spec, tracking_uri, optuna_url, has_optuna)


def study_status(name_or_dir: str, workdir: str | Path = "rblock_runs") -> dict[str, Any]:
    """Trials by state and the best so far, read from the Optuna study and MLflow.

    ``race`` is :func:`~rblock_tune.tuning._race.race_summary` of a racing seed phase (None
    otherwise). ``phases`` counts the runs of each phase by ``rblock.status``; an orphaned run (a trial the
    driver started just before a crash, which Ray never recorded and replaced on resume) is
    counted as ``orphaned`` rather than ``failed``.
    """
    import optuna

    stores = open_stores(name_or_dir, workdir)
    state_file, state, spec, tracking_uri = stores.state_file, stores.state, stores.spec, stores.tracking_uri
    optuna_url, has_optuna = stores.optuna_url, stores.has_optuna
    out: dict[str, Any] = {"name": spec.name, "state_file": str(state_file), "phases": {}}
    client = MlflowClient(tracking_uri=tracking_uri)
    out["phases"] = run_counts(client, spec.name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    best = None
    try:
        if not has_optuna:  # a study without a search: no Optuna storage was ever made
            raise KeyError(spec.name)
        study = optuna.load_study(study_name=spec.name, storage=optuna_url)
        top = top_configs(study, 1)
        best = top[0] if top else None
        out["optuna"] = optuna_counts(study)
    except KeyError:
        out["optuna"] = {}
    out["best"] = None if best is None else {"overrides": best[0], spec.metric: best[1]}
    out["search_seeds"] = state.get("search_seeds", {})
    out["seed_phase_seeds"] = state.get("seed_phase_seeds", [])
    race = read_race_state(state_file.parent / RACE_STATE_FILE)
    out["race"] = None if race is None else race_summary(race)
    out["search_done"] = state.get("search_done", False)
    out["seeds_done"] = state.get("seeds_done", False)
    out["tracking_uri"] = redact_url(tracking_uri)
    out["state"] = study_state(state)
    out["driver"] = state.get("driver")
    out["workdir"] = state.get("workdir", str(state_file.parent.parent))
    return out


def run_counts(client: MlflowClient, experiment_name: str) -> dict[str, dict[str, int]]:
    """The study's trial runs, by phase (``search``, ``seeds``) then ``rblock.status``; an orphaned run
    (a trial the driver started just before a crash, which Ray never recorded and replaced on
    resume) is counted as ``orphaned`` rather than ``failed``. Empty when the experiment does not
    exist."""
    experiment = client.get_experiment_by_name(experiment_name)
    counts: dict[str, dict[str, int]] = {}
    if experiment is not None:
        for run in client.search_runs([experiment.experiment_id], max_results=50000):
            role, phase = role_and_phase(run.data.tags.get(ROLE_TAG), run.data.tags.get(PHASE_TAG))
            if role == ROLE_TRIAL and phase is not None:
                status = run.data.tags.get(STATUS_TAG, "unknown")
                if status == FAILED and run.data.tags.get(ERROR_TAG, "").startswith(ORPHANED_ERROR):
                    status = ORPHANED  # replaced by another trial on resume: not a failure of a config
                counts.setdefault(phase, {}).setdefault(status, 0)
                counts[phase][status] += 1
    return counts


def optuna_counts(study: Any) -> dict[str, int]:
    """An Optuna study's trials by state (``complete``, ``pruned``, ``fail``, ``running``, ...)."""
    import optuna

    states = [t.state for t in study.get_trials(deepcopy=False)]  # once: ``study.trials`` deep-copies
    return {s.name.lower(): states.count(s) for s in optuna.trial.TrialState}
