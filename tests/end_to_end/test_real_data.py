"""Real-data smoke test on the shared CIFAR-10 copy (an image folder).

Runs when ``RBLOCK_CIFAR10_DIR`` points at it (CI sets it); skipped otherwise, unless
``RBLOCK_REQUIRE_REAL_DATA=1``, which turns a missing copy into a failure.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from browser import check_report_page, find_chromium

from rblock_tune.config import load_config
from rblock_tune.data import load_dataset
from rblock_tune.layout import ARM_TAG, PHASE_TAG, ROLE_TAG, ROLE_TRIAL, SEED_TAG, STATUS_TAG
from rblock_tune.trainer import run_training

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_cifar10_image_folder_loads_with_the_standard_split(cifar_dir: Path) -> None:
    data = load_dataset(load_config(None, [f"data.root={cifar_dir}", "data.download=false"]).data)
    assert data.train_x.shape == (45000, 3, 32, 32)
    assert data.val_x.shape == (5000, 3, 32, 32)
    assert data.test_x.shape == (10000, 3, 32, 32)
    assert data.class_names[0] == "airplane" and len(data.class_names) == 10
    # the dataset README: per-channel means 0.4913, 0.4821, 0.4465 on the full training set
    for got, want in zip(data.mean, (0.4913, 0.4821, 0.4465), strict=True):
        assert got == pytest.approx(want, abs=0.005)


def test_probe_batch_covers_every_class_of_the_class_ordered_copy(cifar_dir: Path) -> None:
    """The shared copy is read class by class, so the validation split's first 256 images are all
    airplanes; the consistency metrics' probe batch is a stratified sample of it instead."""
    import torch

    from rblock_tune.data import probe_rows

    data = load_dataset(load_config(None, [f"data.root={cifar_dir}", "data.download=false"]).data)
    assert data.val_y[:256].unique().tolist() == [0]
    rows = probe_rows(data.val_y, data.num_classes, 256, split_seed=0)
    counts = torch.bincount(data.val_y[rows], minlength=10).tolist()
    assert sorted(set(counts)) == [25, 26] and sum(counts) == 256
    # and the trainer measures on exactly those images
    from rblock_tune.trainer import Trainer

    cfg = load_config(None, [f"data.root={cifar_dir}", "data.download=false", "model.name=resnet8",
                             "train.device=cpu"])  # fmt: skip
    trainer = Trainer(cfg, dataset=data)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    expected = (data.val_x[rows].float() / 255.0 - mean) / std
    assert trainer._consistency_batch is not None and torch.equal(trainer._consistency_batch, expected)


def test_resnet8_learns_a_cifar10_subset_in_one_epoch(cifar_dir: Path, tmp_path: Path) -> None:
    cfg = load_config(
        None,
        [
            f"data.root={cifar_dir}",
            "data.download=false",
            "data.subset=10000",
            "model.name=resnet8",
            "reg.variant=bdrop_dml",
            "reg.drop_prob=0.1",
            "train.epochs=1",
            "train.lr=0.05",
            "train.warmup_epochs=0.2",
            "train.device=cpu",
            "seed=0",
        ],
    )
    result = run_training(cfg, tmp_path / "run")
    assert result["status"] == "completed"
    # chance is 0.10; this run reached val_acc 0.32 and test_acc 0.32 when written (seed 0, CPU)
    assert result["val_acc"] > 0.25
    assert result["test_acc"] > 0.25


