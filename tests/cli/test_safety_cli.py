"""Issue 10, sections 2-3 through the command line: garbage URIs, reading verbs that never create a
store, dead servers and bad addresses that fail in seconds (a subprocess with a timeout: a hang fails
the test instead of hanging it), requests no node can hold, no password on disk or on screen, state
files mode 600, and a local Ray that listens on 127.0.0.1 only."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rblock_tune.cli import main
from rblock_tune.layout import STATE_FILE, STATE_FORMAT
from rblock_tune.tuning import load_study_spec

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "search_spaces" / "quickstart.yaml")
HANG_LIMIT_S = 120  # a verb that has not failed by then hangs: Ray's own retries took > 240 s; each verb
# needs seconds here, most of it imports (several times that on a loaded 2-core machine)

MINI_STUDY = {
    "name": "mini",
    "base": {
        "data": {"name": "synthetic", "synthetic_size": 128, "val_size": 32},
        "model": {"name": "resnet8"},
        "reg": {"variant": "none"},
        "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "eval_batch_size": 128},
    },
    "space": {"train.lr": {"type": "loguniform", "low": 0.01, "high": 0.1}},
    "search": {"algorithm": "random", "num_samples": 1, "max_concurrent": 1, "seed": 0},
    "scheduler": {"type": "fifo"},
    "resources": {"cpus": 1},
}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["-q", *args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rblock-tune: error: "), err[-2000:]
    return lines[0]


def error_line(err: str) -> str:
    """The one error line of a verb that had started Ray (whose own start-up lines are not ours)."""
    lines = [line for line in err.splitlines() if line.startswith("rblock-tune: ")]
    assert len(lines) == 1 and lines[0].startswith("rblock-tune: error: "), err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns: nothing listens there


def _env(ray_tmp: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RBLOCK_", "MLFLOW_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if ray_tmp is not None:
        env["RAY_TMPDIR"] = ray_tmp
    return env


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = HANG_LIMIT_S
) -> tuple[int, str, float]:
    """``rblock-tune -q ARGS`` in its own process; exit code, stderr, seconds. A hang fails the test."""
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "rblock_tune.cli", "-q", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or _env(),
        check=False,
    )
    return done.returncode, done.stderr, time.monotonic() - start


def write_state(workdir: Path, name: str, **urls: str) -> Path:
    """A study.json as ``study run`` writes it (the quickstart spec, search not done), with these URLs."""
    spec = load_study_spec(QUICKSTART, [f"name={name}"])
    state = {
        "format": STATE_FORMAT,
        "name": name,
        "spec": spec.raw,
        "workdir": str(workdir),
        "storage": str(workdir / "ray"),
        "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}",
        "optuna_storage": f"sqlite:///{workdir / 'optuna.db'}",
        "address": None,
        "search_seeds": {},
        "seed_phase_seeds": [],
        "search_done": False,
        "seeds_done": False,
        "best": [],
        **urls,
    }
    path = workdir / name / STATE_FILE
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(state))
    return path


# ------------------------------------------------------------------ A: garbage URIs, reading verbs


@pytest.mark.parametrize(
    ("flag", "uri", "says"),
    [
        ("--tracking-uri", "garbage", "is not a tracking URI (no scheme)"),
        ("--tracking-uri", "nosuch://host/x", "unknown scheme 'nosuch'"),
        (
            "--tracking-uri",
            "sqlite:////nonexistent/dir/m.db",
            "the directory /nonexistent/dir does not exist",
        ),
        ("--optuna-storage", "garbage", "is not a database URL"),
        (
            "--optuna-storage",
            "sqlite:////nonexistent/dir/o.db",
            "the directory /nonexistent/dir does not exist",
        ),
    ],
)
def test_study_run_garbage_uri_is_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, uri: str, says: str
) -> None:
    work = tmp_path / "w"
    code, _, err = run(capsys, "study", "run", QUICKSTART, "--workdir", str(work), flag, uri)
    assert code == 2 and says in one_line(err)
    assert not work.exists() and not Path("/nonexistent").exists()


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("garbage", "is not a tracking URI (no scheme)"),
        ("nosuch://host/x", "unknown scheme 'nosuch'"),
        ("sqlite:////nonexistent/dir/m.db", "no MLflow store at sqlite:////nonexistent/dir/m.db"),
    ],
)
def test_report_garbage_uri_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], uri: str, says: str
) -> None:
    code, _, err = run(
        capsys, "report", "--experiment", "x", "--workdir", str(tmp_path), "--tracking-uri", uri
    )
    assert code == 2 and says in one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_report_never_creates_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing sqlite file, an empty file and a sqlite database that is not MLflow's are refused,
    and left as they were (the missing one is not created)."""
    missing = tmp_path / "typo.db"
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("create table t (x)")
    for path in (missing, empty, other):
        before = path.read_bytes() if path.exists() else None
        args = (
            "report",
            "--experiment",
            "x",
            "--workdir",
            str(tmp_path),
            "--tracking-uri",
            f"sqlite:///{path}",
        )
        code, _, err = run(capsys, *args)
        assert code == 2 and f"no MLflow store at sqlite:///{path}" in one_line(err)
        assert (path.read_bytes() if path.exists() else None) == before
    assert not missing.exists() and not (tmp_path / "x").exists()


