"""The ``dashboard`` extra: the ``optuna-dashboard`` command that ``rblock-tune study run`` printed
serves the session's real tiny study over HTTP: its metric name, the trials' learning curves (last
epoch included), states, and the user attributes linking the study and each trial to MLflow."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from rblock_tune.layout import (
    EARLY_STOPPED,
    MLFLOW_RUN_ATTR,
    OPTUNA_STATUS_ATTR,
    OPTUNA_STUDY_ATTRS,
    OPTUNA_TRIAL_TAG,
    RAY_TRIAL_ATTR,
)

DASHBOARD = Path(sys.executable).parent / "optuna-dashboard"
pytestmark = pytest.mark.skipif(
    not DASHBOARD.is_file(),
    reason=f"optuna-dashboard is not installed ({DASHBOARD} missing): pip install -e '.[dashboard]'",
)

START_TIMEOUT_S = 60.0


def _printed_command(stdout: str) -> list[str]:
    """The ``optuna-dashboard ...`` command of the ``optuna:`` line that the end of a study printed."""
    lines = [line for line in stdout.splitlines() if line.startswith("optuna: ")]
    assert len(lines) == 1, stdout
    match = re.search(r"\((optuna-dashboard .+), then (http://\S+)\)$", lines[0])
    assert match, lines[0]
    return shlex.split(match.group(1))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200, url
        return json.loads(response.read())


def _wait_for(url: str, proc: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"optuna-dashboard exited with {proc.returncode}:\n{log.read_text()}")
        try:
            return _get(url)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"optuna-dashboard did not answer {url} in {START_TIMEOUT_S:.0f} s ({exc}):\n"
                    f"{log.read_text()}"
                )
            time.sleep(0.25)


def test_port_and_host_options_exist() -> None:
    help_text = subprocess.run(
        [str(DASHBOARD), "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "--port" in help_text
    assert "--host" in help_text


@pytest.mark.slow  # the session's tiny study (Ray)
def test_printed_command_serves_the_study(tiny_study: Any, tmp_path: Path) -> None:
    command = _printed_command(tiny_study.stdout)
    assert command == ["optuna-dashboard", f"sqlite:///{tiny_study.workdir.resolve() / 'optuna.db'}"]
    port = _free_port()
    log = tmp_path / "dashboard.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(DASHBOARD), *command[1:], "--port", str(port), "--host", "127.0.0.1"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        listed = _wait_for(f"{base}/api/studies", proc, log)
        summaries = {s["study_name"]: s for s in listed["study_summaries"]}
        assert set(summaries) == {tiny_study.name}
        summary = summaries[tiny_study.name]
        assert summary["directions"] == ["maximize"]
        study_attrs = {a["key"]: a["value"] for a in summary["user_attrs"]}
        assert set(OPTUNA_STUDY_ATTRS) <= set(study_attrs)  # where the MLflow side and the workdir are
        assert study_attrs["mlflow_experiment"] == tiny_study.name
        assert study_attrs["workdir"] == str(tiny_study.workdir.resolve())

        detail = _get(f"{base}/api/studies/{summary['study_id']}")
        assert detail["objective_names"] == ["val_acc"]  # not "Objective 0"
        assert detail["has_intermediate_values"] is True
        client = MlflowClient(tracking_uri=tiny_study.tracking_uri)
        experiment = client.get_experiment_by_name(tiny_study.name)
        assert experiment is not None and study_attrs["mlflow_experiment_id"] == experiment.experiment_id
        states = set()
        for trial in detail["trials"]:
            states.add(trial["state"])
            attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
            assert attrs[RAY_TRIAL_ATTR]
            run = client.get_run(attrs[MLFLOW_RUN_ATTR])  # each trial names its MLflow run, and back
            assert run.data.tags[OPTUNA_TRIAL_TAG] == str(trial["number"])
            steps = [v["step"] for v in trial["intermediate_values"]]
            history = client.get_metric_history(run.info.run_id, "val_acc")
            assert steps == sorted(m.step for m in history)  # every epoch, the last one too
            if trial["state"] == "Complete":
                assert steps == [1, 2] and trial["values"] == [trial["intermediate_values"][-1]["value"]]
            else:
                assert (
                    trial["state"] == "Pruned" and steps == [1] and attrs[OPTUNA_STATUS_ATTR] == EARLY_STOPPED
                )
        assert "Complete" in states
        # the page itself (the single-page app that reads the API above)
        with urllib.request.urlopen(f"{base}/dashboard", timeout=5) as page:
            assert page.status == 200
            assert b"<html" in page.read().lower()
    finally:
        proc.terminate()  # gunicorn (when installed, as with MLflow) stops its workers on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
