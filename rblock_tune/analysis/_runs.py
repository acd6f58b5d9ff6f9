"""From MLflow to one tidy table: one row per run, the config as dotted columns.

:func:`load_runs` pages through an experiment with ``search_runs`` (a few requests for
thousands of runs, never one per run). Per-epoch histories are fetched on demand by
:func:`load_histories`, for the runs a figure needs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from rblock_tune._stores import check_tracking_uri, redact_url
from rblock_tune.errors import ConfigError
from rblock_tune.layout import ROLE_TRIAL, TAG_COLUMNS, role_and_phase

__all__ = ["TAG_COLUMNS", "load_artifact_text", "load_histories", "load_runs", "parse_value", "runs_of"]


os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in reports


def runs_of(runs: pd.DataFrame, phase: str, role: str = ROLE_TRIAL) -> pd.Series:
    """Mask of the rows of ``runs`` (:func:`load_runs`) with this phase and role (default: trials)."""
    return (runs["phase"] == phase) & (runs["role"] == role)


def parse_value(text: str) -> Any:
    """An MLflow param string back as the value it was logged from (int, float, bool, None, str)."""
    if text in ("None", "null"):
        return None
    if text in ("True", "true"):
        return True
    if text in ("False", "false"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _experiment_id(client: Any, experiment: str, tracking_uri: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments(max_results=50))
        listed = ", ".join(names) if names else "none"
        raise ConfigError(
            f"no MLflow experiment {experiment!r} at {redact_url(tracking_uri)} "
            f"(experiments there: {listed}); "
            "pass --experiment with the study name, and --tracking-uri where the study tracked"
        )
    return str(found.experiment_id)


def load_runs(experiment: str, tracking_uri: str, *, page_size: int = 5000) -> pd.DataFrame:
    """Every run of ``experiment`` as one row.

    Columns: ``run_id``, ``run_name``, ``run_status`` (MLflow's), ``start_time``, ``end_time``, the
    ``rblock.*`` tags without their prefix (``role``: ``parent`` or ``trial``, ``phase``: ``search``
    or ``seeds``, ``arm``, ``seed``, ``status``, ``trial_id``, ``study``, ``variant``, ``config``,
    ``epochs_done``, ``optuna_trial``, ``error``; runs of an earlier layout are read into these
    roles) and ``parent_run_id``, then every param under its dotted
    name (``reg.alpha``; values parsed back to numbers and booleans; integer params as ``Int64``),
    then the latest value of each metric (``val_acc``, ``test_acc``, ...: the last epoch's).
    ``attrs`` keeps ``experiment``, ``experiment_id`` and ``tracking_uri`` for :func:`load_histories`,
    and ``metrics``: the metric columns (those that are not params).
    Runs are fetched ``page_size`` per request.

    Raises:
        ConfigError: the experiment does not exist there (the message lists those that do).
    """
    check_tracking_uri(tracking_uri, reading=True)  # garbage, a dead server: one line; never a new store
    client = _client(tracking_uri)
    experiment_id = _experiment_id(client, experiment, tracking_uri)
    rows: list[dict[str, Any]] = []
    params: set[str] = set()
    not_int: set[str] = set()
    metrics: set[str] = set()
    token: str | None = None
    while True:
        page = client.search_runs([experiment_id], max_results=page_size, page_token=token)
        for run in page:
            row: dict[str, Any] = {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "run_status": run.info.status,
                "start_time": pd.to_datetime(run.info.start_time, unit="ms", utc=True),
                "end_time": (
                    pd.to_datetime(run.info.end_time, unit="ms", utc=True) if run.info.end_time else pd.NaT
                ),
            }
            for tag, column in TAG_COLUMNS.items():
                row[column] = run.data.tags.get(tag)
            for key, value in run.data.params.items():
                if row.get(key) is not None:  # the config's `seed` is also the tag rblock.seed: the tag wins
                    continue
                row[key] = parse_value(value)
                params.add(key)
                if not isinstance(row[key], int) or isinstance(row[key], bool):
                    not_int.add(key)
            for key, value in run.data.metrics.items():
                row[key] = float(value)
                metrics.add(key)
            rows.append(row)
        token = page.token
        if not token:
            break
    base = ["run_id", "run_name", "run_status", "start_time", "end_time", *TAG_COLUMNS.values()]
    columns = base + sorted(params - set(base)) + sorted(metrics - set(base) - params)
    table = pd.DataFrame(rows, columns=columns)
    if len(table):  # runs of the earlier layout: its roles, no phase tag
        pairs = [role_and_phase(r, p) for r, p in zip(table["role"], table["phase"], strict=True)]
        table["role"] = [r for r, _ in pairs]
        table["phase"] = [p for _, p in pairs]
    for column in ("seed", "epochs_done", "optuna_trial"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    for column in sorted(params - set(base) - not_int):  # integers stay integers where some runs lack them
        table[column] = table[column].astype("Int64")
    table = table.sort_values(
        ["phase", "role", "arm", "seed", "start_time"], na_position="last", kind="stable"
    )
    table = table.reset_index(drop=True)
    table.attrs.update(
        {
            "experiment": experiment,
            "experiment_id": experiment_id,
            "tracking_uri": tracking_uri,
            "metrics": sorted(metrics - set(base) - params),
        }
    )
    return table


def load_histories(
    runs: pd.DataFrame | Iterable[str],
    metrics: Sequence[str] = ("val_acc",),
    *,
    tracking_uri: str | None = None,
    workers: int = 8,
) -> pd.DataFrame:
    """Per-epoch values of ``metrics`` for the given runs, long format.

    Args:
        runs: a table from :func:`load_runs` (its ``run_id`` column and tracking URI are used), or run ids.
        metrics: metric names.
        tracking_uri: needed when ``runs`` is a list of ids.
        workers: concurrent requests.

    Returns:
        Columns ``run_id``, ``metric``, ``epoch`` (the step), ``value``; sorted, one row per
        (run, metric, epoch) (the latest logged value wins if an epoch was logged twice).
    """
    if isinstance(runs, pd.DataFrame):
        run_ids = [str(r) for r in runs["run_id"]]
        tracking_uri = tracking_uri or runs.attrs.get("tracking_uri")
    else:
        run_ids = [str(r) for r in runs]
    if tracking_uri is None:
        raise ConfigError("load_histories needs tracking_uri when given run ids rather than a run table")
    client = _client(tracking_uri)

    def one(job: tuple[str, str]) -> list[tuple[str, str, int, float, int]]:
        run_id, metric = job
        history = client.get_metric_history(run_id, metric)
        return [(run_id, metric, int(m.step), float(m.value), int(m.timestamp)) for m in history]

    jobs = [(r, m) for r in run_ids for m in metrics]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        records = [row for rows in pool.map(one, jobs) for row in rows]
    frame = pd.DataFrame(records, columns=["run_id", "metric", "epoch", "value", "timestamp"])
    frame = frame.sort_values(["run_id", "metric", "epoch", "timestamp"])
    frame = frame.drop_duplicates(["run_id", "metric", "epoch"], keep="last").drop(columns="timestamp")
    frame = frame[frame["value"].map(lambda v: not math.isnan(v))]
    return frame.reset_index(drop=True)


def load_artifact_text(run_id: str, path: str, tracking_uri: str) -> str | None:
    """The text of one artifact of a run, or None when the run has no such artifact."""
    import tempfile
    from pathlib import Path

    import mlflow

    with tempfile.TemporaryDirectory() as directory:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=path, dst_path=directory, tracking_uri=tracking_uri
            )
        except Exception:  # noqa: BLE001 - a missing artifact raises store-specific errors
            return None
        return Path(local).read_text()
