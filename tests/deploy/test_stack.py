"""The deployment stack as real processes (``docker/stack.sh up``): PostgreSQL from the distribution's
packages, the MLflow server on it, a Ray head and a Ray worker started with ``ray start``; then a
short ``rblock-tune study run --address ... --tracking-uri http://...`` with its Optuna storage on the
same PostgreSQL, read back from the server. The compose file runs the same script's commands
(``tests/deploy/test_docker.py`` checks that).

Skipped where PostgreSQL is not installed, unless ``RBLOCK_REQUIRE_STACK=1`` (CI sets it and
installs PostgreSQL).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
import yaml

from rblock_tune.layout import STATE_FILE

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "docker" / "stack.sh"
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.10"

pytestmark = pytest.mark.slow


def _postgres_installed() -> bool:
    return shutil.which("initdb") is not None or any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(stack_dir: str, ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RBLOCK_", "MLFLOW_", "PG"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this venv's ray, mlflow
    env.update({"STACK_DIR": stack_dir, **{k: str(v) for k, v in ports.items()}})
    return env


def _stack_env(stack_dir: str) -> dict[str, str]:
    lines = (Path(stack_dir) / "stack.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """``stack.sh up`` in a private STACK_DIR on free ports; ``stack.sh down --purge`` after."""
    if not _postgres_installed():
        if os.environ.get("RBLOCK_REQUIRE_STACK") == "1":
            pytest.fail("PostgreSQL is not installed but RBLOCK_REQUIRE_STACK=1: apt-get install postgresql")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    stack_dir = tempfile.mkdtemp(prefix="rbs-", dir="/tmp")  # short: Ray's socket paths live below it
    ports = {
        "STACK_PG_PORT": _free_port(),
        "MLFLOW_PORT": _free_port(),
        "RAY_PORT": _free_port(),
        "RAY_DASHBOARD_PORT": _free_port(),
    }
    env = _env(stack_dir, ports)
    try:
        up = subprocess.run([str(STACK), "up"], env=env, capture_output=True, text=True, timeout=400)
        assert up.returncode == 0, up.stderr[-3000:] + _logs(stack_dir)
        yield env, _stack_env(stack_dir)
    finally:
        down = subprocess.run(
            [str(STACK), "down", "--purge"], env=env, capture_output=True, text=True, timeout=120
        )
        assert down.returncode == 0, down.stderr[-2000:]
        assert _marked(stack_dir) == [], "stack.sh down left processes of the stack running"
        assert not Path(stack_dir).exists()
        shutil.rmtree(stack_dir, ignore_errors=True)


def _logs(stack_dir: str) -> str:
    logs = Path(stack_dir) / "logs"
    return "".join(
        f"\n--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(logs.glob("*.log"))
    )


def _spec(folder: Path, name: str, *, size: int, epochs: int, space: dict[str, Any]) -> Path:
    """A study spec of two concurrent resnet8 trials on synthetic data, one CPU each."""
    path = folder / f"{name}.yaml"
    raw = {
        "name": name,
        "base": {
            "data": {"name": "synthetic", "synthetic_size": size, "val_size": 64},
            "model": {"name": "resnet8"},
            "train": {"epochs": epochs, "batch_size": 64, "lr": 0.05, "device": "cpu"},
        },
        "space": space,
        "search": {"algorithm": "random", "num_samples": 2, "max_concurrent": 2, "seed": 0},
        "scheduler": {"type": "fifo"},
        "resources": {"cpus": 1},
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def _command_lines_with(text: str) -> list[str]:
    """The command lines of this machine's processes that contain ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in line:
            found.append(f"{cmdline.parent.name}: {line[:200]}")
    return found


