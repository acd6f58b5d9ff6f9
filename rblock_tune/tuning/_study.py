"""Running, resuming and inspecting a study: search phase, then seed phase.

Layout of a work directory (default ``./rblock_runs``)::

    <workdir>/mlflow.db            MLflow tracking (unless --tracking-uri)
    <workdir>/optuna.db            Optuna studies, unless --optuna-storage (optuna-dashboard URL)
    <workdir>/ray/                 Ray Tune results and trial checkpoints (unless --storage)
    <workdir>/<study>/study.json   the study's state: spec, locations, phases done, best configs
    <workdir>/<study>/spec.yaml    the spec as run
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rblock_tune.config import config_to_dict, flatten_config, with_overrides
from rblock_tune.errors import CheckpointError, ConfigError
from rblock_tune.tuning._spec import StudySpec, search_seeds, spec_from_dict

__all__ = [
    "StudyPaths",
    "StudyResult",
    "build_arms",
    "plan_seeds",
    "redact_url",
    "resolve_arms",
    "resume_study",
    "run_study",
    "study_status",
]

log = logging.getLogger(__name__)

STATE_FILE = "study.json"
STATE_FORMAT = 2
"""Version of ``study.json``. 2: seed phases avoid search seeds (``seed_phase_seeds``) and
``reg.drop_prob`` is read on ``reg.rate_basis`` (default ``submodel``). A study of format 1 (no
``format`` key) meant other seeds and, for R-Block, half the drop rate: it is neither resumed nor
taken as a ``from_study`` arm."""
_LOCAL_KEYS = frozenset({"seed", "data.root", "data.cache_dir", "train.device", "train.epochs"})
"""Keys a ``from_study`` arm does not take from the other study: where and how long it ran."""


@dataclass(frozen=True)
class StudyPaths:
    """Where a study keeps everything."""

    workdir: Path
    storage: str
    tracking_uri: str
    optuna_storage: str
    address: str | None


@dataclass(frozen=True)
class StudyResult:
    """What a finished study returns (and the CLI prints)."""

    name: str
    state_file: Path
    best: list[dict[str, Any]]
    tracking_uri: str
    storage: str
    optuna_storage: str
    seed_runs: int
    report: Path | None = None
    report_error: str | None = None


def _is_remote_uri(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def resolve_paths(
    workdir: str | Path,
    address: str | None,
    storage: str | None,
    tracking_uri: str | None,
    optuna_storage: str | None = None,
) -> StudyPaths:
    """Defaults and the rules for a remote cluster (one-line errors)."""
    work = Path(workdir).expanduser().resolve()
    tracking = tracking_uri or f"sqlite:///{work / 'mlflow.db'}"
    ray_storage = storage or str(work / "ray")
    if address and address not in ("local",):
        if tracking.startswith(("sqlite:", "file:")) or "://" not in tracking:
            raise ConfigError(
                f"--address {address} runs trials on other machines, which cannot write the local "
                f"tracking store {tracking}: start an MLflow server and pass --tracking-uri http://HOST:PORT"
            )
        if storage is None:
            raise ConfigError(
                f"--address {address} needs --storage: a path every node sees (NFS) or cloud storage "
                "(s3://...), for Ray's results and checkpoints"
            )
    if not _is_remote_uri(ray_storage):
        ray_storage = str(Path(ray_storage).expanduser().resolve())
    optuna_url = optuna_storage or f"sqlite:///{work / 'optuna.db'}"
    if "://" not in optuna_url:
        raise ConfigError(
            f"--optuna-storage {optuna_url!r} is not a database URL: use sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST:5432/optuna"
        )
    return StudyPaths(work, ray_storage, tracking, optuna_url, address)


def redact_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***``."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def check_optuna_storage(url: str) -> None:
    """Fail fast, with one line, when the Optuna storage cannot be opened (before Ray starts)."""
    import optuna
    import sqlalchemy.exc

    shown = redact_url(url)
    try:
        optuna.storages.RDBStorage(url)
    except ImportError:  # optuna turns a missing driver (psycopg2, ...) into an ImportError
        raise ConfigError(
            f"optuna storage {shown} needs its database driver, which is not installed: "
            "pip install 'rblock-tune[cluster]' (PostgreSQL), or the driver of that database"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(
            f"optuna storage {shown} cannot be opened ({reason}); start the database or pass another "
            "--optuna-storage"
        ) from None


def _state_path(workdir: Path, name: str) -> Path:
    return workdir / name / STATE_FILE


def _write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


def _init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
    else:  # "local": never join a cluster found through RAY_ADDRESS or an address file
        ray.init(address="local", include_dashboard=False)


def _mlflow(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    from rblock_tune.tuning._tracking import check_tracking

    check_tracking(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri)


def _status_callback(tracking_uri: str, experiment_id: str, parent_run_id: str, budget: int) -> Any:
    from ray.tune import Callback

    from rblock_tune.tuning._tracking import PARENT_TAG, STATUS_TAG, TRIAL_TAG, _find, set_run_status

    class _Status(Callback):  # type: ignore[misc]
        """Driver-side final ``rblock.status`` of each trial's MLflow run."""

        def _set(self, trial: Any, status: str) -> None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=tracking_uri)
            run_id = _find(client, experiment_id, {PARENT_TAG: parent_run_id, TRIAL_TAG: trial.trial_id})
            if run_id is None:
                return
            if client.get_run(run_id).data.tags.get(STATUS_TAG) in ("completed", "diverged"):
                return
            set_run_status(client, run_id, status)

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            last = trial.last_result or {}
            if last.get("diverged"):
                self._set(trial, "diverged")
            elif int(last.get("epoch", 0)) < budget:
                self._set(trial, "early_stopped")
            else:
                self._set(trial, "completed")

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._set(trial, "failed")

    return _Status()


