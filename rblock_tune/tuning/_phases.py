"""The Ray side of a study: Ray itself, one Tuner per phase, and the driver's status callback.

A phase runs (or, on resume, continues) one Ray experiment to its end and reports how many of its
trials were left unfinished: on SIGINT (Ctrl-C) Ray Tune saves the experiment state and returns from
``fit()`` as if done, with its interrupted trials reported as terminated while the state it saved
still holds them as running; such a phase is not done, and ``study resume`` continues it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from mlflow.tracking import MlflowClient
from ray import tune
from ray._private import ray_constants
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from rblock_tune._stores import redact_url, remember, unredact, without_userinfo
from rblock_tune.config import config_from_dict, config_to_dict, describe_config, with_overrides
from rblock_tune.errors import ConfigError
from rblock_tune.layout import (
    COMPLETED,
    DIVERGED,
    EARLY_STOPPED,
    FAILED,
    FINAL_STATUSES,
    MLFLOW_RUN_ATTR,
    OPTUNA_RUNS_URL_ATTR,
    OPTUNA_STUDY_ATTRS,
    PARENT_TAG,
    PHASE_SEARCH,
    PHASE_SEEDS,
    RACE_LOOKS_ARTIFACT,
    RACE_STATE_FILE,
    RESULT_RUN_ENDED,
    STATUS_TAG,
    TRIAL_TAG,
    mlflow_runs_url,
    seed_run_name,
    stopped_name,
)
from rblock_tune.tuning._arms import build_arms
from rblock_tune.tuning._best import top_trials
from rblock_tune.tuning._display import StudyDisplay
from rblock_tune.tuning._entry import (
    FUSED_SEEDS_KEY,
    STATE_DIR,
    TrialContext,
    delete_own_checkpoints,
    run_fused_trial,
    run_trial,
)
from rblock_tune.tuning._interrupt import raise_if_interrupted
from rblock_tune.tuning._malloc import limit_arenas
from rblock_tune.tuning._race import RaceSearcher, write_looks
from rblock_tune.tuning._race_record import read_race_state
from rblock_tune.tuning._ray_output import route_ray_output, route_worker_output, tune_verbose
from rblock_tune.tuning._searcher import OptunaStudySearcher, grid_points
from rblock_tune.tuning._spec import EVERY_EPOCH, StudySpec
from rblock_tune.tuning._tracking import (
    append_to_log,
    describe_parent,
    fail_orphan_runs,
    find_or_create_parent,
    find_runs,
    log_arms_record,
    log_search_record,
    set_run_status,
)
from rblock_tune.tuning._verbosity import NORMAL
from rblock_tune.tuning._workdir import StudyPaths

__all__ = ["PhaseOutcome", "check_resources", "init_ray", "search_phase", "seed_phase", "trial_resources"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhaseOutcome:
    """How one phase ended: ``unfinished`` trials of ``expected`` (0 when it ran to its end)."""

    name: str
    expected: int
    unfinished: int

    @property
    def done(self) -> bool:
        return self.unfinished == 0

    def describe(self) -> str:
        return f"{self.name} stopped with {self.unfinished} of {self.expected} trials unfinished"


_RAY_DEFAULT_LOGGERS_ENV = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
"""Ray Tune's switch for its default loggers (CSV, JSON, TensorBoard): see :func:`_run_config`."""

AUTOSCALING_ENV = "RBLOCK_CLUSTER_AUTOSCALES"
"""Set to 1 when the cluster adds nodes on demand: a trial may then ask for more than any node has now."""


def init_ray(address: str | None, log_file: Path | None = None, verbosity: int = NORMAL) -> None:
    """Join the cluster at ``address`` (:func:`~rblock_tune.tuning._workdir.check_address` has seen
    it answer), or start a local Ray that listens on 127.0.0.1 only (once per process); Ray's own
    output goes to ``log_file`` unless ``verbosity`` is :data:`~rblock_tune.tuning._display.VERBOSE`."""
    if log_file is not None:
        route_ray_output(log_file, verbosity)
    if not ray.is_initialized():
        _start_ray(address)
    if log_file is not None:
        route_worker_output(verbosity)


