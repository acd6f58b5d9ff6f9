"""The best configurations of a finished search as files ``rblock-tune train --config`` takes:
``<workdir>/<study>/best.yaml`` (the seed phase's arm ``top1``), ``top2.yaml``..."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from rblock_tune.cli import main
from rblock_tune.config import config_to_dict, load_config, with_overrides
from rblock_tune.layout import (
    BEST_CONFIG_FILE,
    METRICS_FILE,
    RAY_TRIAL_ATTR,
    STATE_FILE,
    TRIAL_TAG,
    best_config_file,
)
from rblock_tune.tuning import spec_from_dict
from rblock_tune.tuning._best import write_best_configs

KEYS = ("reg.variant", "reg.alpha", "reg.drop_prob", "reg.block_size", "seed", "model.name", "data.name")


@pytest.mark.slow
def test_train_takes_the_best_config_of_a_finished_search(
    tiny_study: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best_file = tiny_study.workdir / tiny_study.name / BEST_CONFIG_FILE
    assert f"best config: {best_file} (rblock-tune train --config {best_file})" in tiny_study.stdout
    assert not (tiny_study.workdir / tiny_study.name / best_config_file(2)).exists()  # top_k = 1

    # the best trial, found independently: Optuna's best trial -> its Ray trial -> its MLflow run
    study = optuna.load_study(
        study_name=tiny_study.name, storage=f"sqlite:///{tiny_study.workdir / 'optuna.db'}"
    )
    ray_id = study.best_trial.user_attrs[RAY_TRIAL_ATTR]
    client = MlflowClient(tracking_uri=tiny_study.tracking_uri)
    experiment = client.get_experiment_by_name(tiny_study.name)
    assert experiment is not None
    (trial_run,) = client.search_runs([experiment.experiment_id], f"tags.`{TRIAL_TAG}` = '{ray_id}'")
    recorded = trial_run.data.params

    header = [line for line in best_file.read_text().splitlines() if line.startswith("#")]
    assert f"Optuna trial {study.best_trial.number}" in header[0] and ray_id in header[0]
    assert f"val_acc = {study.best_value:.6g}" in header[1]

    out = tmp_path / "again"
    code = main(["-q", "train", "--config", str(best_file), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    saved = json.loads((out / METRICS_FILE).read_text())["config"]
    flat = {
        "seed": saved["seed"],
        **{f"{s}.{k}": v for s, sub in saved.items() if s != "seed" for k, v in sub.items()},
    }
    for key in KEYS:
        assert str(flat[key]) == recorded[key], key  # MLflow params are strings
    # and the whole config is the study's base with the best overrides, in the trainer's normalised form
    state = json.loads((tiny_study.workdir / tiny_study.name / STATE_FILE).read_text())
    spec = spec_from_dict(state["spec"])
    assert saved == config_to_dict(with_overrides(spec.base, state["best"][0]["overrides"]))


def test_each_top_k_config_is_written_beside_the_best(tmp_path: Path) -> None:
    spec = spec_from_dict(
        {
            "name": "s",
            "base": {"data": {"name": "synthetic"}, "model": {"name": "resnet8"}, "seed": 3},
            "space": {"reg.alpha": {"type": "loguniform", "low": 0.1, "high": 10}},
        }
    )
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / best_config_file(3)).write_text("stale: true\n")  # from an earlier search with a larger top_k
    best = [
        {"overrides": {"reg.alpha": 2.5, "reg.variant": "sdrop_dml"}, "val_acc": 0.5},
        {"overrides": {"reg.alpha": 0.3}, "val_acc": 0.25},
    ]
    written = write_best_configs(spec, folder, best)
    assert [p.name for p in written] == [BEST_CONFIG_FILE, "top2.yaml"]
    assert not (folder / best_config_file(3)).exists()
    for path, entry in zip(written, best, strict=True):
        config = load_config(path)  # what rblock-tune train --config reads
        assert config == with_overrides(spec.base, entry["overrides"]) and config.seed == 3
        text = path.read_text()
        assert (
            text.startswith("# study 's': search configuration")
            and f"val_acc = {entry['val_acc']:.6g}" in text
        )
        assert yaml.safe_load(text) == config_to_dict(config)
