"""The recording of a study and the replay of search strategies against it.

A tiny recorded grid (made here, no training) checks the replay: a replayed grid returns exactly the
recorded best, a replayed ASHA stops trials at the rungs the recorded curves imply, and the two kinds
of feedback tell those stops to Optuna as PRUNED (this project) or as COMPLETE with the value at the
stop (Ray's stock ``OptunaSearch``). A replay at one trial at a time is checked against Ray Tune's own
controller driving the same searcher and scheduler, and a real study's export against its stores.
"""

from __future__ import annotations

import ast
import csv
import itertools
import json
import math
import random
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import benchmark_script
import optuna
import pytest

from rblock_tune.errors import CheckpointError, ConfigError
from rblock_tune.tuning import (
    STRATEGIES,
    RecordedPoint,
    Recording,
    Strategy,
    load_recording,
    merge_recordings,
    replay,
    replay_spec,
)
from rblock_tune.tuning._recording import recording_from_dict

ALPHAS = (0.3, 1.0, 3.0)
PS = (0.05, 0.15, 0.25, 0.35)
BUDGET = 4

SPEC: dict[str, Any] = {
    "name": "tiny-grid",
    "base": {
        "data": {"name": "synthetic", "synthetic_size": 64, "image_size": 8},
        "model": {"name": "resnet8"},
        "reg": {"variant": "bdrop_dml", "rate_basis": "submodel"},
        "train": {"epochs": BUDGET, "batch_size": 32},
    },
    "metric": "val_acc",
    "space": {
        "reg.alpha": {"type": "categorical", "values": list(ALPHAS)},
        "reg.drop_prob": {"type": "categorical", "values": list(PS)},
    },
    "search": {"algorithm": "grid"},
    "scheduler": {"type": "fifo"},
}


def tiny_recording(seed: int = 0) -> Recording:
    """12 points whose curves cross: some start well and end badly, so ASHA's rungs matter."""
    rng = random.Random(seed)
    points = []
    for number, (alpha, p) in enumerate(itertools.product(ALPHAS, PS)):
        final = 0.5 + 0.1 * (1 - abs(math.log(alpha))) - (p - 0.15) ** 2 + rng.uniform(-0.03, 0.03)
        start = rng.uniform(0.1, 0.4)
        curve = [start + (final - start) * (e / BUDGET) ** rng.uniform(0.3, 3) for e in range(1, BUDGET + 1)]
        points.append(
            RecordedPoint(
                params={"reg.alpha": alpha, "reg.drop_prob": p},
                status="completed",
                epochs=BUDGET,
                curves={
                    "val_acc": curve,
                    "epoch_seconds": [rng.uniform(1, 3) for _ in range(BUDGET)],
                    "test_acc": [None] * (BUDGET - 1) + [final - 0.01],
                },
                trial=number,
            )
        )
    return Recording("tiny-grid", "val_acc", "max", BUDGET, SPEC, tuple(points))


# ---------------------------------------------------------------------- the recording
def test_snap_moves_each_value_to_its_nearest_recorded_one_on_the_right_scale() -> None:
    rec = tiny_recording()
    assert rec.log_keys() == {"reg.alpha"}  # 0.3, 1, 3: even on a log scale; p: even on a linear one
    # 0.5 is nearer 0.3 than 1 on a linear scale, nearer 1 on a log one (sqrt(0.3) = 0.548 is the edge)
    assert rec.snap({"reg.alpha": 0.5, "reg.drop_prob": 0.11}).params == {
        "reg.alpha": 0.3,
        "reg.drop_prob": 0.15,
    }
    assert rec.snap({"reg.alpha": 0.6, "reg.drop_prob": 0.09}).params == {
        "reg.alpha": 1.0,
        "reg.drop_prob": 0.05,
    }
    assert rec.snap({"reg.alpha": 100.0, "reg.drop_prob": -1.0}).params == {
        "reg.alpha": 3.0,
        "reg.drop_prob": 0.05,
    }
    space = rec.search_space()
    # half a step beyond the end values, so each recorded value owns an equal share of the range
    assert space["reg.drop_prob"] == {"type": "uniform", "low": 0.0, "high": 0.4}
    assert space["reg.alpha"]["type"] == "loguniform"  # a log step of sqrt(10): half of it each side
    assert math.isclose(space["reg.alpha"]["low"], 0.3 / 10**0.25, rel_tol=1e-9)
    assert math.isclose(space["reg.alpha"]["high"], 3.0 * 10**0.25, rel_tol=1e-9)