def _start_ray(address: str | None) -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    limit_arenas()  # this process becomes a study's driver: before Ray starts its threads
    if address and address != "local":
        # Ray retries joining for minutes: a few seconds here (an operator's own settings win)
        # (check_address has seen a gRPC server answer there; Ray's C++ timeouts are read at import)
        short = {"RAY_gcs_server_port_wait_time_s": "2"}
        before = {key: os.environ.get(key) for key in short}
        os.environ.update({key: value for key, value in short.items() if before[key] is None})
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=True)
        except ConnectionError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"--address {address}: no Ray cluster answers there ({reason}); start its head with "
                "'ray start --head' or pass the head's HOST:PORT"
            ) from None
        finally:
            for key, value in before.items():
                if value is None:
                    os.environ.pop(key, None)
    else:  # "local": never join a cluster found through RAY_ADDRESS or an address file
        # Ray's servers (GCS, raylet, workers, driver) listen on 127.0.0.1 only when the node's IP is
        # the loopback one, which Ray picks where clusters are off (its macOS default): this
        # process's Ray reads the switch at import, the processes it starts from the environment.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        ray_constants.ENABLE_RAY_CLUSTER = False
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1")


def check_resources(resources: Mapping[str, float]) -> None:
    """Refuse, with one line, a per-trial request (``{"CPU": 1, "GPU": 1}``) that no node of the
    cluster can hold: Ray would keep the trials PENDING forever. Unless :data:`AUTOSCALING_ENV` says
    the cluster grows on demand."""
    if os.environ.get(AUTOSCALING_ENV, "") not in ("", "0"):
        return
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]  # type: ignore[no-untyped-call]
    asked = {k: float(v) for k, v in resources.items() if v}
    if any(all(node.get(k, 0.0) >= v for k, v in asked.items()) for node in nodes):
        return

    def show(amounts: Mapping[str, float]) -> str:
        return ", ".join(f"{amounts.get(k, 0.0):g} {k}" for k in asked)

    largest = ", ".join(sorted({show(node) for node in nodes})) or "no live node"
    raise ConfigError(
        f"each trial asks for {show(asked)} (resources: in the spec) but no node of the Ray cluster has "
        f"that (nodes: {largest}); lower resources.cpus/gpus, run where such a node exists, or set "
        f"{AUTOSCALING_ENV}=1 when the cluster adds nodes on demand"
    )


def trial_resources(spec: StudySpec) -> dict[str, float]:
    """What one trial asks Ray for, in Ray's resource names."""
    return {"CPU": spec.resources.cpus, "GPU": spec.resources.gpus}