def _run_tuner(name: str, trainable: Any, paths: StudyPaths, build: Any, resume: bool, expected: int) -> Any:
    """Fit (or continue) one phase's Tuner; raise KeyboardInterrupt when it stopped before all
    ``expected`` trials finished.

    On SIGINT (Ctrl-C) Ray Tune saves the experiment state, stops, and returns from ``fit()`` as
    if done, with its interrupted trials reported as terminated; the state it saved still holds
    them as running. Then the phase must not be marked done (``study resume`` continues it).
    """
    from ray import tune

    experiment = f"{paths.storage.rstrip('/')}/{name}"
    if resume and tune.Tuner.can_restore(experiment):
        log.info("restoring %s", experiment)
        tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
    else:
        tuner = build()
    results = tuner.fit()
    saved = tune.ExperimentAnalysis(experiment).trials
    finished = sum(t.status in ("TERMINATED", "ERROR") for t in saved)
    if finished < expected:
        raise KeyboardInterrupt(
            f"{name} stopped with {expected - finished} of {expected} trials unfinished; "
            "'rblock-tune study resume' continues it"
        )
    return results


def _phase_trainable(
    spec: StudySpec,
    paths: StudyPaths,
    name: str,
    role: str,
    epochs: int,
    experiment_id: str,
    parent: str,
    arms: dict[str, dict[str, Any]],
) -> tuple[Any, str]:
    """The Ray trainable of one phase (Ray experiment ``name``), and where its trials keep their
    own checkpoint copies."""
    from ray import tune

    from rblock_tune.tuning._trainable import STATE_DIR, TrialContext, run_trial

    state_uri = f"{paths.storage.rstrip('/')}/{name}/{STATE_DIR}"
    context = TrialContext(
        study=spec.name,
        role=role,
        base=config_to_dict(spec.base),
        epochs=epochs,
        metric=spec.metric,
        mode=spec.mode,
        tracking_uri=paths.tracking_uri,
        experiment_id=experiment_id,
        parent_run_id=parent,
        state_uri=state_uri,
        arms=arms,
    )
    resources = {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus}
    return tune.with_resources(tune.with_parameters(run_trial, context=context), resources), state_uri