def test_a_recording_round_trips_through_its_file_and_refuses_what_is_not_one(tmp_path: Path) -> None:
    rec = tiny_recording()
    path = rec.save(tmp_path / "rec.json")
    back = load_recording(path)
    assert back == rec
    with pytest.raises(ConfigError, match="no such recording"):
        load_recording(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable recording"):
        load_recording(tmp_path / "bad.json")
    raw = json.loads(path.read_text())
    with pytest.raises(ConfigError, match="format"):
        recording_from_dict({**raw, "format": "rblock-recording/0"})
    with pytest.raises(OSError):  # onto a folder: the partial file does not stay behind
        rec.save(tmp_path)
    assert not list(tmp_path.parent.glob(f"{tmp_path.name}.tmp"))
    del raw["points"][0]["curves"]
    with pytest.raises(ConfigError, match="missing or malformed"):
        recording_from_dict(raw)


# ---------------------------------------------------------------------- the replay
def test_a_strategy_names_what_it_runs_or_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="scheduler='hyperband' is not allowed: must be fifo or asha"):
        Strategy("tpe", "hyperband")
    with pytest.raises(ConfigError, match="has no grid"):
        Strategy("grid", feedback="stock")


def test_a_replayed_grid_runs_every_point_once_and_returns_exactly_the_recorded_best() -> None:
    rec = tiny_recording()
    strategy = STRATEGIES["grid"]
    result = replay(rec, replay_spec(rec, strategy), strategy)
    assert [t.point for t in result.trials] == list(rec.points)  # the grid's order, each point once
    assert result.epochs == rec.total_epochs() and all(t.epochs == BUDGET for t in result.trials)
    assert result.pick is not None and result.pick.point is rec.best()
    assert result.pick.value == rec.best().final("val_acc")
    assert result.pick.test_acc == rec.best().final("test_acc")
    assert math.isclose(result.seconds, rec.total_seconds())


# ---------------------------------------------------------------------- replicates over seeds
def tiny_replicate(seed: int) -> Recording:
    """The tiny grid trained (here: drawn) from ``base.seed`` ``seed``: the same points, other curves."""
    rec = tiny_recording(seed)
    spec = {**SPEC, "name": f"tiny-grid-seed{seed}", "base": {**SPEC["base"], "seed": seed}}
    return Recording(spec["name"], rec.metric, rec.mode, rec.budget, spec, rec.points)


def _key(point: RecordedPoint) -> str:
    return repr(sorted(point.params.items()))


def _fields(rec: Recording) -> tuple[Any, ...]:
    return (rec.study, rec.metric, rec.mode, rec.budget, rec.spec, rec.points)


def _mean_finals(recs: list[Recording], metric: str = "val_acc") -> dict[str, float]:
    """Each configuration's final ``metric`` averaged over ``recs``, computed here from the files."""
    out: dict[str, list[float]] = {}
    for rec in recs:
        for point in rec.points:
            out.setdefault(repr(sorted(point.params.items())), []).append(point.curves[metric][-1])
    return {k: statistics.mean(v) for k, v in out.items()}


