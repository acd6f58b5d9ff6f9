"""Studies: the Optuna searcher's tells, paths, tracking checks, and whole studies on Ray."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from rblock_tune.errors import CheckpointError, ConfigError
from rblock_tune.layout import (
    ARM_CONFIG_TAG,
    ARM_TAG,
    ARMS_ARTIFACT,
    DESCRIPTION_TAG,
    EPOCHS_DONE_TAG,
    MLFLOW_RUN_ATTR,
    NOT_APPLICABLE_TAG,
    OPTUNA_TRIAL_TAG,
    PARENT_TAG,
    PHASE_TAG,
    RESULT_RUN_ID,
    ROLE_PARENT,
    ROLE_TAG,
    ROLE_TRIAL,
    RUN_CONFIG_ARTIFACT,
    RUN_LOG_ARTIFACT,
    SEARCH_ARM,
    SEED_TAG,
    STATE_FILE,
    STATUS_TAG,
    STUDY_TAG,
    TRIAL_TAG,
    VARIANT_TAG,
    stopped_name,
)
from rblock_tune.tuning import (
    OptunaStudySearcher,
    check_tracking,
    grid_points,
    resolve_paths,
    run_study,
    sample_space,
    spec_from_dict,
    study_status,
)
from rblock_tune.tuning._workdir import RAY_DIR

BASE = {
    "data": {"name": "synthetic", "synthetic_size": 256, "val_size": 64},
    "model": {"name": "resnet8"},
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.05, "device": "cpu", "eval_batch_size": 64},
}
PAIRED = ["random_dml", "bdrop_dml", "sdrop_dml"]


def make_spec(**overrides: Any) -> Any:
    raw: dict[str, Any] = {
        "name": "t",
        "base": BASE,
        "space": {
            "reg.variant": ["dropblock", "bdrop_dml"],
            "reg.alpha": {"type": "loguniform", "low": 0.1, "high": 10, "when": {"reg.variant": PAIRED}},
        },
        "search": {"num_samples": 3, "max_concurrent": 1},
    }
    raw.update(overrides)
    return spec_from_dict(raw)


def searcher_for(spec: Any, tmp_path: Path, budget: int = 4) -> OptunaStudySearcher:
    return OptunaStudySearcher(spec, f"sqlite:///{tmp_path / 'optuna.db'}", "t", budget)


# ------------------------------------------------------------ searcher (no Ray workers)
def test_a_stopped_runs_name_says_so_once_right_after_its_number() -> None:
    name = "trial-003 sdrop_dml a=3.6 p=0.44 b=1"
    stopped = stopped_name(name, 1, 4)
    assert stopped == "trial-003 [stopped 1/4] sdrop_dml a=3.6 p=0.44 b=1"
    assert stopped_name(stopped, 2, 4) == stopped  # a second callback (a resumed driver) adds nothing
    assert stopped_name("top1 s2", 3, 8) == "top1 [stopped 3/8] s2"


def test_early_stopped_trial_is_told_pruned_with_intermediate_values(tmp_path: Path) -> None:
    searcher = searcher_for(make_spec(), tmp_path, budget=4)
    assert "overrides" in (searcher.suggest("a") or {})
    searcher.on_trial_result("a", {"epoch": 1, "val_acc": 0.3, "diverged": 0})
    searcher.on_trial_result("a", {"epoch": 2, "val_acc": 0.4, "diverged": 0})
    searcher.on_trial_complete("a", {"epoch": 2, "val_acc": 0.4, "diverged": 0})
    (trial,) = searcher.study.trials
    # Ray's stock OptunaSearch would tell COMPLETE with value 0.4 here
    assert trial.state == TrialState.PRUNED  # TPE treats pruned trials apart from complete ones
    assert trial.intermediate_values == {1: 0.3, 2: 0.4}
    assert trial.user_attrs["rblock_status"] == "early_stopped"


def test_complete_failed_and_diverged_tells(tmp_path: Path) -> None:
    searcher = searcher_for(make_spec(), tmp_path, budget=2)
    for trial_id in ("done", "error", "nan"):
        searcher.suggest(trial_id)
    searcher.on_trial_result("done", {"epoch": 2, "val_acc": 0.5})
    searcher.on_trial_complete("done", {"epoch": 2, "val_acc": 0.5, "diverged": 0})
    searcher.on_trial_complete("error", None, error=True)
    searcher.on_trial_complete("nan", {"epoch": 1, "val_acc": 0.1, "diverged": 1})
    searcher.on_trial_complete("done", {"epoch": 2, "val_acc": 0.9})  # a repeat is ignored
    states = [(t.state, t.value, t.user_attrs.get("rblock_status")) for t in searcher.study.trials]
    assert states == [
        (TrialState.COMPLETE, 0.5, None),
        (TrialState.FAIL, None, "failed"),
        (TrialState.FAIL, None, "diverged"),
    ]


def test_searcher_survives_pickling_and_reconnects(tmp_path: Path) -> None:
    searcher = searcher_for(make_spec(), tmp_path)
    first = searcher.suggest("a")
    path = tmp_path / "searcher.pkl"
    searcher.save(str(path))
    restored = searcher_for(make_spec(), tmp_path)
    restored.restore(str(path))
    assert restored.suggest("a") == first  # a restored trial gets its own parameters back
    restored.on_trial_complete("a", {"epoch": 4, "val_acc": 0.7})
    assert restored.study.trials[0].state == TrialState.COMPLETE
    # an Optuna trial asked but never known to Ray (driver crash) is failed on resume
    restored.study.ask()
    assert restored.fail_orphans() == 1


def test_a_trial_told_after_rays_last_save_reports_again_without_harm(tmp_path: Path) -> None:
    """The driver told a trial, then died before Ray saved the experiment state that has it done: the
    resumed driver's searcher (restored from that earlier save) sees the trial report its last epoch
    again (Ray resumes it, from its own checkpoint copy). The outcome on record stays as it was."""
    searcher = searcher_for(make_spec(), tmp_path, budget=2)
    searcher.suggest("a")
    searcher.on_trial_result("a", {"epoch": 1, "val_acc": 0.4, RESULT_RUN_ID: "r1"})
    saved = tmp_path / "searcher-state.json"
    searcher.save(str(saved))  # Ray's last save: trial a midway
    searcher.on_trial_complete("a", {"epoch": 2, "val_acc": 0.5, RESULT_RUN_ID: "r1"})
    restored = searcher_for(make_spec(), tmp_path, budget=2)
    restored.restore(str(saved))
    restored.on_trial_result("a", {"epoch": 2, "val_acc": 0.5, RESULT_RUN_ID: "r1"})
    restored.on_trial_complete("a", {"epoch": 2, "val_acc": 0.5, RESULT_RUN_ID: "r1"})
    (trial,) = restored.study.trials
    assert trial.state == TrialState.COMPLETE and trial.value == 0.5
    assert trial.intermediate_values == {1: 0.4, 2: 0.5}


def test_conditional_dimension_is_sampled_only_when_its_condition_holds(tmp_path: Path) -> None:
    spec = make_spec()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {"dropblock": 0, "bdrop_dml": 0}
    for _ in range(30):
        params = sample_space(study.ask(), spec)
        seen[params["reg.variant"]] += 1
        assert ("reg.alpha" in params) == (params["reg.variant"] == "bdrop_dml")
    assert all(seen.values())


def test_grid_points_respect_conditions() -> None:
    spec = make_spec(
        space={
            "reg.variant": ["dropblock", "bdrop_dml"],
            "reg.alpha": {"type": "categorical", "values": [0.5, 2.0], "when": {"reg.variant": PAIRED}},
            "reg.block_size": {"type": "int", "low": 1, "high": 5, "step": 2},
        },
        search={"algorithm": "grid"},
    )
    points = grid_points(spec)
    assert len(points) == (1 + 2) * 3
    assert {"reg.variant": "dropblock", "reg.block_size": 3} in points
    assert all(("reg.alpha" in p) == (p["reg.variant"] == "bdrop_dml") for p in points)


def test_starting_points_are_tried_first(tmp_path: Path) -> None:
    spec = make_spec(search={"num_samples": 3, "points": [{"reg.variant": "bdrop_dml", "reg.alpha": 3.0}]})
    searcher = searcher_for(spec, tmp_path)
    assert searcher.suggest("a") == {"overrides": {"reg.variant": "bdrop_dml", "reg.alpha": 3.0}, "number": 0}


# ------------------------------------------------------------------ paths and tracking
def test_remote_cluster_needs_server_tracking_and_shared_storage(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot write the local tracking store"):
        resolve_paths(tmp_path, "10.0.0.1:6379", "/shared/ray", None)
    with pytest.raises(ConfigError, match="needs --storage"):
        resolve_paths(tmp_path, "auto", None, "http://mlflow:5000")
    paths = resolve_paths(tmp_path, None, None, None)
    assert paths.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert paths.storage == str(tmp_path.resolve() / "ray")
    assert paths.optuna_storage == f"sqlite:///{tmp_path.resolve() / 'optuna.db'}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_tracking_server_is_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        check_tracking(f"http://127.0.0.1:{_free_port()}", timeout=2)
    assert "unreachable" in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------- whole studies


def runs_by_role(tracking_uri: str, name: str) -> dict[str, list[Any]]:
    """The experiment's runs by kind: ``search`` and ``seeds`` (the trials of each phase),
    ``search parent`` and ``seeds parent``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    out: dict[str, list[Any]] = {}
    for run in client.search_runs([experiment.experiment_id], max_results=1000):
        phase, role = run.data.tags[PHASE_TAG], run.data.tags[ROLE_TAG]
        assert role in (ROLE_PARENT, ROLE_TRIAL)  # one vocabulary for both phases
        out.setdefault(phase if role == ROLE_TRIAL else f"{phase} parent", []).append(run)
    return out