class _StatusCallback(tune.Callback):  # type: ignore[misc]
    """Driver-side final ``rblock.status`` of each trial's MLflow run (a trial sets ``completed`` and
    ``diverged`` itself; ASHA's stops and errors are only seen here). A trial whose last result says
    it ended its run itself (:data:`~rblock_tune.layout.RESULT_RUN_ENDED`) costs the driver no MLflow
    call; an error overrides a ``completed`` the trial wrote before its last report failed."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, budget: int) -> None:
        self.tracking_uri = remember(tracking_uri)
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.budget = budget

    def __getstate__(self) -> dict[str, Any]:  # Ray pickles it into tuner.pkl: without the password
        return {**self.__dict__, "tracking_uri": redact_url(self.tracking_uri)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.tracking_uri = unredact(self.tracking_uri)

    def _set(self, trial: Any, status: str, epoch: int = 0) -> None:
        client = MlflowClient(tracking_uri=self.tracking_uri)
        tags = {PARENT_TAG: self.parent_run_id, TRIAL_TAG: trial.trial_id}
        for run_id in find_runs(client, self.experiment_id, tags):  # a fused trial: one run per member
            self._set_run(client, run_id, status, epoch)

    def _set_run(self, client: MlflowClient, run_id: str, status: str, epoch: int) -> None:
        run = client.get_run(run_id)
        final = run.data.tags.get(STATUS_TAG)
        if final in FINAL_STATUSES and not (status == FAILED and final == COMPLETED):
            return
        line = f"finished: {status}"
        if status == EARLY_STOPPED:  # MLflow has no such status: the run's name says it
            name = run.info.run_name or ""
            renamed = stopped_name(name, epoch, self.budget)
            if renamed != name:
                client.update_run(run_id, name=renamed)
            line += f" (ASHA stopped it after epoch {epoch} of {self.budget})"
        elif status == FAILED:
            line += " (the trial raised after its retries; Ray's error is in the study's study.log)"
        append_to_log(client, run_id, line)
        set_run_status(client, run_id, status)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        if last.get(RESULT_RUN_ENDED):
            return
        if last.get("diverged"):
            self._set(trial, DIVERGED)
        elif int(last.get("epoch", 0)) < self.budget:
            self._set(trial, EARLY_STOPPED, int(last.get("epoch", 0)))
        else:
            self._set(trial, COMPLETED)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._set(trial, FAILED)


def _fit(
    name: str,
    trainable: Any,
    paths: StudyPaths,
    build: Callable[[], Any],
    resume: bool,
    expected: int,
    run_config: tune.RunConfig,
    race: bool = False,
) -> PhaseOutcome:
    """Fit (or continue) one phase's Tuner; how many of its ``expected`` trials it left unfinished
    (a ``race`` has no fixed count: the trials Ray holds unfinished). ``run_config`` is the one
    ``build`` uses; a restored Tuner gets its callbacks and verbosity too."""
    experiment = f"{paths.storage.rstrip('/')}/{name}"
    remember(paths.tracking_uri)  # before Ray unpickles a restored phase's status callback
    if resume and tune.Tuner.can_restore(experiment):
        log.info("restoring %s", experiment)
        tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
        _refresh_run_config(tuner, run_config)
    else:
        tuner = build()
    raise_if_interrupted()  # a Ctrl-C a finalizer swallowed while the phase was set up
    tuner.fit()
    raise_if_interrupted()
    saved = tune.ExperimentAnalysis(experiment).trials
    finished = sum(t.status in ("TERMINATED", "ERROR") for t in saved)
    unfinished = len(saved) - finished if race else max(expected - finished, 0)
    outcome = PhaseOutcome(name, expected, unfinished)
    for callback in run_config.callbacks or []:
        if isinstance(callback, StudyDisplay):
            callback.finish(outcome.unfinished)
    return outcome


def _refresh_run_config(tuner: Any, run_config: tune.RunConfig) -> None:
    """A restored Tuner runs with the callbacks and verbosity of ``run_config`` rather than those
    pickled with the experiment (its display, this run's ``-v``). Ray has no public setter: this
    sets the restored ``RunConfig`` of the Ray minor version pinned in pyproject."""
    restored = getattr(getattr(tuner, "_local_tuner", None), "get_run_config", None)
    if restored is None:
        return
    restored_config = restored()
    restored_config.callbacks = list(run_config.callbacks or [])
    restored_config.verbose = run_config.verbose


def reported_metrics(spec: StudySpec, phase: str) -> tuple[str, ...]:
    """The metrics a phase's trials report to Ray besides the study's own ``metric`` (which the
    searcher, the scheduler and the display read): a racing seed phase's metric, which its searcher
    reads from each final result."""
    race = spec.race_design() if phase == PHASE_SEEDS else None
    return () if race is None or race["metric"] == spec.metric else (str(race["metric"]),)


def _trainable(
    spec: StudySpec,
    paths: StudyPaths,
    name: str,
    phase: str,
    epochs: int,
    experiment_id: str,
    parent: str,
    arms: dict[str, dict[str, Any]],
    function: Callable[..., None] = run_trial,
) -> tuple[Any, str]:
    """The Ray trainable of one phase (Ray experiment ``name``; ``function``: a trial, solo or fused),
    and where its trials keep their own checkpoint copies."""
    state_uri = f"{paths.storage.rstrip('/')}/{name}/{STATE_DIR}"
    context = TrialContext(
        study=spec.name,
        phase=phase,
        base=config_to_dict(spec.base),
        epochs=epochs,
        metric=spec.metric,
        mode=spec.mode,
        tracking_uri=paths.tracking_uri,
        experiment_id=experiment_id,
        parent_run_id=parent,
        state_uri=state_uri,
        arms=arms,
        measure_test=phase != PHASE_SEARCH or spec.search_measures_test,
        test_every_epoch=phase == PHASE_SEARCH and spec.search.test_acc == EVERY_EPOCH,
        resources=spec.resources,
        max_concurrent=spec.search.max_concurrent,  # both phases: the search's limit, the seeds' too
        reported=reported_metrics(spec, phase),
    )
    resources = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus}
    return tune.with_resources(tune.with_parameters(function, context=context), resources), state_uri


def _run_config(
    name: str,
    spec: StudySpec,
    paths: StudyPaths,
    experiment_id: str,
    parent: str,
    budget: int,
    expected: int,
    verbosity: int,
    runs: int | None = None,
) -> tune.RunConfig:
    """The run config of one phase of ``expected`` Ray trials; ``runs``: the runs they train, when a
    trial trains several (a fused seed phase: the display counts runs).

    Of Ray's own loggers only the JSON one writes (each trial's ``result.json``): nothing reads Ray's
    CSV and TensorBoard files (MLflow has every metric), and the TensorBoard logger imported torch into
    the driver and cost it a writer and its thread per trial (about 10 ms of a 1,000-trial study's
    driver time per trial). An operator's ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=0`` brings them back."""
    os.environ.setdefault(_RAY_DEFAULT_LOGGERS_ENV, "1")  # read by Tuner.fit()
    phase = "search" if name.endswith("-search") else "seeds"
    unit = "trials" if runs is None else "runs"
    display = StudyDisplay(
        phase, expected if runs is None else runs, spec.metric, spec.mode, budget, verbosity, unit=unit
    )
    return tune.RunConfig(
        name=name,
        storage_path=paths.storage,
        failure_config=tune.FailureConfig(max_failures=spec.failures.retries),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[
            JsonLoggerCallback(),  # type: ignore[no-untyped-call]
            _StatusCallback(paths.tracking_uri, experiment_id, parent, budget),
            display,
        ],
        verbose=tune_verbose(verbosity),
    )


