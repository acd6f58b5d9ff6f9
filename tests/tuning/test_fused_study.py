"""A fused seed phase (``seeds.fuse``) run by Ray: one trial per group of seeds of an arm, one MLflow
run per member, and an analysis that sees the same runs as an unfused phase of the same spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from rblock_tune.analysis import load_runs
from rblock_tune.errors import ConfigError
from rblock_tune.layout import PHASE_SEEDS, ROLE_TRIAL, RUN_LOG_ARTIFACT, TRIAL_TAG
from rblock_tune.tuning import run_study, spec_from_dict

BASE = {
    "data": {"name": "synthetic", "synthetic_size": 96, "val_size": 32},
    "model": {"name": "resnet8"},
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "device": "cpu", "eval_batch_size": 64},
}
ARMS = [
    {"label": "plain", "set": {"reg.variant": "none"}},
    {"label": "rblock", "set": {"reg.variant": "bdrop_dml", "reg.drop_prob": 0.1, "reg.alpha": 1.0}},
]
COMPARED = ("train_loss", "train_ce", "train_kl", "val_loss", "consistency_kl_probe")
"""Metrics compared between the fused and the solo phase (accuracies on 32 images move in steps of
1/32 when a logit near a tie differs in its last bits, so they are compared by their mean)."""


def _spec(name: str, fuse: int) -> Any:
    return spec_from_dict(
        {
            "name": name,
            "base": BASE,
            "seeds": {"top_k": 0, "arms": ARMS, "seeds": [3, 4, 5], "fuse": fuse},
            "search": {"max_concurrent": 2},
        }
    )


def _seed_runs(result: Any, name: str) -> pd.DataFrame:
    runs = load_runs(name, result.tracking_uri)
    runs = runs[(runs["role"] == ROLE_TRIAL) & (runs["phase"] == PHASE_SEEDS)]
    return runs.sort_values(["arm", "seed"]).reset_index(drop=True)


@pytest.mark.slow
def test_a_fused_seed_phase_leaves_the_runs_an_unfused_one_leaves(
    ray_session: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    fused = run_study(_spec("fused", 2), workdir=tmp_path / "fused")
    shown = capfd.readouterr().err
    solo = run_study(_spec("solo", 1), workdir=tmp_path / "solo")
    # the display counts the fused phase's runs (its results say how many members diverged)
    assert "seeds: 6 of 6 runs in " in shown and "6 completed" in shown
    assert fused.finished and solo.finished
    a, b = _seed_runs(fused, "fused"), _seed_runs(solo, "solo")
    assert list(zip(a["arm"], a["seed"], strict=True)) == [
        (arm, seed) for arm in ("plain", "rblock") for seed in (3, 4, 5)
    ]
    assert list(a["run_name"]) == list(b["run_name"])
    assert list(a["run_status"]) == list(b["run_status"]) == ["FINISHED"] * 6
    assert list(a["status"]) == list(b["status"]) == ["completed"] * 6
    skip = {"run_id", "start_time", "end_time", "study", "parent_run_id", "trial_id"}
    assert sorted(set(a.columns) - skip) == sorted(set(b.columns) - skip)  # the same tags, params, metrics
    for column in ("epochs_done", "arm_config", "variant", "reg.alpha", "not_applicable"):
        if column in a.columns:
            assert list(a[column].astype(str)) == list(b[column].astype(str)), column
    for column in COMPARED:
        assert a[column].to_numpy() == pytest.approx(b[column].to_numpy(), rel=2e-3, abs=1e-5), column
    for column in ("val_acc", "test_acc"):
        assert abs(a[column].mean() - b[column].mean()) <= 1 / 32, column
    # three seeds in groups of 2: trials (3, 4) and (5) per arm, members sharing their trial's tag
    client = MlflowClient(tracking_uri=fused.tracking_uri)
    trial_of = {
        (row.arm, int(row.seed)): client.get_run(row.run_id).data.tags[TRIAL_TAG] for row in a.itertuples()
    }
    for arm in ("plain", "rblock"):
        assert trial_of[(arm, 3)] == trial_of[(arm, 4)] != trial_of[(arm, 5)]
    log = client.download_artifacts(a["run_id"][0], RUN_LOG_ARTIFACT, str(tmp_path))
    text = Path(log).read_text()
    assert "fused member 1 of 2 (seeds 3, 4)" in text and " device cpu" in text


def test_fuse_is_refused_with_a_race() -> None:
    with pytest.raises(ConfigError, match=r"seeds.fuse=2 with seeds.race"):
        spec_from_dict(
            {
                "name": "x",
                "base": BASE,
                "seeds": {"top_k": 0, "arms": ARMS, "n_seeds": 4, "fuse": 2, "race": True},
                "report": {"baseline": "plain"},
            }
        )


@pytest.mark.parametrize("fuse", [0, -1, "two", 1.5])
def test_fuse_must_be_a_positive_count(fuse: Any) -> None:
    with pytest.raises(ConfigError, match=r"seeds.fuse"):
        _spec_raw = {"name": "x", "base": BASE, "seeds": {"top_k": 0, "arms": ARMS, "fuse": fuse}}
        spec_from_dict(_spec_raw)


def test_seed_groups_split_the_list_in_order() -> None:
    seeds = _spec("x", 2).seeds
    assert seeds.seed_groups([3, 4, 5]) == [[3, 4], [5]]
    assert _spec("x", 4).seeds.seed_groups([3, 4, 5]) == [[3, 4, 5]]
    assert _spec("x", 1).seeds.seed_groups([3, 4]) == [[3], [4]]


class _Client:
    def __init__(self) -> None:
        self.tags: dict[tuple[str, str], str] = {}

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.tags[(run_id, key)] = value


class _Run:
    """What :func:`end_diverged` uses of a TrialRun: its client, id, log and end."""

    def __init__(self, run_id: str, client: _Client) -> None:
        self.run_id, self.client = run_id, client
        self.lines: list[str] = []
        self.status: str | None = None

    def note(self, line: str) -> None:
        self.lines.append(line)

    def finish(self, status: str) -> None:
        self.status = status


def test_a_restored_member_that_had_diverged_ends_diverged_again() -> None:
    # a retry or resume reopens every member's run as running; one the restored state holds as diverged
    # must end diverged, not take the trial's own outcome when the status callback ends the trial
    from rblock_tune.errors import DivergedError
    from rblock_tune.layout import DIVERGED, ERROR_TAG
    from rblock_tune.tuning._fused_trial import end_diverged

    client = _Client()
    runs = [_Run("a", client), _Run("b", client), _Run("c", client)]
    end_diverged(runs, [None, DivergedError(3, 40, float("nan")), None])
    assert [r.status for r in runs] == [None, DIVERGED, None]
    assert set(client.tags) == {("b", ERROR_TAG)} and "epoch 3" in client.tags[("b", ERROR_TAG)]
    assert runs[1].lines and "diverged" in runs[1].lines[0]
