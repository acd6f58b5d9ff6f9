"""Export a finished study's search as a :class:`~rblock_tune.tuning._recording.Recording`.

Every Optuna trial of the search that has an MLflow run becomes one point: its searched values, its
run's status, and the per-epoch history of :data:`~rblock_tune.tuning._recording.CURVE_METRICS` (and
the study's metric). ``rblock-tune study export NAME`` is the command; a recorded grid
(``benchmarks/data/``) is one of these files, and ``benchmarks/bench_search.py`` replays search
strategies against it.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

import rblock_tune
from rblock_tune.errors import ConfigError
from rblock_tune.layout import MLFLOW_RUN_ATTR, STATUS_TAG
from rblock_tune.tuning._recording import CURVE_METRICS, RecordedPoint, Recording
from rblock_tune.tuning._study import open_stores

__all__ = ["code_version", "export_study"]


def code_version() -> dict[str, Any]:
    """This rblock-tune's version, and its git commit (with whether the checkout had changes) when it
    runs from a git checkout."""
    out: dict[str, Any] = {"rblock_tune": rblock_tune.__version__, "commit": None, "dirty": None}
    here = Path(rblock_tune.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode == 0:
            out["commit"] = commit.stdout.strip()
            status = subprocess.run(
                ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            out["dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def export_study(
    name_or_dir: str,
    workdir: str | Path = "rblock_runs",
    out: str | Path | None = None,
    code: dict[str, Any] | None = None,
) -> Recording:
    """The recording of a study whose search has finished; written to ``out`` when given.

    Args:
        name_or_dir: the study's name (in ``workdir``) or its folder.
        out: the JSON file to write.
        code: what to record as the code version (default: :func:`code_version` of this process).

    Raises:
        ConfigError: the study's search has not finished, or it has no trial with a run.
    """
    import optuna

    stores = open_stores(name_or_dir, workdir)
    spec = stores.spec
    if not stores.state.get("search_done"):
        raise ConfigError(
            f"study {spec.name!r}: its search has not finished, so there is nothing whole to export "
            f"(finish it first: rblock-tune study resume {spec.name})"
        )
    if not stores.has_optuna:
        raise ConfigError(f"study {spec.name!r} has no search (no Optuna storage): nothing to export")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=spec.name, storage=stores.optuna_url)
    client = MlflowClient(tracking_uri=stores.tracking_uri)
    metrics = list(dict.fromkeys((*CURVE_METRICS, spec.metric)))
    points: list[RecordedPoint] = []
    starts: list[int] = []
    ends: list[int] = []
    for trial in study.get_trials(deepcopy=False):
        run_id = trial.user_attrs.get(MLFLOW_RUN_ATTR)
        if not isinstance(run_id, str):
            continue  # a trial that never started a run (an orphan of a crash)
        run = client.get_run(run_id)
        histories = {
            m: {int(x.step): float(x.value) for x in client.get_metric_history(run_id, m)} for m in metrics
        }
        epochs = max(histories[spec.metric], default=0)
        curves = {m: [h.get(e) for e in range(1, epochs + 1)] for m, h in histories.items()}
        points.append(
            RecordedPoint(
                params=dict(trial.params),
                status=run.data.tags.get(STATUS_TAG, ""),
                epochs=epochs,
                curves=curves,
                trial=trial.number,
                run_id=run_id,
                seed=spec.base.seed,  # a search trains every trial from base.seed
            )
        )
        starts.append(run.info.start_time or 0)
        if run.info.end_time:
            ends.append(run.info.end_time)
    if not points:
        raise ConfigError(f"study {spec.name!r}: no search trial has an MLflow run, nothing to export")
    meta = {
        "exported": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "trials": len(points),
        "search_wall_seconds": (max(ends) - min(starts)) / 1000 if ends and starts else None,
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "max_concurrent": spec.search.max_concurrent,
    }
    recording = Recording(
        study=spec.name,
        metric=spec.metric,
        mode=spec.mode,
        budget=spec.search_epochs,
        spec=dict(stores.state["spec"]),
        points=tuple(points),
        code=code if code is not None else code_version(),
        meta=meta,
    )
    if out is not None:
        try:
            recording.save(out)
        except OSError as exc:
            raise ConfigError(
                f"{out}: cannot write the recording ({exc.strerror or exc}); pass --out a writable file"
            ) from None
    return recording