def _search_phase(
    spec: StudySpec, paths: StudyPaths, client: Any, experiment_id: str, resume: bool
) -> list[dict[str, Any]]:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    from rblock_tune.tuning._searcher import OptunaStudySearcher, grid_points, top_configs
    from rblock_tune.tuning._tracking import fail_orphan_runs, find_or_create_parent
    from rblock_tune.tuning._trainable import delete_own_checkpoints

    parent = find_or_create_parent(client, experiment_id, spec.name, "study")
    budget = spec.search_epochs
    trainable, state_uri = _phase_trainable(
        spec, paths, f"{spec.name}-search", "trial", budget, experiment_id, parent, {}
    )
    searcher = OptunaStudySearcher(spec, paths.optuna_storage, spec.name, budget)
    num_samples = len(grid_points(spec)) if spec.search.algorithm == "grid" else spec.search.num_samples

    def build() -> Any:
        scheduler: Any
        if spec.scheduler.type == "asha":
            scheduler = ASHAScheduler(
                time_attr="epoch",
                metric=spec.metric,
                mode=spec.mode,
                max_t=budget,
                grace_period=spec.scheduler.grace_period,
                reduction_factor=spec.scheduler.reduction_factor,
            )
        else:
            scheduler = FIFOScheduler()  # type: ignore[no-untyped-call]
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.search.max_concurrent),
                scheduler=scheduler,
                num_samples=num_samples,
                reuse_actors=True,  # a new trial skips the worker's start and imports
            ),
            run_config=_run_config(f"{spec.name}-search", spec, paths, experiment_id, parent, budget),
        )

    _run_tuner(f"{spec.name}-search", trainable, paths, build, resume, num_samples)
    delete_own_checkpoints(state_uri)
    study = searcher.study
    searcher.fail_orphans()
    fail_orphan_runs(client, experiment_id, parent)
    k = spec.seeds.top_k if spec.seeds is not None else 1
    best = [{"overrides": o, spec.metric: v} for o, v in top_configs(study, max(k, 1))]
    artifacts = {
        "best_configs.yaml": yaml.safe_dump(best, sort_keys=False),
        "spec.yaml": yaml.safe_dump(spec.raw, sort_keys=False),
    }
    for file_name, text in artifacts.items():
        client.log_text(parent, text, file_name)
    from rblock_tune.tuning._tracking import set_run_status

    set_run_status(client, parent, "completed")
    return best


def _run_config(
    name: str, spec: StudySpec, paths: StudyPaths, experiment_id: str, parent: str, budget: int
) -> Any:
    from ray import tune

    return tune.RunConfig(
        name=name,
        storage_path=paths.storage,
        failure_config=tune.FailureConfig(max_failures=spec.failures.retries),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[_status_callback(paths.tracking_uri, experiment_id, parent, budget)],
        verbose=1,
    )


def _check_format(state: dict[str, Any], path: Path, what: str) -> None:
    """Refuse a study state written by an rblock-tune whose seeds and drop rates meant otherwise."""
    if state.get("format") != STATE_FORMAT:
        raise CheckpointError(
            f"{what}: {path} was written by an older rblock-tune (study state format "
            f"{state.get('format', 1)}, this one writes {STATE_FORMAT}), whose seed phase reused the search "
            "seed and whose R-Block drop rates meant the shared mask's; run that study again with this "
            "version"
        )


def _other_study(workdir: Path, label: str, name: str) -> tuple[StudySpec, dict[str, Any]]:
    """The spec and state of another study of the same workdir, for a ``from_study`` arm."""
    other = _state_path(workdir, name)
    if not other.is_file():
        raise ConfigError(
            f"seeds arm {label!r}: from_study {name!r} has no state at {other}; "
            "run that study first in the same --workdir"
        )
    state = json.loads(other.read_text())
    _check_format(state, other, f"seeds arm {label!r}: from_study {name!r}")
    return spec_from_dict(state["spec"]), state