def test_replicates_merge_with_their_seeds_and_a_configuration_is_worth_its_mean() -> None:
    parts = [tiny_recording(), tiny_replicate(1), tiny_replicate(2)]  # the first sets no base.seed: 0
    rec = merge_recordings(parts)
    assert rec.seeds() == (0, 1, 2) and len(rec.points) == 36 and len(rec.configurations()) == 12
    assert rec.grid_epochs() == 12 * BUDGET and rec.total_epochs() == 36 * BUDGET  # one pass is one seed
    means = _mean_finals(parts)
    for point in rec.points:
        assert [p.seed for p in rec.replicates(point)] == [0, 1, 2]
        assert math.isclose(rec.truth(point), means[_key(point)])  # type: ignore[arg-type]
        assert (
            rec.truth(point, seeds=[1, 2])
            == statistics.mean(  # the seeds a replay did not see
                part.snap(point.params).final("val_acc")
                for part in parts[1:]  # type: ignore[misc]
            )
        )
    best = max(means, key=means.__getitem__)
    assert _key(rec.best()) == best
    single = max(rec.points, key=lambda p: p.final("val_acc"))  # type: ignore[arg-type,return-value]
    assert _key(rec.best()) != _key(single)  # here the luckiest single draw is not the best mean
    config = {"reg.alpha": 0.9, "reg.drop_prob": 0.16}  # lands on alpha 1, p 0.15, on the seed asked
    assert [rec.snap(config, seed).seed for seed in (2, 0, 1)] == [2, 0, 1]
    assert {repr(rec.snap(config, seed).params) for seed in (0, 1, 2)} == {
        repr({"reg.alpha": 1.0, "reg.drop_prob": 0.15})
    }
    with pytest.raises(ConfigError, match=r"has no seed 7: it has \(0, 1, 2\)"):
        rec.snap(config, 7)
    assert merge_recordings([parts[0]]) is parts[0]
    assert tiny_recording().seeds() == (0,) and tiny_recording().grid_epochs() == 12 * BUDGET


def test_a_configuration_that_failed_on_one_seed_is_not_worth_its_lucky_seeds() -> None:
    parts = [tiny_recording(), tiny_replicate(1)]
    lucky = max(parts[0].points, key=lambda p: p.final("val_acc"))  # type: ignore[arg-type,return-value]
    failed = [
        RecordedPoint(p.params, "diverged", 2, {k: v[:2] for k, v in p.curves.items()}, p.trial)
        if _key(p) == _key(lucky)
        else p
        for p in parts[1].points
    ]
    rec = merge_recordings([parts[0], Recording(*_fields(parts[1])[:5], tuple(failed))])
    assert rec.truth(lucky) is None and rec.truth(lucky, seeds=[0]) == lucky.final("val_acc")
    assert _key(rec.best()) != _key(lucky)
    assert all(rec.truth(p) is not None for p in rec.configurations() if _key(p) != _key(lucky))


def test_recordings_that_are_not_replicates_of_one_grid_are_refused_in_one_line() -> None:
    rec = tiny_recording()
    other = tiny_replicate(1)
    study, metric, mode, budget, spec = _fields(other)[:5]

    def refused(*recs: Recording) -> str:
        with pytest.raises(ConfigError) as info:
            merge_recordings(list(recs))
        assert "\n" not in str(info.value)
        return str(info.value)

    lr = {**spec, "base": {**spec["base"], "train": {**SPEC["base"]["train"], "lr": 0.2}}}
    assert "their specs differ in base.train.lr" in refused(
        rec, Recording(study, metric, mode, budget, lr, other.points)
    )
    moved = {**spec, "resources": {"cpus": 1}, "failures": {"retries": 1}}  # where it ran: no difference
    assert merge_recordings([rec, Recording(study, metric, mode, budget, moved, other.points)]).seeds() == (
        0,
        1,
    )
    assert "were both trained from seed 0: replicates need different" in refused(rec, tiny_recording(5))
    assert "their metric differs" in refused(
        rec, Recording(study, "val_loss", mode, budget, spec, other.points)
    )
    assert "their mode differs" in refused(rec, Recording(study, metric, "min", budget, spec, other.points))
    assert "their budget differs" in refused(rec, Recording(study, metric, mode, 3, spec, other.points))
    fewer = Recording(study, metric, mode, budget, spec, other.points[:-1])
    assert "they hold other configurations" in refused(rec, fewer)
    liar = Recording(study, metric, mode, budget, spec, tuple(replace(p, seed=7) for p in other.points))
    assert "says seed 7 but its spec's base.seed is 1" in refused(rec, liar)
    assert "no recording to merge" in refused()