def _artifact_text(client: Any, run_id: str, path: str, tmp_path: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text()


@pytest.mark.slow
def test_study_with_seed_phase_and_mlflow_layout(ray_session: Any, tmp_path: Path) -> None:
    """The layout of layout.py, and what a reviewer sees in the MLflow and Optuna UIs without
    configuring anything: names, arms, descriptions, the best configuration, artifacts, links."""
    from mlflow.tracking import MlflowClient

    spec = make_spec(
        name="layout",
        seeds={"top_k": 1, "n_seeds": 2, "arms": [{"label": "none", "set": {"reg.variant": "none"}}]},
        scheduler={"type": "fifo"},  # every trial runs its budget: this test is about the layout, not ASHA
    )
    result = run_study(spec, workdir=tmp_path)
    runs = runs_by_role(result.tracking_uri, "layout")
    assert {r: len(v) for r, v in runs.items()} == {
        "search parent": 1,
        "seeds parent": 1,
        "search": 3,
        "seeds": 4,
    }
    client = MlflowClient(tracking_uri=result.tracking_uri)
    study_parent, seeds_parent = runs["search parent"][0], runs["seeds parent"][0]
    assert study_parent.info.run_name == "layout search" and seeds_parent.info.run_name == "layout seeds"
    # every run has an arm: a parent's is its phase, a search trial's "search"
    assert study_parent.data.tags[ARM_TAG] == "search" and seeds_parent.data.tags[ARM_TAG] == "seeds"
    artifacts = {a.path for a in client.list_artifacts(study_parent.info.run_id)}
    assert {"spec.yaml", "best_configs.yaml"} <= artifacts
    optuna_study = optuna.load_study(study_name="layout", storage=result.optuna_storage)
    by_number = {t.number: t for t in optuna_study.trials}
    for run in runs["search"]:
        tags = run.data.tags
        assert tags[PARENT_TAG] == study_parent.info.run_id
        assert tags[STUDY_TAG] == "layout" and tags[STATUS_TAG] == "completed"
        assert tags[TRIAL_TAG] and tags[SEED_TAG] == "0" and tags[ARM_TAG] == SEARCH_ARM
        assert run.data.params["train.epochs"] == "2" and "reg.variant" in run.data.params
        assert run.data.params["model.shortcut"] == "A"  # what was built (the config says null: the default)
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert sorted(m.step for m in history) == [1, 2]
        assert "test_acc" not in run.data.metrics  # search trials select on val_acc: no test set unless asked
        # named by Optuna number and sampled values; linked both ways with its Optuna trial
        trial = by_number[int(tags[OPTUNA_TRIAL_TAG])]
        variant = trial.params["reg.variant"]
        assert tags[VARIANT_TAG] == variant
        if variant == "bdrop_dml":
            expected = f"bdrop_dml a={trial.params['reg.alpha']:.2g} p=0.1 b=3"
        else:  # dropblock: no KL term, so no alpha
            expected = "dropblock p=0.1 b=3"
            assert "reg.alpha" not in run.data.params and "reg.alpha" in tags[NOT_APPLICABLE_TAG]
        assert (
            run.info.run_name == f"trial-{trial.number:03d} {expected}" and tags[ARM_CONFIG_TAG] == expected
        )
        assert trial.user_attrs[MLFLOW_RUN_ATTR] == run.info.run_id
        assert sorted(trial.intermediate_values) == [1, 2]  # the last epoch too
        # every run carries its resolved config and its log
        config = yaml.safe_load(_artifact_text(client, run.info.run_id, RUN_CONFIG_ARTIFACT, tmp_path))
        assert config["reg"]["variant"] == variant and config["train"]["epochs"] == 2
        log = _artifact_text(client, run.info.run_id, RUN_LOG_ARTIFACT, tmp_path)
        assert "epoch 1:" in log and "epoch 2:" in log and "finished: completed" in log
        # and where it trained, with how DropBlock's seeds were drawn there (both variants grow seeds)
        assert "device cpu, DropBlock seeds drawn sparse (reg.mask_sampler auto)" in log
    # the search parent carries the answer of the search
    best = result.best[0]
    parent = client.get_run(study_parent.info.run_id)
    assert parent.data.metrics["best_val_acc"] == pytest.approx(best["val_acc"])
    assert {k: parent.data.tags[f"rblock.best.{k}"] for k in best["overrides"]} == {
        k: str(v) for k, v in best["overrides"].items()
    }
    assert "best val_acc" in parent.data.tags[DESCRIPTION_TAG]
    assert optuna_study.metric_names == ["val_acc"]
    assert optuna_study.user_attrs["mlflow_experiment"] == "layout"
    assert optuna_study.user_attrs["mlflow_experiment_id"] == parent.info.experiment_id
    assert optuna_study.user_attrs["workdir"] == str(tmp_path.resolve())
    pairs = set()
    for run in runs["seeds"]:
        tags = run.data.tags
        assert tags[PARENT_TAG] == seeds_parent.info.run_id
        assert tags[STATUS_TAG] == "completed"
        pairs.add((tags[ARM_TAG], tags[SEED_TAG]))
        assert run.data.params["seed"] == tags[SEED_TAG]
        assert run.info.run_name == f"{tags[ARM_TAG]} s{tags[SEED_TAG]}"
        assert "test_acc" in run.data.metrics
        if tags[ARM_TAG] == "none":  # nothing is dropped: no drop param that would not apply
            assert tags[VARIANT_TAG] == "none" and tags[ARM_CONFIG_TAG] == "none"
            assert not {"reg.alpha", "reg.drop_prob", "reg.block_size"} & set(run.data.params)
        else:
            assert tags[VARIANT_TAG] == best["overrides"]["reg.variant"]
            assert tags[ARM_CONFIG_TAG].startswith(tags[VARIANT_TAG] + " ")
        assert "drop_prob" not in run.data.metrics and "scheduled_drop_prob" in run.data.metrics
    # the seed phase starts after the search's seed 0: no search trial is counted again as evidence
    assert pairs == {("top1", "1"), ("top1", "2"), ("none", "1"), ("none", "2")}
    description = client.get_run(seeds_parent.info.run_id).data.tags[DESCRIPTION_TAG]
    assert "- **top1**: " in description and "- **none**: none" in description
    for run in runs["seeds"]:  # each epoch record carries the realised drop rate of its masks
        metrics = run.data.metrics
        none = run.data.tags[ARM_TAG] == "none"
        if none:  # no masks of its own: no own-mask consistency
            assert metrics["drop_rate"] == 0.0 and "consistency_kl_own" not in metrics
        elif "drop_rate" in metrics:
            assert 0.0 < metrics["drop_rate"] < 0.2
        else:
            assert 0.0 < metrics["drop_rate_a"] < 0.2 and 0.0 < metrics["drop_rate_b"] < 0.2
        assert ({"consistency_kl_probe"} if none else {"consistency_kl_own", "consistency_kl_probe"}) <= set(
            metrics
        )
    arms_doc = yaml.safe_load(_artifact_text(client, seeds_parent.info.run_id, ARMS_ARTIFACT, tmp_path))
    assert arms_doc["seeds"] == [1, 2] and arms_doc["search_seeds"] == {"layout": [0]}
    assert arms_doc["allow_search_seeds"] is False
    state = yaml.safe_load((tmp_path / "layout" / STATE_FILE).read_text())
    assert state["search_seeds"] == {"layout": [0]} and state["seed_phase_seeds"] == [1, 2]
    status = study_status("layout", tmp_path)
    assert status["search_seeds"] == {"layout": [0]} and status["seed_phase_seeds"] == [1, 2]
    assert status["phases"] == {"search": {"completed": 3}, "seeds": {"completed": 4}}
    assert status["optuna"]["complete"] == 3
    assert status["best"]["overrides"] == result.best[0]["overrides"]
    # Ray's results carry what the driver reads (tests/tuning/test_reported.py); MLflow has every metric
    ray_results = [
        json.loads(line)
        for path in (tmp_path / RAY_DIR).glob("layout-*/*/result.json")
        for line in path.read_text().splitlines()
    ]
    assert len(ray_results) == 2 * (3 + 4)  # 2 epochs of every trial of both phases
    # Ray's CSV and TensorBoard loggers are off (nothing reads them; the latter imported torch)
    trial_files = {p.name for p in (tmp_path / RAY_DIR).glob("layout-*/*/*")}
    assert "result.json" in trial_files and "progress.csv" not in trial_files
    assert not any(name.startswith("events.out.tfevents") for name in trial_files)
    for ray_result in ray_results:
        assert {"epoch", "val_acc", RESULT_RUN_ID} <= set(ray_result) and "train_loss" not in ray_result
    for run in runs["search"] + runs["seeds"]:
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
    # Ray holds each trial's checkpoint of epoch 1; the last epoch's report carried none (own copy only)
    trial_folders = {p.parent for p in (tmp_path / RAY_DIR).glob("layout-*/*/result.json")}
    assert len(trial_folders) == 3 + 4
    for folder in trial_folders:
        assert sorted(p.name for p in folder.glob("checkpoint_*")) == ["checkpoint_000000"], folder


@pytest.mark.slow
def test_diverging_and_raising_trials_do_not_stop_the_study(ray_session: Any, tmp_path: Path) -> None:
    spec = make_spec(
        name="faults",
        space={
            "train.lr": {"type": "categorical", "values": [0.05, 1.0e30]},
            "data.name": ["synthetic", "imagefolder"],
        },
        search={
            "num_samples": 3,
            "max_concurrent": 1,
            "algorithm": "random",
            "points": [
                {"train.lr": 0.05, "data.name": "synthetic"},
                {"train.lr": 1.0e30, "data.name": "synthetic"},
                {"train.lr": 0.05, "data.name": "imagefolder"},
            ],
        },
        failures={"retries": 1},
        base={**BASE, "data": {**BASE["data"], "root": str(tmp_path / "no-such-folder")}},
    )
    result = run_study(spec, workdir=tmp_path)
    statuses = sorted(r.data.tags[STATUS_TAG] for r in runs_by_role(result.tracking_uri, "faults")["search"])
    assert statuses == ["completed", "diverged", "failed"]
    study = optuna.load_study(study_name="faults", storage=result.optuna_storage)
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL", "FAIL"]
    assert result.best[0]["overrides"] == {"train.lr": 0.05, "data.name": "synthetic"}


@pytest.mark.slow
def test_asha_stops_bad_trials_and_they_are_pruned(ray_session: Any, tmp_path: Path) -> None:
    good, bad = {"train.lr": 0.05}, {"train.lr": 1.0e-7}
    spec = make_spec(
        name="asha",
        base={**BASE, "train": {**BASE["train"], "epochs": 3}},
        space={"train.lr": {"type": "categorical", "values": [0.05, 1.0e-7]}},
        search={
            "num_samples": 4,
            "max_concurrent": 1,
            "algorithm": "random",
            "points": [good, good, bad, bad],
        },
        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2},
    )
    result = run_study(spec, workdir=tmp_path)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=result.tracking_uri)
    runs = runs_by_role(result.tracking_uri, "asha")["search"]
    by_lr = sorted((float(r.data.params["train.lr"]), r.data.tags[STATUS_TAG]) for r in runs)
    assert by_lr[:2] == [(1e-7, "early_stopped"), (1e-7, "early_stopped")]
    for run in runs:  # the run table shows which trials ASHA stopped, and where, in their names
        epochs = run.data.tags[EPOCHS_DONE_TAG]
        stopped = run.data.tags[STATUS_TAG] == "early_stopped"
        log = _artifact_text(client, run.info.run_id, RUN_LOG_ARTIFACT, tmp_path)
        ended = log.strip().splitlines()[-1]  # the driver ends the log of a trial Ray stopped
        assert ("ASHA stopped it after epoch" in ended) == stopped and "finished: " in ended, log
        head = f"trial-{int(run.data.tags[OPTUNA_TRIAL_TAG]):03d} "
        assert run.info.run_name.startswith(head + f"[stopped {epochs}/3] ") == stopped, run.info.run_name
        assert run.info.run_name.startswith(head)
    study = optuna.load_study(study_name="asha", storage=result.optuna_storage)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert len(pruned) == 2
    assert all(t.params["train.lr"] == 1e-7 and t.intermediate_values for t in pruned)


