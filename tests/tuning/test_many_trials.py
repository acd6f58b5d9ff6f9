"""Many short trials: the sweep of ``benchmarks/bench_thousand.py`` at a smaller count.

What does not depend on timing: every trial has its MLflow run with the layout's tags, params,
metric history and artifacts; the Optuna store has every trial, linked to its run; the driver's
memory does not grow per trial beyond a stated bound (and a deliberately leaking driver is caught
by the same check); ``study status`` and ``report`` complete on the finished study. No wall-clock
assertion: the benchmark measures the times.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import benchmark_script
import optuna
import pytest
from optuna.trial import TrialState

from rblock_tune.layout import (
    COMPLETED,
    EARLY_STOPPED,
    EPOCHS_DONE_TAG,
    MLFLOW_RUN_ATTR,
    OPTUNA_TRIAL_TAG,
    PARENT_TAG,
    PHASE_SEARCH,
    PHASE_TAG,
    ROLE_PARENT,
    ROLE_TAG,
    ROLE_TRIAL,
    RUN_CONFIG_ARTIFACT,
    RUN_LOG_ARTIFACT,
    STATUS_TAG,
    STUDY_TAG,
    TRIAL_TAG,
    VARIANT_TAG,
)

pytestmark = pytest.mark.slow

TRIALS = 60
EPOCHS = 2  # ASHA (grace 1, reduction factor 2) may stop a trial after epoch 1

GROWTH_BOUND = 512 * 1024
"""Bytes per finished trial the driver's RSS may grow by, from trial 20 on until the last trial
finished (least-squares slope). What the driver legitimately keeps per trial is its records: Ray's
``Trial`` (config, last result, metric summaries), Optuna's cached trials, the searcher's id maps
and the display's list, about 40 KiB per trial of C heap in use here, and what the allocator keeps
besides; measured on this sweep at a median 128 KiB per trial of RSS (docs/benchmarks.md, 84-171
over 5 runs; 185 before the driver held its malloc arenas to two, and 250 before trials reported
to Ray only what the driver reads). At the bound, 1,000 trials add 500 MiB to a driver of about
1 GiB."""

LEAK = 4 * 1024 * 1024
"""What the deliberately leaking driver keeps per finished trial: 8x the bound."""

LEAKY_PRELUDE = f"""
from rblock_tune.tuning._display import StudyDisplay
_kept = []
_complete = StudyDisplay.on_trial_complete
def _leaking(self, *args, **kwargs):
    _kept.append(b"\\x01" * {LEAK})  # touched, so resident
    return _complete(self, *args, **kwargs)
StudyDisplay.on_trial_complete = _leaking
"""


bench = benchmark_script.load("bench_thousand")


def _run(tmp: Path, name: str, trials: int, prelude: str = "") -> tuple[Any, Path]:
    spec = bench.sweep_spec(name, trials, 2, EPOCHS, 192)
    spec_file = tmp / f"{name}.json"
    spec_file.write_text(json.dumps(spec))
    workdir = tmp / "study"
    cmd = bench.driver_command(["-q", "study", "run", str(spec_file), "--workdir", str(workdir)], prelude)
    run = bench.run_driver(cmd, workdir / "optuna.db")
    assert run.returncode == 0, run.output[-3000:]
    return run, workdir


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    return _run(tmp_path_factory.mktemp("many"), "many", TRIALS)


def test_every_trial_has_its_mlflow_run_with_the_layout(sweep: tuple[Any, Path]) -> None:
    from mlflow.tracking import MlflowClient

    _, workdir = sweep
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("many")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=10000)
    parents = [r for r in runs if r.data.tags.get(ROLE_TAG) == ROLE_PARENT]
    trials = [r for r in runs if r.data.tags.get(ROLE_TAG) == ROLE_TRIAL]
    assert len(parents) == 1 and parents[0].data.tags[PHASE_TAG] == PHASE_SEARCH
    assert len(trials) == TRIALS
    assert sorted(int(r.data.tags[OPTUNA_TRIAL_TAG]) for r in trials) == list(range(TRIALS))
    assert len({r.data.tags[TRIAL_TAG] for r in trials}) == TRIALS
    for run in trials:
        tags = run.data.tags
        assert tags[PARENT_TAG] == parents[0].info.run_id and tags[STUDY_TAG] == "many"
        assert tags[PHASE_TAG] == PHASE_SEARCH and tags[VARIANT_TAG] in bench.VARIANTS
        assert tags[STATUS_TAG] in (COMPLETED, EARLY_STOPPED) and run.info.status == "FINISHED"
        epochs = int(tags[EPOCHS_DONE_TAG])
        assert epochs == (EPOCHS if tags[STATUS_TAG] == COMPLETED else 1)
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_acc"))
        assert steps == list(range(1, epochs + 1))
        assert run.data.params["reg.variant"] == tags[VARIANT_TAG]
        assert ("reg.alpha" in run.data.params) == (tags[VARIANT_TAG] == "bdrop_dml")
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {RUN_CONFIG_ARTIFACT, RUN_LOG_ARTIFACT} <= artifacts


def test_the_optuna_store_has_every_trial_linked_to_its_run(sweep: tuple[Any, Path]) -> None:
    from mlflow.tracking import MlflowClient

    _, workdir = sweep
    study = optuna.load_study(study_name="many", storage=f"sqlite:///{workdir / 'optuna.db'}")
    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in trials] == list(range(TRIALS))
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    for trial in trials:
        run = client.get_run(trial.user_attrs[MLFLOW_RUN_ATTR])
        assert int(run.data.tags[OPTUNA_TRIAL_TAG]) == trial.number
        done = COMPLETED if trial.state == TrialState.COMPLETE else EARLY_STOPPED
        assert run.data.tags[STATUS_TAG] == done


def test_driver_memory_does_not_grow_per_trial(sweep: tuple[Any, Path]) -> None:
    run, _ = sweep
    points = [d for d, _ in bench.rss_by_trials(run.samples) if d >= bench.FROM_TRIAL]
    assert max(points) == TRIALS and len(set(points)) >= (TRIALS - bench.FROM_TRIAL) // 2  # sampled densely
    assert bench.growth_per_trial(run.samples) <= GROWTH_BOUND


def test_a_leaking_driver_is_caught_by_the_same_bound(tmp_path: Path) -> None:
    run, _ = _run(tmp_path, "leaky", 32, LEAKY_PRELUDE)  # 12 points past FROM_TRIAL: enough at 8x
    assert bench.growth_per_trial(run.samples) > GROWTH_BOUND


def test_status_and_report_complete_on_the_finished_sweep(sweep: tuple[Any, Path]) -> None:
    _, workdir = sweep
    _, code, out = bench.timed(bench.driver_command(["study", "status", "many", "--workdir", str(workdir)]))
    assert code == 0, out
    assert "state: finished" in out and "search trials:" in out
    counts = out.split("search trials:", 1)[1].splitlines()[0]
    assert sum(int(part.split()[-1]) for part in counts.split(",")) == TRIALS
    report = ["report", "--experiment", "many", "--workdir", str(workdir), "--metric", "val_acc"]
    _, code, out = bench.timed(bench.driver_command(report))
    assert code == 0, out
    assert (
        "against dropblock (search runs)" in out and (workdir / "many" / "report" / "report.html").is_file()
    )
