"""Analysis at scale: ``load_runs`` and ``compare_arms`` on an experiment of thousands of runs.

Writes an MLflow sqlite store with ``--runs`` seed runs in the studies' layout (arms x seeds,
~40 params and a final metric each; once, then reused from ``--store``), then times
``load_runs`` (paged ``search_runs``: a few requests, not one per run), the request count, and
``compare_arms`` with 10,000 bootstrap resamples. Prints the figures and saves them under
``benchmarks/results/``.

    python benchmarks/bench_analysis.py --runs 2000
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from rblock_tune import __version__
from rblock_tune.analysis import compare_arms, load_runs
from rblock_tune.config import config_from_dict, flatten_config
from rblock_tune.layout import (
    ARM_TAG,
    EPOCHS_DONE_TAG,
    PHASE_SEEDS,
    PHASE_TAG,
    ROLE_TAG,
    ROLE_TRIAL,
    SEED_TAG,
    STATUS_TAG,
    TRIAL_TAG,
)


def make_store(uri: str, runs: int, arms: int) -> None:
    client = MlflowClient(tracking_uri=uri)
    if client.get_experiment_by_name("bench") is not None:
        return
    experiment_id = client.create_experiment("bench")
    params = flatten_config(config_from_dict({}))
    rng = np.random.default_rng(0)
    seeds = runs // arms
    for a in range(arms):
        for s in range(seeds):
            tags = {ROLE_TAG: ROLE_TRIAL, PHASE_TAG: PHASE_SEEDS, STATUS_TAG: "completed", ARM_TAG: f"arm{a}",
                    SEED_TAG: str(s), TRIAL_TAG: f"arm{a}-{s}"}  # fmt: skip
            run = client.create_run(experiment_id, tags=tags)
            client.log_batch(
                run.info.run_id,
                metrics=[Metric("test_acc", float(0.9 + 0.001 * a + rng.normal(0, 0.003)), 0, 1)],
                params=[Param(k, str(v)) for k, v in params.items()],
                tags=[RunTag(EPOCHS_DONE_TAG, "1")],
            )
            client.set_terminated(run.info.run_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--arms", type=int, default=4)
    parser.add_argument("--store", default="benchmarks/results/bench_analysis_mlflow.db")
    args = parser.parse_args()
    store = Path(args.store).resolve()
    store.parent.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{store}"
    started = time.perf_counter()
    make_store(uri, args.runs, args.arms)
    made = time.perf_counter() - started

    calls = 0
    real = MlflowClient.search_runs

    def counting(self: MlflowClient, *a: Any, **k: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(self, *a, **k)

    MlflowClient.search_runs = counting  # type: ignore[method-assign]
    started = time.perf_counter()
    runs = load_runs("bench", uri)
    loaded = time.perf_counter() - started
    MlflowClient.search_runs = real  # type: ignore[method-assign]
    started = time.perf_counter()
    table = compare_arms(runs, baseline="arm0", n_resamples=10000)
    compared = time.perf_counter() - started
    figures = {
        "runs": len(runs),
        "columns": runs.shape[1],
        "search_runs_requests": calls,
        "load_runs_s": round(loaded, 2),
        "compare_arms_s": round(compared, 2),
        "comparisons": len(table),
        "store_written_s": round(made, 1),
        "machine": platform.processor() or platform.machine(),
        "version": __version__,
    }
    print(json.dumps(figures, indent=2))
    out = Path("benchmarks/results") / "bench_analysis.json"
    out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