@pytest.mark.slow
def test_unreachable_tracking_server_stops_before_any_trial(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unreachable"):
        run_study(
            make_spec(name="offline"), workdir=tmp_path, tracking_uri=f"http://127.0.0.1:{_free_port()}"
        )
    assert not (tmp_path / "ray").exists()


def test_existing_study_is_not_overwritten(tmp_path: Path) -> None:
    state = tmp_path / "t" / STATE_FILE
    state.parent.mkdir(parents=True)
    state.write_text(yaml.safe_dump({"name": "t"}))
    with pytest.raises(Exception, match="study resume t"):
        run_study(make_spec(), workdir=tmp_path)


def state_paths(workdir: Path) -> dict[str, str]:
    """The places every study state records (read_state refuses a state without them)."""
    return {
        "workdir": str(workdir),
        "storage": str(workdir / "ray"),
        "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}",
        "optuna_storage": f"sqlite:///{workdir / 'optuna.db'}",
    }


def test_from_study_arm_takes_the_whole_winning_config(tmp_path: Path) -> None:
    import json

    from rblock_tune.tuning import build_arms

    baseline_raw = {
        "name": "base-dropblock",
        "base": {**BASE, "reg": {"variant": "dropblock", "block_size": 5}},
        "space": {"reg.drop_prob": {"type": "uniform", "low": 0.05, "high": 0.5}},
    }
    state = {
        "format": 2,
        "spec": baseline_raw,
        "best": [{"overrides": {"reg.drop_prob": 0.3}, "val_acc": 0.5}],
        **state_paths(tmp_path),
    }
    (tmp_path / "base-dropblock").mkdir()
    (tmp_path / "base-dropblock" / STATE_FILE).write_text(json.dumps(state))
    spec = make_spec(seeds={
        "top_k": 1, "n_seeds": 2,
        "arms": [{"label": "dropblock", "from_study": "base-dropblock"},
                 {"label": "none", "set": {"reg.variant": "none"}}],
    })  # fmt: skip
    arms = build_arms(spec, tmp_path, [{"overrides": {"reg.variant": "bdrop_dml", "reg.alpha": 2.0}}])
    assert arms == {
        "top1": {"reg.variant": "bdrop_dml", "reg.alpha": 2.0},
        "dropblock": {"reg.variant": "dropblock", "reg.block_size": 5, "reg.drop_prob": 0.3},
        "none": {"reg.variant": "none"},
    }
    missing = make_spec(seeds={"top_k": 0, "arms": [{"label": "x", "from_study": "nope"}]})
    with pytest.raises(ConfigError, match="run that study first"):
        build_arms(missing, tmp_path, [])


def test_seed_plan_avoids_every_search_seed_and_is_made_before_any_trial(tmp_path: Path) -> None:
    """The seed phase's seeds avoid the seeds of this study's search and of every from_study study
    (their searches selected arms too); a missing from_study study stops the study before anything
    is written."""
    import json

    from rblock_tune.tuning import plan_seeds

    other = {"name": "base-db", "base": {**BASE, "seed": 4, "reg": {"variant": "dropblock"}},
             "space": {"reg.drop_prob": {"type": "uniform", "low": 0.05, "high": 0.4}}}  # fmt: skip
    (tmp_path / "base-db").mkdir()
    state = {
        "format": 2,
        "spec": other,
        "best": [{"overrides": {"reg.drop_prob": 0.2}, "val_acc": 0.5}],
        **state_paths(tmp_path),
    }
    (tmp_path / "base-db" / STATE_FILE).write_text(json.dumps(state))
    arms = [{"label": "dropblock", "from_study": "base-db"}]
    spec = make_spec(seeds={"top_k": 1, "n_seeds": 3, "arms": arms})
    assert plan_seeds(spec, tmp_path) == {"search_seeds": {"t": [0], "base-db": [4]}, "seeds": [5, 6, 7]}
    explicit = make_spec(seeds={"top_k": 1, "seeds": [1, 4], "arms": arms})
    with pytest.raises(ConfigError, match=r"reuses seed\(s\) \[4\] of study 'base-db'"):
        plan_seeds(explicit, tmp_path)
    allowed = make_spec(seeds={"top_k": 1, "seeds": [1, 4], "arms": arms, "allow_search_seeds": True})
    assert plan_seeds(allowed, tmp_path)["seeds"] == [1, 4]
    work = tmp_path / "fresh"
    missing = make_spec(seeds={"top_k": 1, "arms": [{"label": "x", "from_study": "nope"}]})
    with pytest.raises(ConfigError, match="from_study 'nope' has no state"):
        run_study(missing, workdir=work)
    assert not work.exists()  # nothing written, no trial run
    # a study state of an older rblock-tune (format 1: other seeds, R-Block p of the shared mask)
    del state["format"]
    (tmp_path / "base-db" / STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="written by an older rblock-tune") as info:
        plan_seeds(spec, tmp_path)
    assert "\n" not in str(info.value) and "run that study again" in str(info.value)
    (tmp_path / "old").mkdir()
    old = {"spec": {"name": "old"}, "best": [], **state_paths(tmp_path)}
    (tmp_path / "old" / STATE_FILE).write_text(json.dumps(old))
    with pytest.raises(CheckpointError, match="cannot resume study 'old'"):
        run_study(make_spec(name="old"), workdir=tmp_path, resume=True)


def test_stopping_result_is_kept_as_an_intermediate_value(tmp_path: Path) -> None:
    """Ray hands the result on which ASHA stops a trial only to on_trial_complete."""
    searcher = searcher_for(make_spec(), tmp_path, budget=4)
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"epoch": 1, "val_acc": 0.2, "diverged": 0})
    (trial,) = searcher.study.trials
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {1: 0.2}
