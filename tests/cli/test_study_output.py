"""What ``rblock-tune study`` prints: a few lines per trial, Ray's output in study.log, no traceback
for a study that succeeded, the interruption hint, and ``study status``'s running/finished/interrupted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from rblock_tune.cli import main
from rblock_tune.layout import STATE_FILE, STUDY_LOG
from rblock_tune.tuning._driver import process_started, this_driver

pytestmark = pytest.mark.slow

THREE_TRIALS = {
    "name": "three",
    "base": {
        "data": {"name": "synthetic", "synthetic_size": 128, "val_size": 32},
        "model": {"name": "resnet8"},
        "reg": {"variant": "bdrop_dml", "alpha": 1.0, "drop_prob": 0.1, "block_size": 3},
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "device": "cpu", "eval_batch_size": 128},
    },
    "space": {
        "reg.variant": ["bdrop_dml", "sdrop_dml"],
        "reg.alpha": {"type": "loguniform", "low": 0.1, "high": 10},
    },
    "search": {"algorithm": "tpe", "num_samples": 3, "max_concurrent": 2, "seed": 0},
    "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
    "resources": {"cpus": 1},
}


@dataclass(frozen=True)
class Finished:
    workdir: Path
    code: int
    stdout: str
    stderr: str


def _env(ray_tmp: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR")}
    env["RAY_TMPDIR"] = ray_tmp  # a short private temp dir: Ray's socket paths must fit in 107 bytes
    return env


@pytest.fixture(scope="module")
def three_trials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    """A 3-trial study run through the command line, in its own process, as a user runs it (no -q)."""
    folder = tmp_path_factory.mktemp("three")
    spec = folder / "three.yaml"
    spec.write_text(yaml.safe_dump(THREE_TRIALS, sort_keys=False))
    workdir = folder / "work"
    ray_tmp = tempfile.mkdtemp(prefix="rbt-", dir="/tmp")
    command = [sys.executable, "-m", "rblock_tune.cli", "study", "run", str(spec), "--workdir", str(workdir)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=600, env=_env(ray_tmp), check=False
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    yield Finished(workdir, done.returncode, done.stdout, done.stderr)


def test_a_three_trial_study_prints_a_few_lines_and_no_traceback(three_trials: Finished) -> None:
    assert three_trials.code == 0, three_trials.stdout[-3000:] + three_trials.stderr[-3000:]
    printed = three_trials.stdout + three_trials.stderr
    lines = printed.splitlines()
    assert len(lines) < 30, printed  # 3 starts, 3 ends, a summary, the final block
    assert "Traceback" not in printed and "SystemExit" not in printed, printed
    assert "╭" not in printed and "TensorBoard" not in printed and "snapshotting" not in printed  # Ray's
    errors = three_trials.stderr
    assert sum(line.startswith("search trial ") and " started: " in line for line in errors.splitlines()) == 3
    ended = [
        line for line in errors.splitlines() if " completed: val_acc " in line or " pruned at epoch " in line
    ]
    assert len(ended) == 3, errors
    assert any(line.startswith("search: 3 of 3 trials in ") for line in errors.splitlines()), errors
    assert "study three finished" in three_trials.stdout
    log = (three_trials.workdir / "three" / STUDY_LOG).read_text()
    assert "Started a local Ray instance" in log and "Checkpoint successfully created" in log  # Ray, workers


def test_status_of_a_finished_study(three_trials: Finished, capsys: pytest.CaptureFixture[str]) -> None:
    assert three_trials.code == 0
    state = json.loads((three_trials.workdir / "three" / STATE_FILE).read_text())
    assert state["driver"] is None  # the driver cleared its record as it returned
    assert main(["study", "status", "three", "--workdir", str(three_trials.workdir)]) == 0
    out = capsys.readouterr().out
    assert "\nstate: finished\n" in out, out


def _copy_of_state(three_trials: Finished, tmp_path: Path, **changes: object) -> Path:
    """The finished study's state in another folder, changed: ``study status DIR`` reads it."""
    state = json.loads((three_trials.workdir / "three" / STATE_FILE).read_text())
    state.update(changes)
    folder = tmp_path / "three"
    folder.mkdir()
    (folder / STATE_FILE).write_text(json.dumps(state))
    return folder


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # reaped: no process has it now (pids are not reused this soon)


def test_a_dead_drivers_study_is_interrupted_not_running(
    three_trials: Finished, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "1"}
    folder = _copy_of_state(three_trials, tmp_path, search_done=False, driver=dead)
    assert main(["study", "status", str(folder)]) == 0
    out = capsys.readouterr().out
    expected = (
        f"state: interrupted: continue with rblock-tune study resume three --workdir {three_trials.workdir}"
    )
    assert expected in out, out
    # a live process whose start time is not the recorded one is another process given the pid
    other = {**this_driver(), "started": "1"}
    (folder / STATE_FILE).write_text(
        json.dumps({**json.loads((folder / STATE_FILE).read_text()), "driver": other})
    )
    assert main(["study", "status", str(folder)]) == 0
    assert "state: interrupted" in capsys.readouterr().out


def test_a_live_drivers_study_is_running_and_not_resumed_twice(
    three_trials: Finished, capsys: pytest.CaptureFixture[str]
) -> None:
    """The study's own state names a live process on this host as its driver (put back afterwards)."""
    state_file = three_trials.workdir / "three" / STATE_FILE
    saved = state_file.read_text()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        driver = {"pid": other.pid, "host": socket.gethostname(), "started": process_started(other.pid)}
        state_file.write_text(json.dumps({**json.loads(saved), "search_done": False, "driver": driver}))
        workdir = str(three_trials.workdir)
        assert main(["study", "status", "three", "--workdir", workdir]) == 0
        assert f"state: running (driver pid {other.pid} on {driver['host']})\n" in capsys.readouterr().out
        assert main(["study", "resume", "three", "--workdir", workdir]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"rblock-tune: error: study 'three' is running (driver pid {other.pid} ")
        assert err.count("\n") == 1
    finally:
        other.kill()
        other.wait()
        state_file.write_text(saved)


def test_ctrl_c_names_the_study_and_leaves_it_interrupted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C (SIGINT) as the study starts: the hint names the study (here --name's), and its state
    says interrupted, with the driver gone."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(THREE_TRIALS, sort_keys=False))
    workdir = tmp_path / "work"
    ray_tmp = tempfile.mkdtemp(prefix="rbt-", dir="/tmp")
    command = [sys.executable, "-m", "rblock_tune.cli", "study", "run", str(spec), "--name", "ctrl-c"]
    try:
        process = subprocess.Popen(
            [*command, "--workdir", str(workdir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(ray_tmp),
        )
        state = workdir / "ctrl-c" / STATE_FILE
        deadline = time.monotonic() + 300
        while not state.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state.exists(), process.communicate(timeout=60)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert process.returncode == 130, out + err
    assert f"rblock-tune study resume ctrl-c --workdir {workdir}" in err, err
    assert "NAME" not in err and "Traceback" not in err, err
    assert main(["study", "status", "ctrl-c", "--workdir", str(workdir)]) == 0
    assert f"state: interrupted: continue with rblock-tune study resume ctrl-c --workdir {workdir}" in (
        capsys.readouterr().out
    )