def optuna_links(spec: StudySpec, paths: StudyPaths, experiment_id: str) -> dict[str, str]:
    """The Optuna study's user attributes pointing to the study's MLflow experiment and work
    directory (:data:`~rblock_tune.layout.OPTUNA_STUDY_ATTRS`; no password)."""
    tracking = redact_url(paths.tracking_uri)
    values = (spec.name, experiment_id, tracking, str(paths.workdir))
    links = dict(zip(OPTUNA_STUDY_ATTRS, values, strict=True))
    if tracking.startswith(("http://", "https://")):
        links[OPTUNA_RUNS_URL_ATTR] = mlflow_runs_url(without_userinfo(paths.tracking_uri), experiment_id)
    return links


def arms_description(
    spec: StudySpec, arms: Mapping[str, Mapping[str, Any]], seeds: list[int], epochs: int
) -> str:
    """The seeds parent run's description: every arm's configuration in one line each."""
    base = config_from_dict(config_to_dict(spec.base))
    example = seed_run_name(next(iter(arms), "top1"), seeds[0] if seeds else 1)
    lines = [
        f"Seed phase of study {spec.name}: {len(arms)} arms x {len(seeds)} seeds {seeds}, {epochs} epochs "
        f"each; a run is named by its arm and seed (`{example}`).",
        "",
    ]
    race = spec.race_design()
    if race is not None:
        lines[0] = (
            f"Racing seed phase of study {spec.name}: {len(arms)} arms against `{race['baseline']}` on "
            f"{race['metric']}, up to {len(seeds)} seeds {seeds} each (seed-major; an arm decided at "
            f"family-wise error {race['alpha']:g} gets no more), {epochs} epochs each; a run is named by "
            f"its arm and seed (`{example}`). Every look: artifact `{RACE_LOOKS_ARTIFACT}`."
        )
    for label, overrides in arms.items():
        config = with_overrides(base, {**overrides, "train.epochs": epochs})
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in overrides.items()
        )
        lines.append(f"- **{label}**: {describe_config(config, overrides)} ({shown or 'the base config'})")
    return "\n".join(lines)