def test_status_and_resume_garbage_uris_from_the_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """study.json's URIs go through the same checks: status (a reading verb) never creates the store
    a state names, resume refuses a garbage one before any work."""
    missing = tmp_path / "gone" / "mlflow.db"
    (tmp_path / "gone").mkdir()
    write_state(tmp_path, "a", tracking_uri=f"sqlite:///{missing}")
    code, _, err = run(capsys, "study", "status", "a", "--workdir", str(tmp_path))
    assert code == 2 and f"no MLflow store at sqlite:///{missing}" in one_line(err)
    assert list((tmp_path / "gone").iterdir()) == []
    write_state(tmp_path, "b", tracking_uri="garbage")
    for action in ("status", "resume"):
        code, _, err = run(capsys, "study", action, "b", "--workdir", str(tmp_path))
        assert code == 2 and "'garbage' is not a tracking URI" in one_line(err)
    write_state(tmp_path, "c", optuna_storage="garbage")
    code, _, err = run(capsys, "study", "resume", "c", "--workdir", str(tmp_path))
    assert code == 2 and "--optuna-storage 'garbage' is not a database URL" in one_line(err)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()


def test_file_store_and_a_dead_database_and_a_bad_driver_record_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MLflow 3 refuses its file store only when it is first opened (after Ray started): refused up
    front; status against a database Optuna storage that does not answer is one line in seconds, not
    SQLAlchemy's traceback; a study.json whose driver record is not a pid and a host is refused."""
    code, _, err = run(
        capsys, "study", "run", QUICKSTART, "--workdir", str(tmp_path / "w"),
        "--tracking-uri", (tmp_path / "mlruns").as_uri(),
    )  # fmt: skip
    assert code == 2 and "file store is in maintenance mode" in one_line(err)
    assert not (tmp_path / "w").exists() and not (tmp_path / "mlruns").exists()
    with sqlite3.connect(tmp_path / "mlflow.db") as con:  # what status checks before the Optuna storage
        con.execute("create table experiments (id integer)")
    write_state(tmp_path, "pg", optuna_storage=f"postgresql://u:pw@127.0.0.1:{_closed_port()}/optuna")
    start = time.monotonic()
    code, out, err = run(capsys, "study", "status", "pg", "--workdir", str(tmp_path))
    line = one_line(err)
    assert code == 2 and "optuna storage postgresql://u:***@127.0.0.1" in line, line
    assert time.monotonic() - start < HANG_LIMIT_S and "pw" not in out + err.replace("pw@", "")
    state = write_state(tmp_path, "drv")
    data = json.loads(state.read_text())
    for record in ("oops", {"pid": "12", "host": "h"}):
        state.write_text(json.dumps({**data, "driver": record}))
        code, _, err = run(capsys, "study", "status", "drv", "--workdir", str(tmp_path))
        assert code == 2 and "is not a study state ('driver' is" in one_line(err)


# ------------------------------------------------------------------ 2: no hangs


