"""Studies under failure, for real: a driver killed with SIGKILL and resumed, a driver stopped with
Ctrl-C and resumed, a two-node Ray cluster tracking to an MLflow server over HTTP, and a node lost in
the middle of a trial.

Every process these tests start is found again and killed in a ``finally`` block, on success and on
failure: the study driver runs in its own session (process group), and every Ray process of a run
carries that run's private ``RAY_TMPDIR`` in its environment, which finds the Ray workers too (they
leave the driver's process group). No test waits without a deadline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import yaml

from rblock_tune.layout import (
    EPOCHS_DONE_TAG,
    ERROR_TAG,
    PARENT_TAG,
    PHASE_TAG,
    ROLE_TAG,
    ROLE_TRIAL,
    SEED_TAG,
    STATE_FILE,
    STATUS_TAG,
    STUDY_LOG,
    STUDY_TAG,
    TRIAL_TAG,
)
from rblock_tune.tuning import run_study, spec_from_dict, study_status

pytestmark = pytest.mark.slow

BASE: dict[str, Any] = {
    "data": {"name": "synthetic", "synthetic_size": 256, "val_size": 64},
    "model": {"name": "resnet8"},
    "train": {"epochs": 3, "batch_size": 32, "lr": 0.05, "device": "cpu", "eval_batch_size": 64},
}
SPACE = {"train.lr": {"type": "loguniform", "low": 0.01, "high": 0.1}}
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
"""Loopback addresses of the two Ray nodes; distinct, so each result's ``node_ip`` names its node.
(127.0.0.1 itself is not usable: Ray rewrites it to the machine's outward address.)"""


# ----------------------------------------------------------------------------- processes
class _Deadline(BaseException):
    """Raised in the main thread when a blocking call overruns (a BaseException, so that no
    ``except Exception`` inside Ray swallows it)."""


@contextmanager
def _deadline(seconds: float, what: str) -> Iterator[None]:
    def on_alarm(signum: int, frame: Any) -> None:
        raise _Deadline(f"{what} did not finish within {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _marked(marker: str) -> list[int]:
    """Live processes other than this one whose command line or environment contains ``marker``."""
    found = []
    needle = marker.encode()
    for pid in _pids():
        if pid == os.getpid():
            continue
        try:
            data = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in data and _alive(pid):
            found.append(pid)
    return found


def _in_group(pgid: int) -> list[int]:
    return [pid for pid in _pids() if (s := _stat(pid)) is not None and s[1] == pgid and s[0] not in "ZX"]


def _kill_everything(marker: str, pgid: int | None = None, timeout: float = 20.0) -> list[int]:
    """SIGKILL the process group ``pgid`` and every process carrying ``marker``, until none is
    left or ``timeout`` passes; returns the survivors (none, normally)."""
    stop = time.monotonic() + timeout
    while True:
        left = _marked(marker) + (_in_group(pgid) if pgid is not None else [])
        if not left or time.monotonic() > stop:
            return sorted(set(left))
        if pgid is not None:
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def _short_tmpdir() -> str:
    """A private Ray temp dir; short, because Ray's socket paths under it must fit in 107 bytes."""
    return tempfile.mkdtemp(prefix="rbt-", dir="/tmp")


def _child_env(ray_tmpdir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR")}
    env["RAY_TMPDIR"] = ray_tmpdir  # a private Ray: never joins another cluster on this machine
    return env


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------- reading a study back
def _trial_tags(db: Path) -> dict[str, dict[str, str]]:
    """Run id -> ``rblock.*`` tags of the trial runs, read from MLflow's sqlite file read-only (an
    MLflow client would run the schema set-up and race the driver doing the same)."""
    if not db.exists():
        return {}
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as con:
            rows = con.execute("SELECT run_uuid, key, value FROM tags WHERE key LIKE 'rblock.%'").fetchall()
    except sqlite3.Error:
        return {}
    runs: dict[str, dict[str, str]] = {}
    for run_id, key, value in rows:
        runs.setdefault(run_id, {})[key] = value
    return {r: t for r, t in runs.items() if t.get(ROLE_TAG) == ROLE_TRIAL}


def _ray_results(experiment: Path) -> dict[str, list[dict[str, Any]]]:
    """Ray trial id -> its results (``result.json``, one line per reported result, in order)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in experiment.glob("*/result.json"):
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                result = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being written
            out.setdefault(str(result["trial_id"]), []).append(result)
    return out


def _trial_runs(tracking_uri: str, name: str) -> tuple[Any, list[Any]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no MLflow experiment {name!r} at {tracking_uri}"
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return client, runs


def _epochs(client: Any, run: Any, metric: str = "val_acc") -> list[int]:
    return sorted(int(m.step) for m in client.get_metric_history(run.info.run_id, metric))


def _optuna_states(storage: str, name: str) -> list[Any]:
    import optuna

    return optuna.load_study(study_name=name, storage=storage).trials


def _spec(name: str, **overrides: Any) -> Any:
    raw: dict[str, Any] = {
        "name": name,
        "base": BASE,
        "space": SPACE,
        "search": {"algorithm": "random", "num_samples": 2, "max_concurrent": 2},
        "scheduler": {"type": "fifo"},
    }
    raw.update(overrides)
    return spec_from_dict(raw)


# ------------------------------------------------------------- 1: driver killed, then resumed
def test_a_resumed_searcher_does_not_replay_its_samples(tmp_path: Path) -> None:
    """A searcher restored after a crash reloads the Optuna study; its fresh sampler must not draw
    the configurations the study already holds (a sampler seeded as at the start would)."""
    from rblock_tune.tuning import OptunaStudySearcher

    spec = _spec("replay", search={"algorithm": "random", "num_samples": 6, "max_concurrent": 2})
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = OptunaStudySearcher(spec, storage, "replay", budget=3)
    before = [first.suggest(f"a{i}") for i in range(3)]
    resumed = OptunaStudySearcher(spec, storage, "replay", budget=3)  # the driver crashed
    after = [resumed.suggest(f"b{i}") for i in range(3)]
    values = [s["overrides"]["train.lr"] for s in before + after if s is not None]
    assert len(set(values)) == 6, values


def _cli(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "rblock_tune.cli", "-q", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the test kills the whole group
        )


def _spec_file(folder: Path, name: str, samples: int, epochs: int) -> Path:
    path = folder / "spec.yaml"
    raw = {
        "name": name,
        # 960 training images: an epoch takes about 1.8 s on a quiet core. With BASE's 192 it took
        # 0.45 s, shorter than the half second _kill_point watches a trial midway, and a fast study
        # then ended with no kill point (CI, twice)
        "base": {
            **BASE,
            "data": {**BASE["data"], "synthetic_size": 1024},
            "train": {**BASE["train"], "epochs": epochs},
        },
        "space": SPACE,
        # test_acc: the last epoch's record then carries it, which a restore must not lose
        "search": {"algorithm": "random", "num_samples": samples, "max_concurrent": 2, "test_acc": True},
        "scheduler": {"type": "fifo"},
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def _kill_point(
    db: Path, experiment: Path, driver: subprocess.Popen[bytes], log: Path, timeout: float
) -> str:
    """Wait until one trial has completed while another is midway: Ray took in that trial's epoch-2
    result and checkpoint at least half a second ago (so the experiment state saved after it is on
    disk), and it is still training epoch 3. Returns the midway trial's id."""
    stop = time.monotonic() + timeout
    seen: dict[str, float] = {}  # trial id -> when Ray's results first showed its epoch 2
    while time.monotonic() < stop:
        tags = list(_trial_tags(db).values())
        completed = any(t.get(STATUS_TAG) == "completed" for t in tags)
        results = _ray_results(experiment)
        now = time.monotonic()
        for t in tags:
            trial_id = t.get(TRIAL_TAG, "")
            if t.get(STATUS_TAG) != "running" or t.get(EPOCHS_DONE_TAG) != "2":
                continue
            if not (results.get(trial_id) and results[trial_id][-1]["epoch"] == 2):
                continue
            if completed and now - seen.setdefault(trial_id, now) >= 0.5:
                return trial_id
        if driver.poll() is not None:
            pytest.fail(f"the study ended (rc {driver.returncode}) before the kill point:\n{_tail(log)}")
        time.sleep(0.05)
    pytest.fail(f"no kill point within {timeout:.0f} s:\n{_tail(log)}")


def _trial_folder(experiment: Path, trial_id: str) -> Path:
    """The Ray trial folder (``result.json``, ``checkpoint_*``) of one trial."""
    for path in experiment.glob("*/result.json"):
        for line in path.read_text().splitlines():
            if json.loads(line)["trial_id"] == trial_id:
                return path.parent
    raise AssertionError(f"no Ray folder for trial {trial_id} in {experiment}")


def _advance_own_copy(folder: Path, done: int) -> None:
    """Put the trial's own copy one epoch ahead of what Ray and MLflow received: the state of a crash
    after the copy of epoch ``done + 1`` was written, before that epoch was logged and reported."""
    from rblock_tune.config import config_from_dict
    from rblock_tune.trainer import Trainer, read_checkpoint

    state = read_checkpoint(folder / f"epoch-{done:04d}.pt")
    trainer = Trainer(config_from_dict(state["config"]))
    trainer.load_state_dict(state)
    record = trainer.run_epoch()
    if trainer.done:
        record["test_acc"] = trainer.evaluate_test()
    for path in folder.iterdir():
        path.unlink()
    trainer.save(folder / f"epoch-{done + 1:04d}.pt")


@pytest.mark.parametrize("restore", ["ray-checkpoint", "own-copy", "own-copy-ahead"])
def test_driver_killed_with_sigkill_then_study_resume(tmp_path: Path, restore: str) -> None:
    """SIGKILL the whole ``study run`` (driver and its local Ray) while one trial is done and another
    is midway, then ``study resume``: ``num_samples`` trials complete, each with one MLflow run
    holding epochs 1..3 once, the interrupted trial continues from its checkpoint, and the resumed
    search samples new configurations instead of replaying the ones it already tried.

    Orphans are allowed: a trial the driver had started just before the kill, which Ray's saved
    experiment state did not record yet, is not resumed (Ray runs a new trial in its place). Its
    Optuna trial ends FAIL (``fail_orphans``) and its MLflow run, if it had one, ``failed`` with an
    ``rblock.error`` saying so (``fail_orphan_runs``); so the study has exactly ``num_samples``
    COMPLETE trials and completed runs, plus zero or more such FAIL/failed ones, nothing RUNNING.

    ``own-copy``: with ``num_to_keep=1`` Ray deletes a trial's previous checkpoint before the
    experiment state naming the new one reaches the storage, so a kill in that instant leaves a
    state naming a deleted checkpoint (Ray's own restore then fails the trial for good: "Could not
    recover from checkpoint as it does not exist on storage anymore"). The test makes that instant
    certain by deleting the midway trial's Ray checkpoints after the kill; the trial must continue
    from its own copy (``rblock_state``) all the same.

    ``own-copy-ahead``: the same, with the own copy one epoch ahead of what Ray received (a kill after
    the copy was written, before its epoch was reported; here the trial's last epoch), which the test
    makes certain by advancing the copy after the kill: the trial must report that epoch on resume, or
    it would end without its final result and be told to Optuna as pruned.
    """
    ray_checkpoint_lost = restore != "ray-checkpoint"
    name, samples, epochs = "crash", 5, 3
    spec_file = _spec_file(tmp_path, name, samples, epochs)
    workdir, log = tmp_path / "work", tmp_path / "driver.log"
    db = workdir / "mlflow.db"
    ray_tmp = _short_tmpdir()
    env = _child_env(ray_tmp)
    try:
        driver = _cli(["study", "run", str(spec_file), "--workdir", str(workdir)], env, log)
        pgid = driver.pid
        try:
            midway = _kill_point(db, workdir / "ray" / f"{name}-search", driver, log, timeout=240)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            survivors = _kill_everything(ray_tmp, pgid)
            # Ray's workers are not all in the driver's process group: one can log an epoch after the
            # killpg, until _kill_everything reaches it, so the kill is over only when none is left
            killed_at = time.time()
            driver.wait(timeout=10)
        assert survivors == [], f"processes of the killed study survived: {survivors}"
        assert not _marked(ray_tmp) and not _in_group(pgid)  # no raylet, GCS or worker of that run left

        (at_kill,) = [t for t in _trial_tags(db).values() if t[TRIAL_TAG] == midway]
        assert at_kill[STATUS_TAG] == "running", at_kill
        interrupted = {midway: int(at_kill[EPOCHS_DONE_TAG])}
        own_copies = workdir / "ray" / f"{name}-search" / "rblock_state" / midway
        # The kill lands while epoch 3 trains, or while its own copy is being written: the copy is
        # written (under a temporary name, then moved) before MLflow logs its epoch, and older copies are
        # deleted after the move. So the newest complete copy is epoch `done` or `done + 1`, beside at most
        # the copy before it and a partial `.tmp`, which a restore never reads.
        done = interrupted[midway]
        names = sorted(p.name for p in own_copies.iterdir())
        complete = [n for n in names if re.fullmatch(r"epoch-\d{4}\.pt", n)]
        assert complete and complete[-1] in (f"epoch-{done:04d}.pt", f"epoch-{done + 1:04d}.pt"), names
        assert set(names) - set(complete) <= {f"epoch-{done + 1:04d}.pt.tmp"}, names
        assert set(complete) <= {f"epoch-{done:04d}.pt", f"epoch-{done + 1:04d}.pt"}, names
        if restore == "own-copy-ahead" and complete[-1] == f"epoch-{done:04d}.pt":
            _advance_own_copy(own_copies, done)
        if ray_checkpoint_lost:
            trial_folder = _trial_folder(workdir / "ray" / f"{name}-search", midway)
            ray_checkpoints = list(trial_folder.glob("checkpoint_*"))
            assert ray_checkpoints, "the midway trial has no Ray checkpoint to lose"
            for folder in ray_checkpoints:
                shutil.rmtree(folder)

        resume = _cli(["study", "resume", name, "--workdir", str(workdir)], env, log)
        try:
            rc = resume.wait(timeout=300)
        finally:
            _kill_everything(ray_tmp, resume.pid)
        assert rc == 0, _tail(log)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)

    from optuna.trial import TrialState

    trials_optuna = _optuna_states(f"sqlite:///{workdir / 'optuna.db'}", name)
    states = [t.state for t in trials_optuna]
    assert states.count(TrialState.COMPLETE) == samples
    assert set(states) <= {TrialState.COMPLETE, TrialState.FAIL}, states
    orphans = {t.user_attrs["ray_trial_id"] for t in trials_optuna if t.state == TrialState.FAIL}
    # a resumed search must not replay the configurations it tried before the crash
    lrs = [t.params["train.lr"] for t in trials_optuna if t.state == TrialState.COMPLETE]
    assert len(set(lrs)) == samples, f"resumed search repeated configurations: {sorted(lrs)}"

    client, runs = _trial_runs(f"sqlite:///{db}", name)
    trials = [r for r in runs if r.data.tags.get(ROLE_TAG) == ROLE_TRIAL]
    trial_ids = [r.data.tags[TRIAL_TAG] for r in trials]
    assert len(set(trial_ids)) == len(trial_ids), trial_ids  # one run per trial, resumed or not
    completed = [r for r in trials if r.data.tags[STATUS_TAG] == "completed"]
    assert len(completed) == samples, [r.data.tags for r in trials]
    for run in completed:
        assert run.info.status == "FINISHED" and "test_acc" in run.data.metrics
        assert _epochs(client, run) == list(range(1, epochs + 1)), run.data.tags  # no duplicate, no gap
    for run in trials:  # any other run is an orphan: ended as failed, never left running
        if run not in completed:
            tags = run.data.tags
            assert tags[STATUS_TAG] == "failed" and "orphaned" in tags[ERROR_TAG], tags
            assert tags[TRIAL_TAG] in orphans, (tags, orphans)

    # the interrupted trials continued from their checkpoints: Ray's last restore of each (where
    # iterations_since_restore is back to 1) came at a later epoch than 1, and MLflow kept the
    # epochs logged before the kill instead of logging them again
    results = _ray_results(workdir / "ray" / f"{name}-search")
    for trial_id, done in interrupted.items():
        starts = [r for r in results[trial_id] if r["iterations_since_restore"] == 1]
        assert len(starts) >= 2, results[trial_id]  # the first start, and the restore
        assert 2 <= starts[-1]["epoch"] <= done + 1 and starts[-1]["training_iteration"] > 1, starts
        assert results[trial_id][-1]["epoch"] == epochs
        (run,) = [r for r in completed if r.data.tags[TRIAL_TAG] == trial_id]
        kept = client.get_metric_history(run.info.run_id, "val_acc")
        assert all(m.timestamp <= killed_at * 1000 for m in kept if m.step <= done)

    if ray_checkpoint_lost:  # a trial's warning: in the study's log of Ray's and the workers' output
        study_log = workdir / name / STUDY_LOG
        assert "continues from its own copy" in study_log.read_text(), _tail(study_log)
    assert not (workdir / "ray" / f"{name}-search" / "rblock_state").exists()  # removed with the phase

    status = study_status(name, workdir)
    expected = {"completed": samples} | ({"orphaned": len(trials) - samples} if len(trials) > samples else {})
    assert status["phases"] == {"search": expected} and status["search_done"], status


def test_ctrl_c_stops_the_study_unfinished_and_resume_completes_it(tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) to the whole ``study run`` while one trial is done and another runs: Ray Tune
    saves its state and returns early, and the study must not take that for the end of the search
    (no ``search_done``, no trial told or tagged failed, the driver exits non-zero); ``study resume``
    then finishes every trial, each with one run holding every epoch once."""
    name, samples, epochs = "ctrl-c", 3, 2
    spec_file = _spec_file(tmp_path, name, samples, epochs)
    workdir, log = tmp_path / "work", tmp_path / "driver.log"
    db = workdir / "mlflow.db"
    ray_tmp = _short_tmpdir()
    env = _child_env(ray_tmp)
    try:
        driver = _cli(["study", "run", str(spec_file), "--workdir", str(workdir)], env, log)
        try:
            stop = time.monotonic() + 180
            while time.monotonic() < stop and driver.poll() is None:
                statuses = [t.get(STATUS_TAG) for t in _trial_tags(db).values()]
                if "completed" in statuses and "running" in statuses:
                    break
                time.sleep(0.1)
            assert driver.poll() is None, f"the study ended before the interrupt:\n{_tail(log)}"
            os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
            rc = driver.wait(timeout=120)
        finally:
            _kill_everything(ray_tmp, driver.pid)
        assert rc != 0, _tail(log)
        state = json.loads((workdir / name / STATE_FILE).read_text())
        assert state["search_done"] is False
        assert "failed" not in {t.get(STATUS_TAG) for t in _trial_tags(db).values()}

        resume = _cli(["study", "resume", name, "--workdir", str(workdir)], env, log)
        try:
            rc = resume.wait(timeout=240)
        finally:
            _kill_everything(ray_tmp, resume.pid)
        assert rc == 0, _tail(log)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)

    client, runs = _trial_runs(f"sqlite:///{db}", name)
    trials = [r for r in runs if r.data.tags.get(ROLE_TAG) == ROLE_TRIAL]
    assert len(trials) == samples and len({r.data.tags[TRIAL_TAG] for r in trials}) == samples
    for run in trials:
        assert run.data.tags[STATUS_TAG] == "completed", run.data.tags
        assert _epochs(client, run) == list(range(1, epochs + 1))
    from optuna.trial import TrialState

    states = [t.state for t in _optuna_states(f"sqlite:///{workdir / 'optuna.db'}", name)]
    assert states == [TrialState.COMPLETE] * samples


# ------------------------------------------------- 2, 3: a two-node cluster and an MLflow server
@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real ``mlflow server`` process on a free loopback port: (its URL, its artifact folder)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    artifacts, log = root / "artifacts", root / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no background job workers on 2 cores
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination", str(artifacts),
    ]  # fmt: skip
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        stop = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > stop:
                pytest.fail(f"mlflow server did not come up (rc {server.poll()}):\n{_tail(log)}")
            time.sleep(0.3)
        yield url, artifacts
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        _kill_everything(str(root), server.pid, timeout=10)
        server.wait(timeout=10)


class _TwoNodes:
    """An in-process ``ray.cluster_utils.Cluster``: a head node and one worker node (1 CPU each)."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.worker: Any = None

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def ensure_worker(self) -> Any:
        if self.worker is None:
            self.worker = self.cluster.add_node(num_cpus=1, node_ip_address=WORKER_IP)
            self.cluster.wait_for_nodes(timeout=60)
        return self.worker

    def remove_worker(self) -> None:
        worker, self.worker = self.worker, None
        self.cluster.remove_node(worker, allow_graceful=False)  # a crash, not a clean shutdown


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[_TwoNodes]:
    import ray
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized(), "another Ray session is open in this process"
    ray_tmp = _short_tmpdir()
    nodes: _TwoNodes | None = None
    with pytest.MonkeyPatch.context() as patch:
        # a private temp dir: the cluster's address file must not redirect anyone's ray.init()
        patch.setenv("RAY_TMPDIR", ray_tmp)
        patch.delenv("RAY_ADDRESS", raising=False)
        try:
            cluster = Cluster(
                initialize_head=True,
                head_node_args={
                    "num_cpus": 1,
                    "node_ip_address": HEAD_IP,
                    "include_dashboard": False,
                    # notice a dead node within a few seconds
                    "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3},
                },
            )
            nodes = _TwoNodes(cluster)
            nodes.ensure_worker()
            ray.init(address=cluster.address, _node_ip_address=HEAD_IP, log_to_driver=False)
            yield nodes
        finally:
            ray.shutdown()
            if nodes is not None:
                with suppress(Exception):  # whatever is left is killed below
                    nodes.cluster.shutdown()
            survivors = _kill_everything(ray_tmp)
            shutil.rmtree(ray_tmp, ignore_errors=True)
            assert survivors == [], f"processes of the Ray cluster survived: {survivors}"


def test_study_on_two_nodes_tracks_to_an_mlflow_server(
    two_nodes: _TwoNodes, mlflow_server: tuple[str, Path], tmp_path: Path
) -> None:
    """``run_study`` against a head and a worker node, tracking over HTTP to an ``mlflow server``
    process: the two concurrent trials run one on each node (Ray results carry ``node_ip``), and
    the server holds the whole MLflow layout, artifacts included; nothing is tracked locally."""
    url, artifacts = mlflow_server
    two_nodes.ensure_worker()
    spec = _spec("two-nodes", base={**BASE, "train": {**BASE["train"], "epochs": 2}})
    workdir, storage = tmp_path / "work", tmp_path / "shared"
    with _deadline(180, "the two-node study"):
        result = run_study(
            spec, workdir=workdir, address=two_nodes.address, storage=str(storage), tracking_uri=url
        )
    assert result.tracking_uri == url and result.storage == str(storage)

    results = _ray_results(storage / "two-nodes-search")
    nodes_by_trial = {trial: {r["node_ip"] for r in rs} for trial, rs in results.items()}
    assert len(nodes_by_trial) == 2 and set().union(*nodes_by_trial.values()) == {HEAD_IP, WORKER_IP}

    client, runs = _trial_runs(url, "two-nodes")  # read back from the server over HTTP
    by_role: dict[str, list[Any]] = {}
    for run in runs:
        assert run.data.tags[PHASE_TAG] == "search"
        by_role.setdefault(run.data.tags[ROLE_TAG], []).append(run)
    assert {role: len(rs) for role, rs in by_role.items()} == {"parent": 1, "trial": 2}
    parent = by_role["parent"][0]
    assert parent.data.tags[STATUS_TAG] == "completed" and parent.info.status == "FINISHED"
    for run in by_role["trial"]:
        tags = run.data.tags
        assert tags[PARENT_TAG] == parent.info.run_id
        assert tags[STUDY_TAG] == "two-nodes" and tags[STATUS_TAG] == "completed"
        assert tags[TRIAL_TAG] in results and tags[SEED_TAG] == "0"
        assert run.data.params["train.epochs"] == "2" and "train.lr" in run.data.params
        assert _epochs(client, run) == [1, 2] and "test_acc" not in run.data.metrics  # not asked for
        # each trial's config and log, written from its node through the server
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"config.yaml", "trial.log"}
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"spec.yaml", "best_configs.yaml"}
    assert {p.name for p in artifacts.rglob("*.yaml")} >= {"spec.yaml", "best_configs.yaml"}  # via the server
    assert not (workdir / "mlflow.db").exists() and not (workdir / "mlartifacts").exists()
    status = study_status("two-nodes", workdir)
    assert status["tracking_uri"] == url and status["phases"] == {"search": {"completed": 2}}

    # the analysis reads the same study from the server: the tidy table and the protocol artifacts
    from rblock_tune.analysis import load_histories, load_runs, read_protocol

    table = load_runs("two-nodes", url)
    assert sorted(table["role"]) == ["parent", "trial", "trial"] and table["train.lr"].notna().sum() == 2
    assert read_protocol(table).selection_metric == "val_acc" and read_protocol(table).search_budget == 2
    assert sorted(load_histories(table[table["role"] == "trial"])["epoch"]) == [1, 1, 2, 2]