def test_a_replicated_recording_keeps_its_seeds_through_its_file_and_refuses_bad_ones(tmp_path: Path) -> None:
    rec = merge_recordings([tiny_recording(), tiny_replicate(1)])
    path = rec.save(tmp_path / "rec.json")
    back = load_recording(path)
    assert back == rec and back.seeds() == (0, 1)
    raw = json.loads(path.read_text())
    for seed in (None, "one", 1.5, True, -1):
        with pytest.raises(ConfigError, match=r"spec\.base\.seed is .*; a trial seed is an integer >= 0"):
            recording_from_dict(
                {**raw, "spec": {**raw["spec"], "base": {**raw["spec"]["base"], "seed": seed}}}
            )
    with pytest.raises(ConfigError, match="a point's seed is 'x'"):
        recording_from_dict({**raw, "points": [{**raw["points"][0], "seed": "x"}]})
    with pytest.raises(ConfigError, match="missing or malformed"):
        recording_from_dict({**raw, "points": [{**raw["points"][0], "curves": [1, 2]}]})


def test_a_replay_over_replicates_trains_every_trial_from_one_seed_and_is_judged_by_the_mean() -> None:
    """Replay k lives in the k-th seed's world (every trial of a study trains from its base.seed), Optuna
    ranks what its trials saw, and the pick is worth its configuration's mean over every seed, and,
    apart, over the seeds the replay did not see."""
    parts = [tiny_recording(), tiny_replicate(1)]
    rec = merge_recordings(parts)
    means = _mean_finals(parts)
    tests = _mean_finals(parts, "test_acc")
    for seed in range(4):
        strategy = STRATEGIES["grid"]
        result = replay(rec, replay_spec(rec, strategy, seed=seed), strategy)
        world, other = seed % 2, 1 - seed % 2
        assert result.recorded_seed == world
        assert [t.point.seed for t in result.trials] == [world] * 12 and result.epochs == rec.grid_epochs()
        assert [_key(t.point) for t in result.trials] == [_key(p) for p in parts[0].points]
        assert result.study is not None
        told = {t.number: t.value for t in result.study.trials}
        assert [told[n] for n in range(12)] == [t.point.final("val_acc") for t in result.trials]
        luckiest = max(result.trials, key=lambda t: t.point.final("val_acc"))  # type: ignore[arg-type,return-value]
        pick = result.pick
        assert pick is not None and _key(pick.point) == _key(luckiest.point)
        assert math.isclose(pick.value, means[_key(luckiest.point)])
        assert math.isclose(pick.test_acc, tests[_key(luckiest.point)])  # type: ignore[arg-type]
        assert pick.unseen == parts[other].snap(luckiest.point.params).final("val_acc")

        strategy = STRATEGIES["tpe+asha"]
        spec = replay_spec(rec, strategy, seed=seed, max_concurrent=2, num_samples=30)
        searched = replay(rec, spec, strategy)
        assert {t.point.seed for t in searched.trials} == {world} and searched.recorded_seed == world
        assert any(t.stopped for t in searched.trials)
        assert all(_key(a.point) != _key(b.point) for a, b in itertools.pairwise(searched.picks))
        for pick in searched.picks:
            assert math.isclose(pick.value, means[_key(pick.point)])