def test_dead_tracking_server_fails_in_seconds_on_every_verb(tmp_path: Path) -> None:
    """run, resume, status and report against a closed port: one line within seconds each."""
    dead = f"http://127.0.0.1:{_closed_port()}"
    write_state(tmp_path, "s", tracking_uri=dead)
    verbs = [
        ("study", "run", QUICKSTART, "--name", "r", "--workdir", str(tmp_path), "--tracking-uri", dead),
        ("study", "resume", "s", "--workdir", str(tmp_path)),
        ("study", "status", "s", "--workdir", str(tmp_path)),
        ("report", "--experiment", "x", "--workdir", str(tmp_path), "--tracking-uri", dead),
        ("report", "--experiment", "s", "--workdir", str(tmp_path)),  # the study's own, from study.json
    ]
    for args in verbs:
        code, err, seconds = cli(*args)
        assert code == 2 and f"tracking server {dead} is unreachable" in one_line(err), args
        assert seconds < HANG_LIMIT_S
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_bad_address_fails_in_seconds_and_writes_nothing(tmp_path: Path) -> None:
    """A closed port: refused at once by the probe, before the tracking server is even asked; no
    study.json names the address."""
    work = tmp_path / "w"
    dead = f"http://127.0.0.1:{_closed_port()}"
    args = ("--workdir", str(work), "--storage", str(tmp_path / "ray"), "--tracking-uri", dead)
    code, err, seconds = cli("study", "run", QUICKSTART, "--address", f"127.0.0.1:{_closed_port()}", *args)
    assert code == 2 and "no Ray head answers there" in one_line(err) and seconds < HANG_LIMIT_S
    assert not work.exists()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow server on 127.0.0.1 (a SQLite store), for what needs a live one."""
    folder = tmp_path_factory.mktemp("mlflow_server")
    port = _closed_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    command = [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    command += ["--artifacts-destination", str(folder / "artifacts")]
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # up once it answers /health (its port opens before the app is loaded)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    break
            except OSError:
                assert server.poll() is None, (folder / "server.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_bad_address_behind_a_live_tracking_server_fails_in_seconds(
    tmp_path: Path, mlflow_server: str
) -> None:
    """Past the tracking check, an address whose port is closed, or that accepts the connection but
    does not answer as a Ray head (gRPC) does: one line within seconds, and no study.json."""
    work = tmp_path / "w"
    spec = tmp_path / "mini.yaml"
    spec.write_text(yaml.safe_dump(MINI_STUDY))
    with socket.socket() as listener:  # accepts connections, speaks no Ray
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        not_ray = f"127.0.0.1:{listener.getsockname()[1]}"
        for address, says in (
            (f"127.0.0.1:{_closed_port()}", "Connection refused"),
            (not_ray, "no answer within 3 s"),
        ):
            args = [
                "--workdir",
                str(work),
                "--storage",
                str(tmp_path / "ray"),
                "--tracking-uri",
                mlflow_server,
            ]
            code, err, seconds = cli("study", "run", str(spec), "--address", address, *args)
            line = error_line(err)
            assert code == 2 and "no Ray head answers there" in line and says in line and address in line
            assert seconds < HANG_LIMIT_S
            assert not (work / "mini" / STATE_FILE).exists()


@pytest.mark.slow
def test_resources_no_node_has_are_refused_before_any_trial(tmp_path: Path) -> None:
    """512 CPUs per trial on this machine's local Ray: one line naming the ask and what exists, before
    study.json or any Optuna trial, and the work directory this run made is gone again;
    RBLOCK_CLUSTER_AUTOSCALES=1 would let it wait for new nodes."""
    work = tmp_path / "w"
    spec = tmp_path / "mini.yaml"
    spec.write_text(yaml.safe_dump({**MINI_STUDY, "resources": {"cpus": 512}}))
    ray_tmp = tempfile.mkdtemp(prefix="rbt-", dir="/tmp")
    code, err, _ = cli("study", "run", str(spec), "--workdir", str(work), env=_env(ray_tmp), timeout=300)
    line = error_line(err)
    assert code == 2 and "each trial asks for 512 CPU" in line and "RBLOCK_CLUSTER_AUTOSCALES=1" in line
    assert re.search(r"\(nodes: \d+ CPU\)", line), line  # what the one node has (Ray's count of it)
    assert not work.exists()  # no study.json, no Optuna store, no study.log left half-written


# ------------------------------------------------------------------ 3: secrets and exposure


def test_resume_of_a_redacted_url_asks_for_its_environment_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """study.json holds ``user:***@``: resume and status take the password from RBLOCK_OPTUNA_STORAGE
    (the same URL with its password), and say so when it is not there."""
    port = _closed_port()
    redacted = f"postgresql://rblock:***@127.0.0.1:{port}/optuna"
    write_state(tmp_path, "p", optuna_storage=redacted)
    monkeypatch.delenv("RBLOCK_OPTUNA_STORAGE", raising=False)
    code, _, err = run(capsys, "study", "resume", "p", "--workdir", str(tmp_path))
    line = one_line(err)
    assert (
        code == 2 and "set RBLOCK_OPTUNA_STORAGE to that URL with its password" in line and redacted in line
    )
    monkeypatch.setenv("RBLOCK_OPTUNA_STORAGE", f"postgresql://rblock:s3cret@127.0.0.1:{port}/optuna")
    code, _, err = run(capsys, "study", "resume", "p", "--workdir", str(tmp_path))
    line = one_line(err)  # now it got as far as opening the database, with the password, shown redacted
    assert code == 2 and "cannot be opened" in line and "s3cret" not in line and redacted in line


@pytest.mark.slow
def test_no_password_on_disk_or_screen_and_state_files_are_600(
    tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A study tracking at http://user:PASSWORD@host: neither its output nor any file the driver writes
    in the workdir holds the password; study.json and spec.yaml are mode 600; resume takes the URL
    with its password from RBLOCK_TRACKING_URI, and refuses with one line without it."""
    secret = "s3cretPW"
    uri = mlflow_server.replace("http://", f"http://rblock:{secret}@")
    work = tmp_path / "w"
    spec = tmp_path / "mini.yaml"
    spec.write_text(yaml.safe_dump(MINI_STUDY))
    ray_tmp = tempfile.mkdtemp(prefix="rbt-", dir="/tmp")
    done = subprocess.run(
        [sys.executable, "-m", "rblock_tune.cli", "study", "run", str(spec), "--workdir", str(work)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**_env(ray_tmp), "RBLOCK_TRACKING_URI": uri},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert secret not in done.stdout + done.stderr and "rblock:***@" in done.stdout
    state_file = work / "mini" / STATE_FILE
    state: dict[str, Any] = json.loads(state_file.read_text())
    assert state["tracking_uri"] == mlflow_server.replace("http://", "http://rblock:***@")
    for path in (state_file, work / "mini" / "spec.yaml"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    holding = [p for p in work.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert holding == []
    code, err, _ = cli("study", "resume", "mini", "--workdir", str(work), env=_env(ray_tmp))
    assert code == 2 and "set RBLOCK_TRACKING_URI" in error_line(err) and secret not in err
    code, err, _ = cli(
        "study", "status", "mini", "--workdir", str(work), env={**_env(ray_tmp), "RBLOCK_TRACKING_URI": uri}
    )
    assert code == 0 and secret not in err, err[-2000:]


LISTENERS = r"""
import os, sys
import psutil
from rblock_tune.tuning._phases import init_ray
import ray

init_ray(None)  # what a local study starts

@ray.remote
def pid():
    return os.getpid()

ray.get([pid.remote() for _ in range(2)])  # workers up too
mine = [psutil.Process(), *psutil.Process().children(recursive=True)]
for proc in mine:
    try:
        for c in proc.net_connections(kind="inet"):
            if c.status == psutil.CONN_LISTEN:
                print(proc.name(), c.laddr.ip, c.laddr.port)
    except psutil.Error:
        pass
ray.shutdown()
"""


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only(tmp_path: Path) -> None:
    """Every listening socket of a local study's Ray (driver, GCS, raylet, workers): 127.0.0.1."""
    ray_tmp = tempfile.mkdtemp(prefix="rbt-", dir="/tmp")
    done = subprocess.run(
        [sys.executable, "-c", LISTENERS],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(ray_tmp),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    listening = [line.split() for line in done.stdout.splitlines() if line.strip()]
    names = {name for name, _, _ in listening}
    assert "gcs_server" in names and "raylet" in names, done.stdout
    exposed = [line for line in listening if line[1] not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")]
    assert exposed == [], exposed
