"""Running, resuming and inspecting a study: the search phase, then the seed phase.

Where a study keeps everything: :mod:`rblock_tune.tuning._workdir`; what it records:
:mod:`rblock_tune.layout`; the Ray side of each phase: :mod:`rblock_tune.tuning._phases`
(imported when a study runs, so that parsing a spec or reading a study's status does not start Ray).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from mlflow.tracking import MlflowClient

from rblock_tune.config import with_overrides
from rblock_tune.errors import CheckpointError
from rblock_tune.layout import (
    CHILD_ROLES,
    ERROR_TAG,
    FAILED,
    ORPHANED,
    ORPHANED_ERROR,
    ROLE_TAG,
    SPEC_FILE,
    STATE_FORMAT,
    STATUS_TAG,
    StudyState,
)
from rblock_tune.tuning._arms import plan_seeds, resolve_arms
from rblock_tune.tuning._spec import StudySpec, spec_from_state
from rblock_tune.tuning._tracking import check_tracking, ensure_experiment
from rblock_tune.tuning._workdir import (
    ARTIFACTS_DIR,
    StudyPaths,
    check_destinations,
    check_format,
    check_optuna_storage,
    locate_study,
    read_state,
    resolve_paths,
    state_path,
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
    """Run (or, with ``resume``, continue) a whole study; the report is the caller's next step
    (``rblock-tune`` writes it when the spec asks for one)."""
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
    plan = plan_seeds(spec, paths.workdir)  # before anything is written: arms of other studies, seeds
    check_data(spec, paths, fetch=False)  # missing data that cannot be downloaded: before anything
    paths.workdir.mkdir(parents=True, exist_ok=True)
    if spec.space:
        check_optuna_storage(paths.optuna_storage)
    check_tracking(paths.tracking_uri)
    check_data(spec, paths, fetch=True)  # a download, once the stores answered and before any state
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
    write_state(state_file, state)
    (state_file.parent / SPEC_FILE).write_text(yaml.safe_dump(spec.raw, sort_keys=False))

    from rblock_tune.tuning import _phases  # Ray: only once a study really runs

    local = not paths.tracking_uri.startswith(("http://", "https://", "databricks"))
    artifacts = (paths.workdir / ARTIFACTS_DIR).as_uri() if local else None
    experiment_id = ensure_experiment(client, spec.name, artifacts)
    _phases.init_ray(paths.address)

    def result(seed_runs: int = 0, unfinished: _phases.PhaseOutcome | None = None) -> StudyResult:
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
        )

    if not state["search_done"]:
        outcome, best = _phases.search_phase(spec, paths, client, experiment_id, resume)
        if not outcome.done:
            return result(unfinished=outcome)
        state["best"] = best
        state["search_done"] = True
        write_state(state_file, state)
    elif not spec.space:
        state["best"] = [{"overrides": {}, spec.metric: None}]
    seed_runs = 0
    if not state["seeds_done"]:
        outcome, seed_runs = _phases.seed_phase(
            spec, paths, client, experiment_id, state["best"], plan, resume
        )
        if not outcome.done:
            return result(unfinished=outcome)
        state["seeds_done"] = True
        write_state(state_file, state)
    return result(seed_runs)


def resume_study(name_or_dir: str, workdir: str | Path = "rblock_runs") -> StudyResult:
    """Continue an interrupted study where it stopped."""
    state_file = locate_study(name_or_dir, workdir)
    state = read_state(state_file)
    spec = spec_from_state(state, state_file)
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

    from rblock_tune.tuning._searcher import top_configs

    state_file = locate_study(name_or_dir, workdir)
    state = read_state(state_file)
    spec = spec_from_state(state, state_file)
    out: dict[str, Any] = {"name": spec.name, "state_file": str(state_file), "phases": {}}
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    experiment = client.get_experiment_by_name(spec.name)
    counts: dict[str, dict[str, int]] = {}
    if experiment is not None:
        for run in client.search_runs([experiment.experiment_id], max_results=50000):
            role = run.data.tags.get(ROLE_TAG)
            if role in CHILD_ROLES:
                status = run.data.tags.get(STATUS_TAG, "unknown")
                if status == FAILED and run.data.tags.get(ERROR_TAG, "").startswith(ORPHANED_ERROR):
                    status = ORPHANED  # replaced by another trial on resume: not a failure of a config
                counts.setdefault(role, {}).setdefault(status, 0)
                counts[role][status] += 1
    out["phases"] = counts
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    best = None
    try:
        study = optuna.load_study(study_name=spec.name, storage=state["optuna_storage"])
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
