"""A racing seed phase run by Ray end to end on synthetic data: the race hands out its runs, ends by
itself, and leaves its looks, decisions and counts where a reviewer reads them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from rblock_tune.layout import (
    ARM_TAG,
    DECISION_TAG_PREFIX,
    PHASE_SEEDS,
    PHASE_TAG,
    RACE_LOOK_COLUMNS,
    RACE_LOOKS_ARTIFACT,
    RACE_STATE_FILE,
    RACE_TAG,
    ROLE_PARENT,
    ROLE_TAG,
    ROLE_TRIAL,
    SEED_TAG,
    STATUS_TAG,
)
from rblock_tune.tuning import run_study, spec_from_dict, study_status
from rblock_tune.tuning._race_record import read_race_state

BASE = {
    "data": {"name": "synthetic", "synthetic_size": 128, "val_size": 32},
    "model": {"name": "resnet8"},
    # 2 epochs: the race's metric (test_acc) comes with the last epoch's result only
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "device": "cpu", "eval_batch_size": 64},
}


@pytest.mark.slow
def test_a_race_runs_under_ray_to_its_end_and_records_every_look(ray_session: Any, tmp_path: Path) -> None:
    spec = spec_from_dict(
        {
            "name": "race",
            "base": BASE,
            "seeds": {
                "top_k": 0,
                "arms": [
                    {"label": "plain", "set": {"reg.variant": "none"}},
                    {"label": "dropout", "set": {"reg.variant": "dropout", "reg.drop_prob": 0.1}},
                    {"label": "slow", "set": {"reg.variant": "none", "train.lr": 0.001}},
                ],
                "race": {"min_seeds": 2, "max_seeds": 3},
            },
            "report": {"baseline": "plain"},
            "search": {"max_concurrent": 2},
        }
    )
    result = run_study(spec, workdir=tmp_path)
    assert result.finished
    record = read_race_state(tmp_path / "race" / RACE_STATE_FILE)
    assert record is not None and record["over"]
    client = MlflowClient(tracking_uri=result.tracking_uri)
    experiment = client.get_experiment_by_name("race")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags[ROLE_TAG] == ROLE_TRIAL]
    pairs = [(r.data.tags[ARM_TAG], r.data.tags[SEED_TAG]) for r in trials]
    assert len(pairs) == len(set(pairs)), "a seed ran twice"
    assert {r.data.tags[STATUS_TAG] for r in trials} == {"completed"}
    assert result.seed_runs == len(trials) <= 9
    # seeds of the phase's list, seed-major: the baseline ran every seed any arm ran
    base_seeds = {s for a, s in pairs if a == "plain"}
    assert {s for _, s in pairs} == base_seeds
    parent = next(
        r for r in runs if r.data.tags[ROLE_TAG] == ROLE_PARENT and r.data.tags[PHASE_TAG] == PHASE_SEEDS
    )
    assert "baseline=plain" in parent.data.tags[RACE_TAG]
    latest = {row["arm"]: row for row in record["looks"][-1]}
    for arm in ("dropout", "slow"):  # every arm's final decision is a tag
        assert parent.data.tags[DECISION_TAG_PREFIX + arm] == latest[arm]["decision"]
        assert latest[arm]["decision"] != "undecided" or not latest[arm]["live"]
    looks = pd.read_csv(client.download_artifacts(parent.info.run_id, RACE_LOOKS_ARTIFACT, str(tmp_path)))
    assert tuple(looks.columns) == RACE_LOOK_COLUMNS and looks["look"].max() == len(record["looks"])
    status = study_status("race", tmp_path)
    assert status["race"]["over"] and status["race"]["fixed_design_runs"] == 9
    assert status["race"]["runs_done"] == len(trials)
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "rblock_tune.cli",
            "-q",
            "study",
            "status",
            "race",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert (
        "race against plain on test_acc" in shown.stdout
        and "of the 9 a fixed design would run" in shown.stdout
    )