def _watch(
    experiment: Path, found: dict[str, Any], act: Callable[[str], None], done: threading.Event
) -> threading.Thread:
    """In a thread, until ``done``: when a trial on the worker node has reported epoch 1 or 2 (of 4),
    call ``act`` with its trial id (the trial id, or an error, lands in ``found``)."""

    def loop() -> None:
        try:
            while not done.is_set():
                for trial_id, results in _ray_results(experiment).items():
                    last = results[-1]
                    if last["node_ip"] == WORKER_IP and 1 <= last["epoch"] <= 2:
                        found["trial_id"], found["epoch"] = trial_id, last["epoch"]
                        act(trial_id)
                        return
                time.sleep(0.1)
            found["error"] = "the study ended before a trial on the worker node reported epoch 1 or 2"
        except Exception as exc:  # noqa: BLE001 - reported by the test
            found["error"] = repr(exc)

    thread = threading.Thread(target=loop, name="node-killer", daemon=True)
    thread.start()
    return thread


def test_losing_a_node_mid_trial_retries_from_the_last_checkpoint(
    two_nodes: _TwoNodes, mlflow_server: tuple[str, Path], tmp_path: Path
) -> None:
    """Kill the worker node (all its processes, SIGKILL) while a trial runs there, one or two of its
    four epochs in: the trial is retried on the head node from its checkpoint (once the other trial
    frees the head's only CPU), the study completes, and the trial keeps one MLflow run with epochs
    1..4 exactly once."""
    url, _ = mlflow_server
    two_nodes.ensure_worker()
    epochs = 4
    spec = _spec(
        "node-loss",
        base={**BASE, "train": {**BASE["train"], "epochs": epochs}},
        failures={"retries": 2},
    )
    workdir, storage = tmp_path / "work", tmp_path / "shared"
    found: dict[str, Any] = {}
    done = threading.Event()
    watcher = _watch(storage / "node-loss-search", found, lambda _: two_nodes.remove_worker(), done)
    try:
        with _deadline(240, "the study losing a node"):
            run_study(
                spec, workdir=workdir, address=two_nodes.address, storage=str(storage), tracking_uri=url
            )
    finally:
        done.set()
        watcher.join(timeout=30)
    assert "error" not in found, found.get("error")
    victim = found["trial_id"]

    results = _ray_results(storage / "node-loss-search")[victim]
    before = [r for r in results if r["node_ip"] == WORKER_IP]
    after = [r for r in results if r["node_ip"] == HEAD_IP]
    assert before and after, [(r["epoch"], r["node_ip"]) for r in results]
    # restarted on the head node from its checkpoint: not at epoch 1, and not later than the epoch
    # after the last one it reported on the lost node
    restart = after[0]
    assert restart["iterations_since_restore"] == 1 and 2 <= restart["epoch"] <= before[-1]["epoch"] + 1
    assert after[-1]["epoch"] == epochs

    client, runs = _trial_runs(url, "node-loss")
    trials = [r for r in runs if r.data.tags.get(ROLE_TAG) == ROLE_TRIAL]
    assert {r.data.tags[TRIAL_TAG] for r in trials} == set(_ray_results(storage / "node-loss-search"))
    assert len(trials) == 2
    (run,) = [r for r in trials if r.data.tags[TRIAL_TAG] == victim]
    assert _epochs(client, run) == list(range(1, epochs + 1))
    assert _epochs(client, run, "train_loss") == list(range(1, epochs + 1))
    assert all(r.data.tags[STATUS_TAG] == "completed" for r in trials)
    from optuna.trial import TrialState

    states = [t.state for t in _optuna_states(f"sqlite:///{workdir.resolve() / 'optuna.db'}", "node-loss")]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE]