def test_quickstart_study_runs_end_to_end(cifar_dir: Path, tmp_path: Path) -> None:
    """The shipped quickstart study, as a user runs it: search, seed phase, MLflow, status, report."""
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    spec = Path(__file__).resolve().parents[2] / "search_spaces" / "quickstart.yaml"
    work = tmp_path / "work"
    cmd = [sys.executable, "-m", "rblock_tune.cli", "-q", "study"]
    done = subprocess.run(
        [*cmd, "run", str(spec), "--set", f"base.data.root={cifar_dir}", "--workdir", str(work)],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "study quickstart finished" in done.stdout and "mlflow ui --backend-store-uri" in done.stdout
    assert "Downloading artifacts" not in done.stdout + done.stderr  # no MLflow progress bars
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("quickstart")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    phases: dict[str, list[Any]] = {}
    for run in runs:
        if run.data.tags[ROLE_TAG] == ROLE_TRIAL:
            phases.setdefault(run.data.tags[PHASE_TAG], []).append(run)
    assert len(phases["search"]) == 8
    assert {r.data.tags[STATUS_TAG] for r in phases["search"]} <= {"completed", "early_stopped"}
    seed_runs = phases["seeds"]
    # a race: 3 arms, 3 to 5 seeds each (seed-major, the baseline on every seed any arm ran)
    assert {r.data.tags[STATUS_TAG] for r in seed_runs} == {"completed"} and 9 <= len(seed_runs) <= 15
    pairs = [(r.data.tags[ARM_TAG], int(r.data.tags[SEED_TAG])) for r in seed_runs]
    assert len(set(pairs)) == len(pairs)
    by_arm = {arm: sorted(s for a, s in pairs if a == arm) for arm in ("top1", "dropblock", "none")}
    assert by_arm["dropblock"] == list(range(1, len(by_arm["dropblock"]) + 1))
    assert all(seeds == by_arm["dropblock"][: len(seeds)] and len(seeds) >= 3 for seeds in by_arm.values())
    # the seed phase runs seeds after the search's seed 0, and every run records what its masks dropped
    assert {r.data.tags[SEED_TAG] for r in phases["search"]} == {"0"}
    for run in seed_runs:
        metrics = run.data.metrics
        if run.data.tags[ARM_TAG] == "none":
            assert metrics["drop_rate"] == 0.0
        elif run.data.tags[ARM_TAG] == "dropblock":
            assert 0.0 < metrics["drop_rate"] < 0.1
        else:
            assert 0.0 < metrics["drop_rate_a"] < 0.5 and 0.0 < metrics["drop_rate_b"] < 0.5
        assert metrics["consistency_kl_probe"] > 0.0
    status = subprocess.run(
        [*cmd, "status", "quickstart", "--workdir", str(work)], capture_output=True, text=True
    )
    assert (
        status.returncode == 0
        and "search trials:" in status.stdout
        and f"seed runs: completed {len(seed_runs)}" in status.stdout
    )
    assert "seeds: search trials quickstart [0]; seed phase [1, 2, 3, 4, 5]" in status.stdout
    assert "race against dropblock on test_acc" in status.stdout and "race against dropblock" in done.stdout
    assert (
        f"runs {len(seed_runs)} done" in status.stdout
        and "of the 15 a fixed design would run" in status.stdout
    )
    # the study ends with its report: R-Block's winner and no regularization against DropBlock on test_acc
    report = work / "quickstart" / "report"
    assert done.stdout.strip().splitlines()[-1].startswith(f"report: {report / 'report.html'}"), done.stdout
    import pandas as pd

    table = pd.read_csv(report / "comparisons.csv")
    assert sorted(table["arm"]) == ["none", "top1"] and set(table["baseline"]) == {"dropblock"}
    # the raced arms: the race's intervals and decisions, no fixed-n test
    assert table["paired"].all() and table["n_pairs"].between(3, 5).all() and table["p_holm"].isna().all()
    assert (table["primary_test"] == "race").all() and table["interval"].str.startswith("race").all()
    assert set(table["decision"]) <= {"better", "worse", "undecided"}
    assert (table["ci_low"] <= table["mean_diff"]).all() and (table["mean_diff"] <= table["ci_high"]).all()
    assert (report / "figures" / "race.png").is_file()
    markdown = (report / "report.md").read_text()
    assert "- race: the seed phase was a race" in markdown and "figures/race.png" in markdown
    assert "## Caveats" in markdown and "disjoint from every search seed" in markdown
    assert "realised drop rate per sub-model" in markdown and "reuses search seed" not in markdown
    # and report.html in a real browser: every figure decodes, nothing from outside, no console errors
    # (left out without Chromium, unless RBLOCK_REQUIRE_BROWSER=1)
    if find_chromium() or os.environ.get("RBLOCK_REQUIRE_BROWSER") == "1":
        assert check_report_page(report / "report.html") == []