def _asha_stops(rec: Recording, rf: float, rungs: tuple[int, ...]) -> list[int]:
    """Where asynchronous successive halving stops each trial of the grid, one trial at a time: at a
    rung, a trial whose value is below the median (rf 2) of the values recorded there before it
    stops; its value is recorded either way (Li et al. 2020, ASHA; Ray's AsyncHyperBandScheduler)."""
    assert rf == 2
    seen: dict[int, list[float]] = {r: [] for r in rungs}
    stops = []
    for point in rec.points:
        stop = BUDGET
        for rung in rungs:
            value = point.value("val_acc", rung)
            assert value is not None
            below = bool(seen[rung]) and value < statistics.median(seen[rung])
            seen[rung].append(value)
            if below:
                stop = rung
                break
        stops.append(stop)
    return stops


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_replayed_asha_stops_trials_at_the_rungs_the_recorded_curves_imply(seed: int) -> None:
    rec = tiny_recording(seed)
    strategy = Strategy("grid", "asha")
    result = replay(rec, replay_spec(rec, strategy, grace_period=1, reduction_factor=2), strategy)
    expected = _asha_stops(rec, 2, rungs=(1, 2))
    assert [t.epochs for t in result.trials] == expected
    assert [t.stopped for t in result.trials] == [e < BUDGET for e in expected]
    assert any(e == 1 for e in expected) and any(e == 2 for e in expected)  # both rungs prune here
    assert result.epochs == sum(expected)


def test_pruned_feedback_tells_asha_stops_as_pruned_and_stock_as_complete_with_the_partial_value() -> None:
    rec = tiny_recording()
    for name in ("tpe+asha", "tpe+asha-stock"):
        strategy = STRATEGIES[name]
        spec = replay_spec(rec, strategy, seed=3, max_concurrent=2, num_samples=30)
        result = replay(rec, spec, strategy, label=name)
        again = replay(rec, spec, strategy, label=name)
        assert [t.point for t in again.trials] == [t.point for t in result.trials]  # deterministic
        assert len(result.trials) == 30 and any(t.stopped for t in result.trials)
        assert result.study is not None
        trials = sorted(result.study.get_trials(deepcopy=False), key=lambda t: t.number)
        for replayed, trial in zip(result.trials, trials, strict=True):
            if name == "tpe+asha-stock":  # Ray's OptunaSearch: the value at the stop, as if complete
                assert trial.state == optuna.trial.TrialState.COMPLETE
                assert trial.value == replayed.point.value("val_acc", replayed.epochs)
            elif replayed.stopped:
                assert trial.state == optuna.trial.TrialState.PRUNED
                assert sorted(trial.intermediate_values) == list(range(1, replayed.epochs + 1))
            else:
                assert trial.state == optuna.trial.TrialState.COMPLETE
                assert trial.value == replayed.point.final("val_acc")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tpe", "tpe+asha", "tpe+asha-stock"])
def test_a_replay_tells_optuna_what_ray_tune_tells_it_when_the_same_curves_are_reported(
    ray_session: Any, tmp_path: Path, name: str
) -> None:
    """Ray Tune's controller drives the same searcher and scheduler over a trainable that reports the
    recorded curves, one trial at a time: the Optuna study it leaves is the replay's, trial by trial
    (values suggested, intermediate values, state, value)."""
    from ray import tune

    from rblock_tune.layout import CONFIG_NUMBER_KEY
    from rblock_tune.tuning._phases import search_algorithm, search_scheduler
    from rblock_tune.tuning._replay import _searcher

    rec = tiny_recording(1)
    strategy = STRATEGIES[name]
    spec = replay_spec(rec, strategy, seed=5, max_concurrent=1, num_samples=14)
    replayed = replay(rec, spec, strategy, label=name)
    assert replayed.study is not None and any(t.stopped for t in replayed.trials) == (
        strategy.scheduler == "asha"
    )

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    searcher, study = _searcher(spec, strategy, rec.budget, storage)

    def trainable(config: dict[str, Any]) -> None:
        overrides = {k: v for k, v in config.get("overrides", config).items() if k != CONFIG_NUMBER_KEY}
        point = rec.snap(overrides)
        for epoch in range(1, rec.budget + 1):
            tune.report({"epoch": epoch, "val_acc": point.value("val_acc", epoch), "diverged": 0})

    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=search_algorithm(spec, searcher),
            scheduler=search_scheduler(spec, rec.budget),
            num_samples=spec.search.num_samples,
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), name="replay-check", verbose=0),
    )
    tuner.fit()

    def trials(study: optuna.study.Study) -> list[tuple[Any, ...]]:
        return [
            (t.params, t.intermediate_values, t.state, t.value)
            for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        ]

    assert trials(study) == trials(replayed.study)