def search_scheduler(spec: StudySpec, budget: int) -> Any:
    """The search's Ray scheduler: ASHA on the epochs (rungs at ``grace_period`` times powers of
    ``reduction_factor``, up to ``budget``), or FIFO. A replay (:mod:`rblock_tune.tuning._replay`)
    builds its scheduler here too."""
    if spec.scheduler.type == "asha":
        return ASHAScheduler(
            time_attr="epoch",
            metric=spec.metric,
            mode=spec.mode,
            max_t=budget,
            grace_period=spec.scheduler.grace_period,
            reduction_factor=spec.scheduler.reduction_factor,
        )
    return FIFOScheduler()  # type: ignore[no-untyped-call]


def search_algorithm(spec: StudySpec, searcher: Any) -> ConcurrencyLimiter:
    """The search's Ray search algorithm: ``searcher`` held to ``search.max_concurrent`` trials at
    once (a replay's too)."""
    return ConcurrencyLimiter(searcher, max_concurrent=spec.search.max_concurrent)


def search_phase(
    spec: StudySpec,
    paths: StudyPaths,
    client: MlflowClient,
    experiment_id: str,
    resume: bool,
    verbosity: int = NORMAL,
) -> tuple[PhaseOutcome, list[dict[str, Any]]]:
    """Run the search; its outcome and, when done, the best configurations (best first)."""
    name = f"{spec.name}-search"
    parent = find_or_create_parent(client, experiment_id, spec.name, PHASE_SEARCH)
    budget = spec.search_epochs
    trainable, state_uri = _trainable(spec, paths, name, PHASE_SEARCH, budget, experiment_id, parent, {})
    searcher = OptunaStudySearcher(
        spec, paths.optuna_storage, spec.name, budget, links=optuna_links(spec, paths, experiment_id)
    )
    num_samples = len(grid_points(spec)) if spec.search.algorithm == "grid" else spec.search.num_samples
    run_config = _run_config(name, spec, paths, experiment_id, parent, budget, num_samples, verbosity)

    def build() -> tune.Tuner:
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=search_algorithm(spec, searcher),
                scheduler=search_scheduler(spec, budget),
                num_samples=num_samples,
                reuse_actors=True,  # a new trial skips the worker's start and imports
            ),
            run_config=run_config,
        )

    outcome = _fit(name, trainable, paths, build, resume, num_samples, run_config)
    if not outcome.done:
        return outcome, []
    delete_own_checkpoints(state_uri)
    searcher.fail_orphans()
    fail_orphan_runs(client, experiment_id, parent)
    k = spec.seeds.top_k if spec.seeds is not None else 1
    top = top_trials(searcher.study, max(k, 1))
    best = [{"overrides": dict(t.params), spec.metric: float(t.value)} for t in top]  # type: ignore[arg-type]
    best_run = top[0].user_attrs.get(MLFLOW_RUN_ATTR) if top else None
    log_search_record(client, parent, spec, best, best_run=best_run)
    set_run_status(client, parent, COMPLETED)
    return outcome, best


