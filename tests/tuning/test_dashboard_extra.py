"""The ``dashboard`` extra: the ``optuna-dashboard`` command that ``rblock-tune study run`` prints serves
the study (its metric name, the trials' intermediate values, states and user attributes) over HTTP."""

from __future__ import annotations

import contextlib
import io
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
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from rblock_tune.cli import _finish_study
from rblock_tune.layout import EARLY_STOPPED, OPTUNA_STATUS_ATTR, RAY_TRIAL_ATTR
from rblock_tune.tuning import resolve_paths

DASHBOARD = Path(sys.executable).parent / "optuna-dashboard"
pytestmark = pytest.mark.skipif(
    not DASHBOARD.is_file(),
    reason=f"optuna-dashboard is not installed ({DASHBOARD} missing): pip install -e '.[dashboard]'",
)

START_TIMEOUT_S = 60.0
STUDY = "dash"
CURVES = {0: [0.50, 0.61, 0.66], 1: [0.42], 2: [0.55, 0.70, 0.74]}  # trial number -> val_acc by epoch


def _printed_command(tmp_path: Path, optuna_storage: str) -> list[str]:
    """The ``optuna-dashboard ...`` command of the ``optuna:`` line that the end of a study prints."""
    state_file = tmp_path / STUDY / "study.json"
    result = SimpleNamespace(
        finished=True,
        name=STUDY,
        best=[],
        spec=SimpleNamespace(report=None, space={}),
        state_file=state_file,
        storage=str(tmp_path / "ray"),
        optuna_storage=optuna_storage,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert _finish_study(result) == 0
    lines = [line for line in out.getvalue().splitlines() if line.startswith("optuna: ")]
    assert len(lines) == 1, out.getvalue()
    match = re.search(r"\((optuna-dashboard .+)\)$", lines[0])
    assert match, lines[0]
    return shlex.split(match.group(1))


def _make_study(storage: str) -> int:
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
    study.set_metric_names(["val_acc"])
    for number, curve in CURVES.items():
        trial = study.ask()
        trial.suggest_float("reg.alpha", 0.1, 10.0, log=True)
        trial.suggest_categorical("reg.variant", ["bdrop_dml", "sdrop_dml"])
        trial.set_user_attr(RAY_TRIAL_ATTR, f"trainable_{number:05d}")
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, epoch)
        if len(curve) < 3:
            trial.set_user_attr(OPTUNA_STATUS_ATTR, EARLY_STOPPED)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, curve[-1])
    return study._study_id


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


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_printed_command_serves_the_study(tmp_path: Path) -> None:
    storage = resolve_paths(tmp_path, address=None, storage=None, tracking_uri=None).optuna_storage
    assert storage == f"sqlite:///{tmp_path.resolve() / 'optuna.db'}"
    study_id = _make_study(storage)
    command = _printed_command(tmp_path, storage)
    assert command == ["optuna-dashboard", storage]

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
        assert set(summaries) == {STUDY}
        assert summaries[STUDY]["study_id"] == study_id
        assert summaries[STUDY]["directions"] == ["maximize"]

        detail = _get(f"{base}/api/studies/{study_id}")
        assert detail["name"] == STUDY
        assert detail["objective_names"] == ["val_acc"]
        assert detail["has_intermediate_values"] is True
        trials = {t["number"]: t for t in detail["trials"]}
        assert set(trials) == set(CURVES)
        for number, curve in CURVES.items():
            trial = trials[number]
            assert trial["intermediate_values"] == [
                {"step": epoch, "value": value} for epoch, value in enumerate(curve, start=1)
            ]
            attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
            assert attrs[RAY_TRIAL_ATTR] == f"trainable_{number:05d}"
            assert {p["name"] for p in trial["params"]} == {"reg.alpha", "reg.variant"}
        assert trials[0]["state"] == "Complete"
        assert trials[0]["values"] == [CURVES[0][-1]]
        assert trials[1]["state"] == "Pruned"
        assert {a["key"]: a["value"] for a in trials[1]["user_attrs"]}[OPTUNA_STATUS_ATTR] == EARLY_STOPPED
        assert [t["number"] for t in detail["best_trials"]] == [2]
        assert {a["key"] for a in detail["union_user_attrs"]} == {RAY_TRIAL_ATTR, OPTUNA_STATUS_ATTR}
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