def resolve_arms(spec: StudySpec, workdir: Path) -> dict[str, dict[str, Any]]:
    """The spec's own seed-phase arms (label -> overrides of the base), ``from_study`` resolved.

    A ``from_study`` arm takes the whole winning configuration of that study (its base plus
    its best trial's parameters, as overrides of this study's base, apart from where and how
    long it ran), then the arm's own ``set``.

    Raises:
        ConfigError: a ``from_study`` study that has not run (or has no completed trial) in
            ``workdir``, or an arm that makes no valid config.
    """
    assert spec.seeds is not None
    arms: dict[str, dict[str, Any]] = {}
    for arm in spec.seeds.arms:
        overrides = dict(arm.overrides)
        if arm.from_study is not None:
            other_spec, other_state = _other_study(workdir, arm.label, arm.from_study)
            other_best = other_state.get("best") or []
            if not other_best:
                raise ConfigError(f"seeds arm {arm.label!r}: study {arm.from_study!r} has no completed trial")
            winner = flatten_config(with_overrides(other_spec.base, other_best[0]["overrides"]))
            mine = flatten_config(spec.base)
            carried = {k: v for k, v in winner.items() if v != mine[k] and k not in _LOCAL_KEYS}
            overrides = {**carried, **overrides}
        arms[arm.label] = overrides
    for overrides in arms.values():  # every arm must make a valid config, for the seed phase's epochs
        with_overrides(spec.base, {**overrides, "train.epochs": spec.seed_epochs})
    return arms


