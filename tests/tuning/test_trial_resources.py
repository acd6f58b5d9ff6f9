"""A trial's threads (``resources.threads``), its reused worker and dataset, and its checkpoint
cadence (``train.checkpoint_every``), read from the trials' profile lines (``RBLOCK_PROFILE_DIR``)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rblock_tune.layout import PHASE_TAG, ROLE_TAG, ROLE_TRIAL
from rblock_tune.tuning import run_study, spec_from_dict
from rblock_tune.tuning._profile import PROFILE_DIR_ENV
from rblock_tune.tuning._spec import ResourceSpec, trial_threads


@pytest.mark.parametrize(
    ("node_cpus", "trial_cpus", "max_concurrent", "threads"),
    [
        (2, 1, 1, 2),  # a lone trial gets both cores (Ray alone would give it 1)
        (2, 1, 2, 1),  # two at once share them
        (2, 1, 8, 1),  # only two fit
        (16, 1, 2, 8),
        (16, 4, 8, 4),  # 4 fit: 4 threads each
        (16, 0.5, 8, 2),
        (2, 2, 4, 2),  # never fewer than the CPUs a trial holds
        (3, 1, 2, 1),
        (1, 0.25, 1, 1),
    ],
)
def test_auto_threads_share_a_nodes_cpus_among_the_trials_at_once(
    node_cpus: float, trial_cpus: float, max_concurrent: int, threads: int
) -> None:
    assert trial_threads(node_cpus, trial_cpus, max_concurrent) == threads


def test_threads_setting_is_auto_by_default_or_a_fixed_count() -> None:
    assert ResourceSpec().threads == "auto"
    assert ResourceSpec().threads_for(8, 2) == 4
    assert ResourceSpec(threads=3).threads_for(8, 2) == 3


@pytest.fixture(scope="module")
def profiled_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 2-CPU Ray whose workers write profile lines (the variable must be set before Ray starts
    its workers)."""
    import ray

    folder = tmp_path_factory.mktemp("profile")
    before = os.environ.get(PROFILE_DIR_ENV)
    os.environ[PROFILE_DIR_ENV] = str(folder)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        yield folder
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop(PROFILE_DIR_ENV, None)
        else:
            os.environ[PROFILE_DIR_ENV] = before


def _lines(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.read_text().splitlines()]


@pytest.mark.slow
def test_a_lone_trial_trains_on_the_free_cores_in_a_reused_worker(profiled_ray: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    spec = spec_from_dict(
        {
            "name": "threads",
            "base": {
                "data": {"name": "synthetic", "synthetic_size": 128, "val_size": 32},
                "model": {"name": "resnet8"},
                "train": {
                    "epochs": 3,
                    "checkpoint_every": 2,
                    "batch_size": 64,
                    "lr": 0.05,
                    "device": "cpu",
                    "eval_batch_size": 64,
                },
            },
            "space": {"reg.variant": {"type": "categorical", "values": ["none", "dropblock"]}},
            "search": {"algorithm": "grid", "max_concurrent": 1},
            "scheduler": {"type": "fifo"},
            "seeds": {"top_k": 1, "n_seeds": 2},
        }
    )
    result = run_study(spec, workdir=tmp_path)
    lines = _lines(profiled_ray)
    assert len(lines) == 4  # 2 search trials, 2 seed runs
    assert {line["threads"] for line in lines} == {2}  # one at a time on 2 CPUs: both cores
    # one worker per phase, reused: the later trial of each skips the start and the data load
    for pid in {line["pid"] for line in lines}:
        trials = sorted((line for line in lines if line["pid"] == pid), key=lambda line: line["entered"])
        assert [t["earlier_trials"] for t in trials] == list(range(len(trials)))
        assert [t["data_reused"] for t in trials] == [False] + [True] * (len(trials) - 1)
    assert len({line["pid"] for line in lines}) <= 2
    assert all(line["checkpoints"] == 2 for line in lines)  # epochs 2 and 3 (the last)
    client = MlflowClient(tracking_uri=result.tracking_uri)
    experiment = client.get_experiment_by_name("threads")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}'")
    assert len(runs) == 4 and {r.data.tags[PHASE_TAG] for r in runs} == {"search", "seeds"}
    for run in runs:  # the epoch without a checkpoint is logged too
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2, 3]
