"""A racing seed phase on the shared CIFAR-10 copy: killed with SIGKILL in the middle of the race,
resumed, and ended with a decided arm, no seed run twice and no look forgotten.

Runs when ``RBLOCK_CIFAR10_DIR`` points at the copy (CI sets it); skipped otherwise, unless
``RBLOCK_REQUIRE_REAL_DATA=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from rblock_tune.layout import (
    ARM_TAG,
    DECISION_TAG_PREFIX,
    PHASE_SEEDS,
    PHASE_TAG,
    RACE_STATE_FILE,
    ROLE_PARENT,
    ROLE_TAG,
    ROLE_TRIAL,
    SEED_TAG,
    STATUS_TAG,
)

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def _marked(marker: str) -> list[int]:
    """Live processes other than this one whose command line or environment holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            data = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in data and state not in "ZX":
            found.append(int(entry.name))
    return found


def _kill_all(marker: str, pgid: int | None = None) -> None:
    """SIGKILL the driver's process group and every process of its private Ray, until none is left."""
    stop = time.monotonic() + 20
    while time.monotonic() < stop:
        if pgid is not None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        left = _marked(marker)
        if not left:
            return
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    pytest.fail(f"processes of the killed study survived: {_marked(marker)}")


def _spec(folder: Path, cifar_dir: Path) -> Path:
    raw = {
        "name": "race",
        "base": {
            "data": {"name": "imagefolder", "root": str(cifar_dir), "subset": 2000, "val_size": 500},
            "model": {"name": "resnet8"},
            "reg": {"variant": "none"},
            "train": {"epochs": 1, "batch_size": 128, "lr": 0.05, "warmup_epochs": 0, "device": "cpu"},
        },
        "seeds": {
            "top_k": 0,
            "arms": [
                {"label": "plain", "set": {}},
                {"label": "stalled", "set": {"train.lr": 0.00001}},  # hardly learns: clearly worse
                {"label": "dropout", "set": {"reg.variant": "dropout", "reg.drop_prob": 0.1}},
            ],
            "race": {"min_seeds": 3, "max_seeds": 5},
        },
        "search": {"max_concurrent": 2},
        "report": {"baseline": "plain"},
    }
    path = folder / "race.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_race_killed_midway_resumes_and_decides(cifar_dir: Path, tmp_path: Path) -> None:
    work, log = tmp_path / "work", tmp_path / "driver.log"
    record_file = work / "race" / RACE_STATE_FILE
    ray_tmp = tempfile.mkdtemp(prefix="rbr-", dir="/tmp")  # short: Ray's socket paths live under it
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR")}
    env["RAY_TMPDIR"] = ray_tmp  # a private Ray, found again by this marker when it is killed
    cli = [sys.executable, "-m", "rblock_tune.cli", "-q", "study"]
    try:
        with log.open("ab") as out:
            driver = subprocess.Popen(
                [*cli, "run", str(_spec(tmp_path, cifar_dir)), "--workdir", str(work)],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        before: dict[str, object] = {}
        try:
            stop = time.monotonic() + 600
            while time.monotonic() < stop:  # the kill point: a look made, runs out, the race not over
                if driver.poll() is not None:
                    pytest.fail(f"the study ended before the kill point:\n{log.read_text()[-3000:]}")
                with suppress(OSError, ValueError):
                    before = json.loads(record_file.read_text())
                    looks = before["looks"]
                    out_now = [
                        p
                        for p in before["assigned"].values()
                        if str(p[1]) not in before["results"].get(p[0], {})
                    ]
                    if len(looks) >= 2 and out_now and not before["over"]:
                        break
                time.sleep(0.1)
            else:
                pytest.fail(f"no kill point within 600 s:\n{log.read_text()[-3000:]}")
        finally:
            _kill_all(ray_tmp, driver.pid)
            driver.wait(timeout=10)
        with log.open("ab") as out:
            resumed = subprocess.run(
                [*cli, "resume", "race", "--workdir", str(work)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=900,
            )
        _kill_all(ray_tmp)  # the resumed driver's Ray, should any of it outlive the driver
        assert resumed.returncode == 0, log.read_text()[-3000:]
        status = subprocess.run(
            [*cli, "status", "race", "--workdir", str(work)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)

    after = json.loads(record_file.read_text())
    assert after["over"]
    # no look forgotten: the looks before the kill are the first looks after it, row for row
    assert after["looks"][: len(before["looks"])] == before["looks"]  # type: ignore[arg-type]
    for arm, seeds in before["results"].items():  # type: ignore[attr-defined]
        for seed, value in seeds.items():
            assert after["results"][arm][seed] == value
    latest = {row["arm"]: row for row in after["looks"][-1]}
    assert latest["stalled"]["decision"] == "worse", latest
    # no seed ran twice: one completed run per (arm, seed), every seed the race recorded
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("race")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    completed = [
        (r.data.tags[ARM_TAG], r.data.tags[SEED_TAG])
        for r in runs
        if r.data.tags[ROLE_TAG] == ROLE_TRIAL and r.data.tags[STATUS_TAG] == "completed"
    ]
    assert len(completed) == len(set(completed)), sorted(completed)
    recorded = {(arm, seed) for arm, seeds in after["results"].items() for seed in seeds}
    assert set(completed) == recorded
    stalled_seeds = [s for a, s in completed if a == "stalled"]
    assert len(stalled_seeds) < 5  # decided before max_seeds: it got no more seeds
    parent = next(
        r for r in runs if r.data.tags[ROLE_TAG] == ROLE_PARENT and r.data.tags[PHASE_TAG] == PHASE_SEEDS
    )
    assert parent.data.tags[DECISION_TAG_PREFIX + "stalled"] == "worse"
    assert status.returncode == 0 and "race against plain on test_acc" in status.stdout
    assert "stalled worse at" in status.stdout
    # the report the study wrote reads the race
    assert (work / "race" / "report" / "report.md").is_file()