# ---------------------------------------------------------------------- export of a real study
@pytest.mark.slow
def test_a_finished_study_exports_every_trial_with_its_curves_and_replays_to_its_best(
    ray_session: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 3-point grid measuring the test set after every epoch (``search.test_acc: every_epoch``):
    ``study export`` writes each trial's values, status and per-epoch curves as MLflow holds them,
    and a replayed grid over the file returns the study's own best."""
    from mlflow.tracking import MlflowClient

    from rblock_tune.cli import main
    from rblock_tune.layout import MLFLOW_RUN_ATTR, RECORDING_FILE
    from rblock_tune.tuning import export_study, run_study, spec_from_dict

    spec = spec_from_dict(
        {
            "name": "exp",
            "base": {
                "data": {"name": "synthetic", "synthetic_size": 128, "val_size": 32},
                "model": {"name": "resnet8"},
                "reg": {"variant": "bdrop_dml", "drop_prob": 0.1},
                "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "device": "cpu", "eval_batch_size": 64},
            },
            "metric": "val_acc",
            "space": {"reg.alpha": {"type": "categorical", "values": [0.3, 1.0, 3.0]}},
            "search": {"algorithm": "grid", "test_acc": "every_epoch"},
            "scheduler": {"type": "fifo"},
        }
    )
    result = run_study(spec, workdir=tmp_path)
    with pytest.raises(CheckpointError, match="no study 'nope'"):
        export_study("nope", tmp_path)
    assert main(["-q", "study", "export", "exp", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    target = tmp_path / "exp" / RECORDING_FILE
    assert "exported 3 trials of study exp (6 epochs, best val_acc" in out and str(target) in out
    rec = load_recording(target)
    assert (rec.study, rec.metric, rec.mode, rec.budget, len(rec.points)) == ("exp", "val_acc", "max", 2, 3)
    assert rec.code["rblock_tune"] and rec.spec["search"]["test_acc"] == "every_epoch"

    client = MlflowClient(tracking_uri=result.tracking_uri)
    study = optuna.load_study(study_name="exp", storage=result.optuna_storage)
    for point, trial in zip(rec.points, sorted(study.trials, key=lambda t: t.number), strict=True):
        assert point.trial == trial.number and point.params == trial.params
        assert point.run_id == trial.user_attrs[MLFLOW_RUN_ATTR] and point.status == "completed"
        assert point.epochs == 2 and point.seed == 0  # the search trains from base.seed
        for metric in ("val_acc", "train_loss", "epoch_seconds", "test_acc"):
            history = sorted((m.step, m.value) for m in client.get_metric_history(point.run_id, metric))
            assert [s for s, _ in history] == [1, 2], (metric, history)  # test_acc after every epoch
            assert point.curves[metric] == [v for _, v in history]
        assert point.final("test_acc") == client.get_run(point.run_id).data.metrics["test_acc"]

    strategy = STRATEGIES["grid"]
    replayed = replay(rec, replay_spec(rec, strategy), strategy)
    assert replayed.pick is not None and replayed.pick.point.params == result.best[0]["overrides"]

    def refused(*args: str) -> str:
        code = main(["-q", "study", "export", *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("rblock-tune: error: "), (code, err)
        return err[0]

    assert "no study 'nope'" in refused("nope", "--workdir", str(tmp_path))
    assert "cannot write the recording" in refused(
        "exp", "--workdir", str(tmp_path), "--out", str(target / "x")
    )
    state_file = tmp_path / "exp" / "study.json"
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "search_done": False}))
    assert "its search has not finished" in refused("exp", "--workdir", str(tmp_path))


# ---------------------------------------------------------------------- the benchmark script
def _with_curves(rec: Recording, early: Any, test: Any) -> Recording:
    """``rec`` with each point's early epochs (and test curve) set by ``early(final)`` and ``test(final)``."""
    points = []
    for point in rec.points:
        final = point.curves["val_acc"][-1]
        curves = {**point.curves, "val_acc": [*([early(final)] * (rec.budget - 1)), final]}
        curves["test_acc"] = [test(final)] * rec.budget if test else curves["test_acc"]
        points.append(RecordedPoint(point.params, point.status, point.epochs, curves, point.trial))
    return Recording(rec.study, rec.metric, rec.mode, rec.budget, rec.spec, tuple(points))


def test_the_benchmark_says_how_well_early_epochs_rank_the_grid() -> None:
    bench = benchmark_script.load("bench_search")
    rec = tiny_recording()
    agree = bench.ranks(_with_curves(rec, lambda f: f / 2, None))
    assert "val_acc after epoch k with val_acc after 4: 1: 1.00, 2: 1.00, 3: 1.00." in agree
    assert "Final val_acc against final test_acc: 1.00." in agree
    assert "test_acc after epoch k" not in agree  # the tiny grid has test accuracy after its last epoch only
    reverse = bench.ranks(_with_curves(rec, lambda f: 1 - f, lambda f: 1 - f))
    assert (
        "1: -1.00, 2: -1.00, 3: -1.00." in reverse
        and "Final val_acc against final test_acc: -1.00." in reverse
    )
    assert "test_acc after epoch k against the final test_acc: 1: 1.00, 2: 1.00, 3: 1.00." in reverse


def test_the_benchmark_replays_every_strategy_and_writes_its_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = benchmark_script.load("bench_search")
    recording = tiny_recording().save(tmp_path / "tiny.json")
    out = tmp_path / "out"
    argv = ["bench_search.py", "--recording", str(recording), "--replays", "2", "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    bench.main()
    printed = capsys.readouterr().out
    for name in STRATEGIES:
        assert f"| {name} |" in printed
    assert "**tpe+asha against tpe+asha-stock**, 2 replays" in printed and "Spearman correlation" in printed
    rows = (out / "search.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * len(STRATEGIES)
    assert (out / "search.md").read_text() in printed and (out / "search.png").stat().st_size > 0


def test_the_benchmark_replays_replicates_as_one_grid_of_means(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = benchmark_script.load("bench_search")
    parts = [tiny_recording(), tiny_replicate(1)]
    files = [part.save(tmp_path / f"{part.study}.json") for part in parts]
    out = tmp_path / "out"
    argv = ["bench_search.py", "--recording", *map(str, files), "--replays", "2", "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    bench.main()
    printed = capsys.readouterr().out
    means = _mean_finals(parts)
    best = max(means.values())
    assert f"(12 points x {BUDGET} epochs = {12 * BUDGET} epochs, x 2 seeds [0, 1]" in printed
    assert f"Grid's best: val_acc {best * 100:.2f} at " in printed and "each the mean over 2 seeds" in printed
    assert "Seeds 0 and 1 over 12 configurations: Spearman" in printed
    assert "final pick val_acc on unseen seeds" in printed
    rows = list(csv.DictReader((out / "search.csv").open()))
    assert {r["recorded_seed"] for r in rows} == {"0", "1"}  # replays 0 and 1 of each strategy
    for row in rows:
        assert math.isclose(
            float(row["pick_val"]), means[repr(sorted(ast.literal_eval(row["pick_params"]).items()))]
        )
    monkeypatch.setattr("sys.argv", [*argv[:2], str(files[0]), str(files[0]), "--out", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        bench.main()
    assert exit_info.value.code == 2
    assert "were both trained from seed 0" in capsys.readouterr().err
    stopped = tiny_recording()
    stopped = Recording(*_fields(stopped)[:5], tuple(replace(p, epochs=2) for p in stopped.points))
    monkeypatch.setattr(
        "sys.argv", [*argv[:2], str(stopped.save(tmp_path / "stopped.json")), "--out", str(out)]
    )
    with pytest.raises(SystemExit) as exit_info:
        bench.main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "no configuration that ran all 4 epochs" in err[0]


# ---------------------------------------------------------------------- the shipped recordings
DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data"
SHIPPED = sorted(DATA.glob("*.json"))


def test_the_benchmark_grid_is_shipped() -> None:
    assert DATA / "grid_cifar10_resnet8.json" in SHIPPED


def test_a_shipped_grid_of_48_points_has_test_accuracy_curves() -> None:
    """The benchmark's data holds a grid of at least 48 points with the test accuracy measured after
    every epoch (the per-epoch curves a user compares searches on), not only after the last."""
    from rblock_tune.tuning import load_study_spec

    with_curves = [
        path
        for path in SHIPPED
        if load_study_spec(path.with_suffix(".yaml")).search.test_acc == "every_epoch"
        and len(load_recording(path).points) >= 48
    ]
    assert with_curves, "no shipped recording of 48 points measures the test set after every epoch"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_a_shipped_recording_is_a_whole_grid_of_the_spec_beside_it_and_small(path: Path) -> None:
    """Every recording in ``benchmarks/data`` holds every point of the spec of the same name once, each
    with its whole budget of curves and its test accuracy (after every epoch where the spec asks), the
    code that recorded it, and stays small."""
    from rblock_tune.tuning import grid_points, load_study_spec

    assert path.stat().st_size < 300 * 1024
    rec = load_recording(path)
    spec = load_study_spec(path.with_suffix(".yaml"))
    assert rec.study == spec.name and rec.budget == spec.search_epochs == 8
    points = grid_points(spec)
    assert len(points) >= 48 and len(rec.points) == len(points)
    assert sorted(map(repr, (p.params for p in rec.points))) == sorted(map(repr, points))
    every_epoch = spec.search.test_acc == "every_epoch"
    for point in rec.points:
        assert point.status == "completed" and point.epochs == rec.budget
        for metric in ("val_acc", "train_loss", "epoch_seconds", *(["test_acc"] if every_epoch else [])):
            assert all(v is not None and math.isfinite(v) for v in point.curves[metric]), metric
        assert point.final("test_acc") is not None
    assert rec.code.get("commit") and rec.meta.get("search_wall_seconds")
    assert rec.complete() == list(rec.points)


def test_shipped_replicates_merge_with_the_grid_they_repeat() -> None:
    """A shipped ``NAME_seedK.json`` is the grid of ``NAME.json`` trained from base.seed K: the two merge
    into one recording of replicates (same points, distinct seeds), and each of its points says its seed."""
    replicates = [p for p in SHIPPED if "_seed" in p.stem]
    assert replicates, "no replicate of a shipped grid"
    for path in replicates:
        grid = DATA / f"{path.stem.rsplit('_seed', 1)[0]}.json"
        seed = int(path.stem.rsplit("_seed", 1)[1])
        rec = load_recording(path)
        assert {p.seed for p in rec.points} == {seed} and rec.spec["base"]["seed"] == seed
        merged = merge_recordings([load_recording(grid), rec])
        assert merged.seeds() == (0, seed) and len(merged.configurations()) == len(rec.points)
        assert merged.grid_epochs() == rec.total_epochs()
        assert all(merged.truth(p) is not None for p in merged.configurations())
