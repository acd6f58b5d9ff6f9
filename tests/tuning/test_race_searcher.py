"""The racing seed phase's searcher, driven by hand as Ray drives it: seed-major hand-out, looks
after each pair, frozen decisions, the end of the race, and its record across a driver crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from ray.tune.search import Searcher

from rblock_tune.errors import CheckpointError
from rblock_tune.layout import DECISION_TAG_PREFIX, RACE_LOOK_COLUMNS, RACE_LOOKS_ARTIFACT, RACE_TAG
from rblock_tune.tuning._race import RaceSearcher
from rblock_tune.tuning._race_record import race_summary, read_race_state

DESIGN = {
    "alpha": 0.05,
    "margin": 0.0,
    "min_seeds": 2,
    "max_seeds": 6,
    "futility": 0.0,
    "metric": "test_acc",
    "mode": "max",
    "baseline": "base",
}
ARMS = ["base", "bad", "same"]
SEEDS = [10, 11, 12, 13, 14, 15]


@pytest.fixture
def parent(tmp_path: Path) -> tuple[str, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("race", artifact_location=(tmp_path / "artifacts").as_uri())
    return uri, client.create_run(experiment).info.run_id


def make(tmp_path: Path, parent: tuple[str, str], concurrent: int = 2, **design: Any) -> RaceSearcher:
    return RaceSearcher(
        design={**DESIGN, **design},
        arms=ARMS,
        seeds=SEEDS,
        epochs=3,
        max_concurrent=concurrent,
        record_file=tmp_path / "study" / "race.json",
        experiment_path=str(tmp_path / "no-ray-experiment"),
        tracking_uri=parent[0],
        parent_run_id=parent[1],
    )


def accuracy(arm: str, seed: int) -> float:
    """``bad`` is far worse than the baseline on every seed; ``same`` differs by noise only."""
    noise = ((seed * 7919) % 13) / 1000
    return {"base": 0.60 + noise, "bad": 0.30 + noise / 2, "same": 0.60 + ((seed * 104729) % 11) / 1000}[arm]


def result(arm: str, seed: int, epoch: int = 3) -> dict[str, Any]:
    return {"epoch": epoch, "test_acc": accuracy(arm, seed), "diverged": 0}


def drive(
    searcher: RaceSearcher,
    start: int = 0,
    stop_after: int | None = None,
    out: dict[str, tuple[str, int]] | None = None,
) -> list[tuple[str, int]]:
    """Ray's loop with ``max_concurrent`` slots: ask until refused, complete the oldest, repeat
    (``out``: trials already running, such as those Ray restored)."""
    handed: list[tuple[str, int]] = []
    out = dict(out or {})
    number = start
    while True:
        while True:
            suggestion = searcher.suggest(f"t{number:03d}")
            if suggestion is None or suggestion == Searcher.FINISHED:
                break
            out[f"t{number:03d}"] = (suggestion["arm"], suggestion["seed"])
            handed.append(out[f"t{number:03d}"])
            number += 1
        if suggestion == Searcher.FINISHED:
            return handed
        assert out, "the searcher waits with nothing out: Ray would spin forever"
        trial = next(iter(out))
        arm, seed = out.pop(trial)
        searcher.on_trial_complete(trial, result(arm, seed))
        if stop_after is not None and len(handed) >= stop_after:
            return handed


def test_seeds_go_out_seed_major_and_a_decided_arm_gets_no_more(tmp_path: Path, parent: Any) -> None:
    searcher = make(tmp_path, parent)
    handed = drive(searcher)
    record = read_race_state(tmp_path / "study" / "race.json")
    assert record is not None and record["over"]
    # seed-major: no arm gets a seed before every wanted arm has had the one before
    order = [SEEDS.index(seed) for _, seed in handed]
    assert order == sorted(order)
    latest = {row["arm"]: row for row in record["looks"][-1]}
    assert latest["bad"]["decision"] == "worse"
    bad_seeds = [seed for arm, seed in handed if arm == "bad"]
    # decided at min_seeds pairs; with two runs out at once at most one more seed was already handed out
    assert latest["bad"]["n_pairs"] == 2 and len(bad_seeds) <= 3
    assert latest["same"]["decision"] == "undecided" and latest["same"]["n_pairs"] == len(SEEDS)
    # the baseline ran while an arm was live: every seed
    assert sorted(seed for arm, seed in handed if arm == "base") == SEEDS
    assert len(handed) == len(set(handed)), "a seed ran twice"
    summary = race_summary(record)
    assert summary["live"] == [] and summary["fixed_design_runs"] == 18
    assert summary["runs_started"] == len(handed) < 18


def test_every_look_and_the_decisions_are_on_the_parent_run(tmp_path: Path, parent: Any) -> None:
    searcher = make(tmp_path, parent)
    drive(searcher)
    client = MlflowClient(tracking_uri=parent[0])
    run = client.get_run(parent[1])
    assert run.data.tags[DECISION_TAG_PREFIX + "bad"] == "worse"
    assert run.data.tags[DECISION_TAG_PREFIX + "same"] == "undecided"
    assert "max_seeds=6" in run.data.tags[RACE_TAG]
    path = client.download_artifacts(parent[1], RACE_LOOKS_ARTIFACT, str(tmp_path / "dl"))
    looks = pd.read_csv(path)
    assert tuple(looks.columns) == RACE_LOOK_COLUMNS
    record = read_race_state(tmp_path / "study" / "race.json")
    assert record is not None and looks["look"].max() == len(record["looks"])
    bad = looks[looks.arm == "bad"]
    # frozen once decided: every later look repeats the row of the look that decided it
    decided = bad[bad.decision == "worse"]
    assert len(decided) >= 2 and decided[["n_pairs", "ci_low", "ci_high"]].nunique().max() == 1


def test_a_crash_forgets_no_result_and_reruns_no_seed(tmp_path: Path, parent: Any) -> None:
    """A new driver (after kill -9) reads the record: results and decisions stay, a run handed out
    that Ray never recorded is handed out again, one Ray restored keeps its trial."""
    first = make(tmp_path, parent, concurrent=3)
    handed = drive(first, stop_after=7)
    record = read_race_state(tmp_path / "study" / "race.json")
    assert record is not None
    out = [
        t for t, (arm, seed) in record["assigned"].items() if str(seed) not in record["results"].get(arm, {})
    ]
    assert len(out) >= 2
    looks_before = record["looks"]
    # Ray's saved experiment knows only the first of the runs that were out
    second = make(tmp_path, parent, concurrent=3)
    second._load({out[0]: "RUNNING"})  # what restore() does with the trials of Ray's saved experiment
    second._loaded = True
    kept = read_race_state(tmp_path / "study" / "race.json")
    assert kept is not None and kept["looks"] == looks_before and kept["results"] == record["results"]
    assert out[0] in kept["assigned"] and all(t not in kept["assigned"] for t in out[1:])
    # the restored trial asks again and gets its own run back
    arm, seed = record["assigned"][out[0]]
    assert second.suggest(out[0]) == {"arm": arm, "seed": seed}
    rest = drive(second, start=100, out={out[0]: (arm, seed)})
    everything = [tuple(p) for p in handed if p not in [tuple(record["assigned"][t]) for t in out[1:]]]
    everything += rest
    assert len(everything) == len(set(everything)), "a seed ran twice across the crash"
    assert read_race_state(tmp_path / "study" / "race.json")["over"]  # type: ignore[index]


def test_the_record_is_read_on_first_use_not_when_built(tmp_path: Path, parent: Any) -> None:
    """Ray builds the phase's searcher before it knows whether it restores the phase: building one
    must not drop the runs that were out (a restored trial would lose its arm and seed)."""
    first = make(tmp_path, parent, concurrent=2)
    first.suggest("x1")
    first.suggest("x2")
    make(tmp_path, parent, concurrent=2)  # built, never used
    record = read_race_state(tmp_path / "study" / "race.json")
    assert record is not None and set(record["assigned"]) == {"x1", "x2"}


def test_a_result_recorded_without_its_look_gets_the_look_on_resume(tmp_path: Path, parent: Any) -> None:
    """A driver killed between writing a result and looking at it (as an older version could be): the
    resumed race looks at once, so the pair is not skipped."""
    first = make(tmp_path, parent, concurrent=1)
    for name in ("a", "b"):
        arm, seed = first.suggest(name).values()  # type: ignore[union-attr]
        first.on_trial_complete(name, result(arm, seed))
    path = tmp_path / "study" / "race.json"
    record = json.loads(path.read_text())
    assert len(record["looks"]) == 1 and record["looks"][0][0]["n_pairs"] == 1
    record["looks"] = []  # the look that pair made, lost
    path.write_text(json.dumps(record))
    second = make(tmp_path, parent, concurrent=1)
    second._load({})
    again = read_race_state(path)
    assert again is not None and len(again["looks"]) == 1
    assert {r["arm"]: r["n_pairs"] for r in again["looks"][0]} == {"bad": 1, "same": 0}


def test_a_failed_run_that_ray_resumes_counts_when_it_completes(tmp_path: Path, parent: Any) -> None:
    """``study resume`` reruns trials that errored (Ray's resume_errored): the race takes the rerun's
    result instead of keeping its earlier failure."""
    first = make(tmp_path, parent, concurrent=1)
    first.suggest("a")
    first.on_trial_complete("a", None, error=True)
    assert read_race_state(tmp_path / "study" / "race.json")["results"]["base"] == {"10": None}  # type: ignore[index]
    second = make(tmp_path, parent, concurrent=1)
    second._load({"a": "ERROR"})
    second._loaded = True
    assert second.suggest("a") == {"arm": "base", "seed": 10}  # Ray's resumed trial asks again
    assert second.suggest("z") is None  # it is out again: one run at a time
    second.on_trial_complete("a", result("base", 10))
    assert read_race_state(tmp_path / "study" / "race.json")["results"]["base"] == {
        "10": accuracy("base", 10)
    }  # type: ignore[index]


def test_an_unreadable_ray_experiment_is_one_line_not_a_rerun(tmp_path: Path, parent: Any) -> None:
    searcher = make(tmp_path, parent)
    folder = tmp_path / "no-ray-experiment"
    assert searcher.ray_trials() == {}  # nothing saved yet: a fresh phase
    folder.mkdir()
    (folder / "experiment_state-2026-12-01_00-00-00.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="cannot be read"):
        searcher.ray_trials()


def test_failed_and_short_runs_make_no_pair(tmp_path: Path, parent: Any) -> None:
    searcher = make(tmp_path, parent, concurrent=1)
    first = searcher.suggest("a")
    assert first == {"arm": "base", "seed": 10}
    searcher.on_trial_complete("a", None, error=True)
    searcher.suggest("b")
    searcher.on_trial_complete("b", result("bad", 10, epoch=2))  # stopped short of its epochs
    record = read_race_state(tmp_path / "study" / "race.json")
    assert record is not None
    assert record["results"] == {"base": {"10": None}, "bad": {"10": None}} and record["looks"] == []
    # a repeat of a recorded result (Ray resumed a finished trial) changes nothing
    searcher.on_trial_complete("a", result("base", 10))
    assert read_race_state(tmp_path / "study" / "race.json")["results"]["base"] == {"10": None}  # type: ignore[index]


def test_a_changed_seed_phase_is_refused_on_resume(tmp_path: Path, parent: Any) -> None:
    make(tmp_path, parent).suggest("x")
    path = tmp_path / "study" / "race.json"
    record = json.loads(path.read_text())
    record["seeds"] = [1, 2, 3]
    path.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="seed phase changed"):
        make(tmp_path, parent).suggest("y")
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable race record"):
        make(tmp_path, parent).suggest("y")