def seed_phase(
    spec: StudySpec,
    paths: StudyPaths,
    client: MlflowClient,
    experiment_id: str,
    best: list[dict[str, Any]],
    plan: dict[str, Any],
    resume: bool,
    verbosity: int = NORMAL,
) -> tuple[PhaseOutcome, int]:
    """Run every arm on every seed of ``plan`` (a race: on the seeds the race hands out,
    :mod:`rblock_tune.tuning._race`); its outcome and how many runs it had."""
    assert spec.seeds is not None
    name = f"{spec.name}-seeds"
    arms = build_arms(spec, paths.workdir, best)
    parent = find_or_create_parent(client, experiment_id, spec.name, PHASE_SEEDS)
    epochs = spec.seed_epochs
    fused = spec.seeds.fuse > 1
    trainable, state_uri = _trainable(
        spec,
        paths,
        name,
        PHASE_SEEDS,
        epochs,
        experiment_id,
        parent,
        arms,
        run_fused_trial if fused else run_trial,
    )
    seeds = [int(seed) for seed in plan["seeds"]]
    groups = spec.seeds.seed_groups(seeds)
    describe_parent(client, parent, arms_description(spec, arms, seeds, epochs))
    expected = len(arms) * (len(groups) if fused else len(seeds))  # Ray trials
    run_config = _run_config(
        name,
        spec,
        paths,
        experiment_id,
        parent,
        epochs,
        expected,
        verbosity,
        len(arms) * len(seeds) if fused else None,
    )

    race = spec.race_design()
    searcher = None
    if race is not None:  # runs on demand until the race is over
        searcher = RaceSearcher(
            design=race,
            arms=list(arms),
            seeds=seeds,
            epochs=epochs,
            max_concurrent=spec.search.max_concurrent,
            record_file=paths.workdir / spec.name / RACE_STATE_FILE,
            experiment_path=f"{paths.storage.rstrip('/')}/{name}",
            tracking_uri=paths.tracking_uri,
            parent_run_id=parent,
        )
        searcher.check_record()  # a record of another phase, or Ray's unreadable: one line, before Ray
        searcher.ray_trials()

    def build() -> tune.Tuner:
        if searcher is not None:
            return tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1, reuse_actors=True),
                run_config=run_config,
            )
        space = (
            {"arm": tune.grid_search(list(arms)), FUSED_SEEDS_KEY: tune.grid_search(groups)}
            if fused
            else {"arm": tune.grid_search(list(arms)), "seed": tune.grid_search(seeds)}
        )
        return tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                num_samples=1, max_concurrent_trials=spec.search.max_concurrent, reuse_actors=True
            ),
            run_config=run_config,
        )

    outcome = _fit(name, trainable, paths, build, resume, expected, run_config, race=race is not None)
    if not outcome.done:
        return outcome, 0
    runs = len(arms) * len(seeds)
    if race is not None:
        record = read_race_state(paths.workdir / spec.name / RACE_STATE_FILE) or {}
        if not record.get("over"):
            return PhaseOutcome(name, expected, 1), 0
        runs = sum(len(s) for s in record.get("results", {}).values())
        # every look and every arm's final decision, again: the searcher's last write may have failed
        write_looks(client, parent, race, record.get("looks") or [], final=True)
    delete_own_checkpoints(state_uri)
    fail_orphan_runs(client, experiment_id, parent)
    log_arms_record(
        client,
        parent,
        arms=arms,
        seeds=seeds,
        search_seeds=plan["search_seeds"],
        allow_search_seeds=spec.seeds.allow_search_seeds,
    )
    set_run_status(client, parent, COMPLETED)
    return outcome, runs