def build_arms(spec: StudySpec, workdir: Path, best: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Seed-phase arms: ``top1..topK`` from the search, then the spec's arms (:func:`resolve_arms`)."""
    assert spec.seeds is not None
    arms: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(best[: spec.seeds.top_k]):
        arms[f"top{i + 1}"] = dict(entry["overrides"])
    arms.update(resolve_arms(spec, workdir))
    return arms


def plan_seeds(spec: StudySpec, workdir: Path) -> dict[str, Any]:
    """The seeds of each phase, fixed before any trial runs.

    Returns:
        ``{"search_seeds": {study: [seeds its search trials ran with]}, "seeds": [seed-phase
        seeds]}``; ``search_seeds`` names this study and every ``from_study`` study, since those
        searches selected arms of this seed phase too. By default the seed-phase seeds start after
        the largest of them; explicit ``seeds.seeds`` that reuse one are refused unless
        ``seeds.allow_search_seeds`` is set.

    Raises:
        ConfigError: a ``from_study`` study is missing, or explicit seeds reuse a search seed.
    """
    used: dict[str, list[int]] = {spec.name: search_seeds(spec)}
    if spec.seeds is None:
        return {"search_seeds": used, "seeds": []}
    resolve_arms(spec, workdir)  # a missing from_study study stops the study here, not after its search
    for arm in spec.seeds.arms:
        if arm.from_study is not None and arm.from_study not in used:
            other_spec, _ = _other_study(workdir, arm.label, arm.from_study)
            used[arm.from_study] = search_seeds(other_spec)
            spec.seeds.check_disjoint(used[arm.from_study], f"study {arm.from_study!r}'s search trials")
    every = sorted({seed for seeds in used.values() for seed in seeds})
    return {"search_seeds": used, "seeds": spec.seeds.seed_list(every)}


def _seed_phase(
    spec: StudySpec,
    paths: StudyPaths,
    client: Any,
    experiment_id: str,
    best: list[dict[str, Any]],
    plan: dict[str, Any],
    resume: bool,
) -> tuple[dict[str, dict[str, Any]], int]:
    from ray import tune

    from rblock_tune.tuning._tracking import fail_orphan_runs, find_or_create_parent, set_run_status
    from rblock_tune.tuning._trainable import delete_own_checkpoints

    assert spec.seeds is not None
    arms = build_arms(spec, paths.workdir, best)
    parent = find_or_create_parent(client, experiment_id, spec.name, "seeds")
    epochs = spec.seed_epochs
    trainable, state_uri = _phase_trainable(
        spec, paths, f"{spec.name}-seeds", "seed_run", epochs, experiment_id, parent, arms
    )
    seeds = [int(seed) for seed in plan["seeds"]]

    def build() -> Any:
        return tune.Tuner(
            trainable,
            param_space={"arm": tune.grid_search(list(arms)), "seed": tune.grid_search(seeds)},
            tune_config=tune.TuneConfig(
                num_samples=1, max_concurrent_trials=spec.search.max_concurrent, reuse_actors=True
            ),
            run_config=_run_config(f"{spec.name}-seeds", spec, paths, experiment_id, parent, epochs),
        )

    _run_tuner(f"{spec.name}-seeds", trainable, paths, build, resume, len(arms) * len(seeds))
    delete_own_checkpoints(state_uri)
    fail_orphan_runs(client, experiment_id, parent)
    record = {
        "arms": arms,
        "seeds": seeds,
        "search_seeds": plan["search_seeds"],
        "allow_search_seeds": spec.seeds.allow_search_seeds,
    }
    client.log_text(parent, yaml.safe_dump(record, sort_keys=False), "arms.yaml")
    set_run_status(client, parent, "completed")
    return arms, len(arms) * len(seeds)


def run_study(
    spec: StudySpec,
    *,
    workdir: str | Path = "rblock_runs",
    address: str | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    optuna_storage: str | None = None,
    resume: bool = False,
) -> StudyResult:
    """Run (or, with ``resume``, continue) a whole study. See the module docstring for the layout."""
    paths = resolve_paths(workdir, address, storage, tracking_uri, optuna_storage)
    state_file = _state_path(paths.workdir, spec.name)
    if state_file.exists() and not resume:
        raise CheckpointError(
            f"study {spec.name!r} already exists in {paths.workdir}: continue it with "
            f"'rblock-tune study resume {spec.name} --workdir {paths.workdir}', or pick another --name"
        )
    state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {}
    if state:
        _check_format(state, state_file, f"cannot resume study {spec.name!r}")
    plan = plan_seeds(spec, paths.workdir)  # before anything is written: arms of other studies, seeds
    paths.workdir.mkdir(parents=True, exist_ok=True)
    if spec.space:
        check_optuna_storage(paths.optuna_storage)
    client = _mlflow(paths.tracking_uri)
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
    _write_state(state_file, state)
    (state_file.parent / "spec.yaml").write_text(yaml.safe_dump(spec.raw, sort_keys=False))
    from rblock_tune.tuning._tracking import ensure_experiment

    local = not paths.tracking_uri.startswith(("http://", "https://", "databricks"))
    artifacts = (paths.workdir / "mlartifacts").as_uri() if local else None
    experiment_id = ensure_experiment(client, spec.name, artifacts)
    _init_ray(paths.address)
    if not state["search_done"]:
        state["best"] = _search_phase(spec, paths, client, experiment_id, resume)
        state["search_done"] = True
        _write_state(state_file, state)
    elif not spec.space:
        state["best"] = [{"overrides": {}, spec.metric: None}]
    seed_runs = 0
    if not state["seeds_done"]:
        _, seed_runs = _seed_phase(spec, paths, client, experiment_id, state["best"], plan, resume)
        state["seeds_done"] = True
        _write_state(state_file, state)
    report, report_error = _write_report(spec, paths)
    return StudyResult(
        spec.name,
        state_file,
        state["best"],
        paths.tracking_uri,
        paths.storage,
        paths.optuna_storage,
        seed_runs,
        report,
        report_error,
    )


def _write_report(spec: StudySpec, paths: StudyPaths) -> tuple[Path | None, str | None]:
    """The study's ``report`` step: the report in ``<workdir>/<study>/report/``. A report that
    cannot be made (one arm left after divergences, say) does not fail the finished study: the
    reason comes back, and ``rblock-tune report`` can be run again once it is fixed."""
    if spec.report is None:
        return None, None
    from rblock_tune.analysis import write_report

    try:
        result = write_report(
            spec.name,
            paths.tracking_uri,
            paths.workdir / spec.name / "report",
            metric=spec.report.metric,
            baseline=spec.report.baseline,
            alpha=spec.report.alpha,
        )
    except ConfigError as exc:
        log.warning("report not written: %s", exc)
        return None, str(exc)
    return result.html, None


def locate_study(name_or_dir: str, workdir: str | Path = "rblock_runs") -> Path:
    """The state file of a study given by name (in ``workdir``) or by its directory."""
    candidates = [Path(name_or_dir) / STATE_FILE, Path(workdir) / name_or_dir / STATE_FILE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = ", ".join(str(c) for c in candidates)
    raise CheckpointError(
        f"no study {name_or_dir!r} (looked for {looked}); pass its name with --workdir, or its folder"
    )


def resume_study(name_or_dir: str, workdir: str | Path = "rblock_runs") -> StudyResult:
    """Continue an interrupted study where it stopped."""
    state = json.loads(locate_study(name_or_dir, workdir).read_text())
    spec = spec_from_dict(state["spec"])
    storage = state["storage"] if state.get("address") else None
    return run_study(
        spec,
        workdir=state["workdir"],
        address=state.get("address"),
        storage=storage,
        tracking_uri=state["tracking_uri"],
        optuna_storage=state["optuna_storage"],
        resume=True,
    )


def study_status(name_or_dir: str, workdir: str | Path = "rblock_runs") -> dict[str, Any]:
    """Trials by state and the best so far, read from the Optuna study and MLflow.

    ``phases`` counts the runs of each phase by ``rblock.status``; an orphaned run (a trial the
    driver started just before a crash, which Ray never recorded and replaced on resume) is
    counted as ``orphaned`` rather than ``failed``.
    """
    import optuna
    from mlflow.tracking import MlflowClient

    from rblock_tune.tuning._tracking import ROLE_TAG, STATUS_TAG

    state_file = locate_study(name_or_dir, workdir)
    state = json.loads(state_file.read_text())
    spec = spec_from_dict(state["spec"])
    out: dict[str, Any] = {"name": spec.name, "state_file": str(state_file), "phases": {}}
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    experiment = client.get_experiment_by_name(spec.name)
    counts: dict[str, dict[str, int]] = {}
    if experiment is not None:
        for run in client.search_runs([experiment.experiment_id], max_results=50000):
            role = run.data.tags.get(ROLE_TAG)
            if role in ("trial", "seed_run"):
                status = run.data.tags.get(STATUS_TAG, "unknown")
                if status == "failed" and run.data.tags.get("rblock.error", "").startswith("orphaned"):
                    status = "orphaned"  # replaced by another trial on resume: not a failure of a config
                counts.setdefault(role, {}).setdefault(status, 0)
                counts[role][status] += 1
    out["phases"] = counts
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    best = None
    try:
        study = optuna.load_study(study_name=spec.name, storage=state["optuna_storage"])
        from rblock_tune.tuning._searcher import top_configs

        top = top_configs(study, 1)
        best = top[0] if top else None
        out["optuna"] = {
            s.name.lower(): sum(1 for t in study.trials if t.state == s) for s in optuna.trial.TrialState
        }
    except KeyError:
        out["optuna"] = {}
    out["best"] = None if best is None else {"overrides": best[0], spec.metric: best[1]}
    out["search_seeds"] = state.get("search_seeds", {})
    out["seed_phase_seeds"] = state.get("seed_phase_seeds", [])
    out["search_done"] = state.get("search_done", False)
    out["seeds_done"] = state.get("seeds_done", False)
    out["tracking_uri"] = state["tracking_uri"]
    return out