def _marked(stack_dir: str) -> list[int]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"RBLOCK_STACK_MARK={stack_dir}".encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def test_stack_runs_a_study_end_to_end(stack: tuple[dict[str, str], dict[str, str]], tmp_path: Path) -> None:
    env, written = stack
    stack_dir = env["STACK_DIR"]
    assert _marked(stack_dir), "stack.sh up started no marked process"
    status = subprocess.run([str(STACK), "status"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert (
        "ray: 2 node(s)" in status.stdout
        and "postgres: up" in status.stdout
        and "mlflow: up" in status.stdout
    )
    # the secrets are in stack.env only (mode 600), and the study's URLs carry none
    assert oct(Path(stack_dir, "stack.env").stat().st_mode)[-3:] == "600"
    assert written["PGPASSWORD"] and written["PGPASSWORD"] not in written["RBLOCK_OPTUNA_STORAGE"]
    # STACK_DIR is private, and no process's command line (what every local user sees in ps) holds
    # the database password: PostgreSQL's clients and the MLflow server take it from the environment
    assert oct(Path(stack_dir).stat().st_mode)[-3:] == "700"
    assert _command_lines_with(written["PGPASSWORD"]) == []

    spec = _spec(tmp_path, "stacked", size=256, epochs=2, space={"reg.variant": ["bdrop_dml", "sdrop_dml"]})
    run_env = {**env, **written}
    workdir = tmp_path / "work"
    command = [
        sys.executable,
        "-m",
        "rblock_tune.cli",
        "-q",
        "study",
        "run",
        str(spec),
        "--workdir",
        str(workdir),
    ]
    done = subprocess.run(
        [*command, "--address", written["RAY_ADDRESS"]],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:] + _logs(stack_dir)
    assert "study stacked finished" in done.stdout
    assert written["PGPASSWORD"] not in done.stdout + done.stderr
    state = json.loads((workdir / "stacked" / STATE_FILE).read_text())
    assert state["optuna_storage"].startswith("postgresql://") and written["PGPASSWORD"] not in json.dumps(
        state
    )

    # both trials ran on the Ray cluster, one per node (Ray's results carry the node address)
    results: dict[str, set[str]] = {}
    for path in Path(written["RBLOCK_STORAGE"], "stacked-search").glob("*/result.json"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            results.setdefault(record["trial_id"], set()).add(record["node_ip"])
    assert len(results) == 2 and set().union(*results.values()) == {HEAD_IP, WORKER_IP}, results

    # MLflow: the runs are on the server (PostgreSQL behind it), read back over HTTP
    from rblock_tune.analysis import load_runs

    runs = load_runs("stacked", written["RBLOCK_TRACKING_URI"])
    trials = runs[(runs["phase"] == "search") & (runs["role"] == "trial")]
    assert len(trials) == 2 and set(trials["status"]) == {"completed"} and trials["val_acc"].notna().all()
    assert not (workdir / "mlflow.db").exists()

    # Optuna: the study is in PostgreSQL
    import optuna

    previous = os.environ.get("PGPASSWORD")
    os.environ["PGPASSWORD"] = written["PGPASSWORD"]
    try:
        study = optuna.load_study(study_name="stacked", storage=written["RBLOCK_OPTUNA_STORAGE"])
        assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    finally:
        if previous is None:
            os.environ.pop("PGPASSWORD", None)
        else:
            os.environ["PGPASSWORD"] = previous


def test_service_commands_refuse_missing_settings() -> None:
    env: dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    for command, fragment in (
        ("mlflow-server", "MLFLOW_BACKEND_STORE_URI"),
        ("ray-worker", "RAY_HEAD_ADDRESS"),
    ):
        done = subprocess.run([str(STACK), command], env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode != 0 and fragment in done.stderr and done.stderr.count("\n") == 1, done.stderr
    done = subprocess.run([str(STACK), "bogus"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "unknown command 'bogus'" in done.stderr


def _node_pids(stack_dir: str, node_ip: str) -> list[int]:
    """The processes of one Ray node of the stack (they carry the stack's mark and that node's address)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = environ.read_bytes().split(b"\0")
        except OSError:
            continue
        wanted = {f"RBLOCK_STACK_MARK={stack_dir}".encode(), f"RAY_NODE_IP={node_ip}".encode()}
        if wanted <= set(variables):
            found.append(int(environ.parent.name))
    return found


def test_losing_the_head_node_then_up_and_resume(
    stack: tuple[dict[str, str], dict[str, str]], tmp_path: Path
) -> None:
    """The head machine dies mid-study, taking the study's driver with it (in compose the driver runs in
    ray-head): SIGKILL both. ``stack.sh up`` brings the head back (and restarts the worker, which cannot
    join a new head), ``rblock-tune study resume`` finishes the study: the interrupted trials continue
    from their checkpoints in the shared storage, and MLflow and Optuna keep everything."""
    import signal
    import time

    env, written = stack
    stack_dir = env["STACK_DIR"]
    spec = _spec(
        tmp_path, "headloss", size=512, epochs=12,
        space={"reg.alpha": {"type": "loguniform", "low": 0.1, "high": 10}},
    )  # fmt: skip
    run_env = {**env, **written}
    workdir, log = tmp_path / "work", tmp_path / "driver.log"
    cli = [sys.executable, "-m", "rblock_tune.cli", "-q", "study"]
    experiment = Path(written["RBLOCK_STORAGE"], "headloss-search")
    with log.open("wb") as out:
        driver = subprocess.Popen(
            [*cli, "run", str(spec), "--workdir", str(workdir), "--address", written["RAY_ADDRESS"]],
            env=run_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while True:  # both trials have checkpointed epoch 3 at least
            epochs = [len(p.read_text().splitlines()) for p in experiment.glob("*/result.json")]
            if len(epochs) == 2 and min(epochs) >= 3:
                break
            assert driver.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver, and the head node with it
        for pid in _node_pids(stack_dir, HEAD_IP):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        driver.wait(timeout=30)
    done_before = {p.parent.name: len(p.read_text().splitlines()) for p in experiment.glob("*/result.json")}
    assert all(n < 12 for n in done_before.values()), done_before  # killed mid-study

    up = subprocess.run([str(STACK), "up"], env=env, capture_output=True, text=True, timeout=400)
    assert up.returncode == 0, up.stderr[-3000:] + _logs(stack_dir)
    resume = subprocess.run(
        [*cli, "resume", "headloss", "--workdir", str(workdir)], env=run_env, capture_output=True, text=True,
        timeout=400,
    )  # fmt: skip
    assert resume.returncode == 0, resume.stdout[-2000:] + resume.stderr[-3000:]

    for folder in experiment.glob("*/result.json"):
        results = [json.loads(line) for line in folder.read_text().splitlines()]
        restarts = [r["epoch"] for r in results if r["iterations_since_restore"] == 1]
        assert results[-1]["epoch"] == 12
        if folder.parent.name in done_before and done_before[folder.parent.name] < 12:
            # continued from its last checkpoint, not from scratch
            assert len(restarts) == 2 and restarts[-1] > 2, (folder.parent.name, restarts)
    from rblock_tune.analysis import load_runs

    runs = load_runs("headloss", written["RBLOCK_TRACKING_URI"])
    completed = runs[(runs["role"] == "trial") & (runs["status"] == "completed")]
    assert len(completed) == 2 and completed["val_acc"].notna().all()
