"""A study's places: its work directory, the stores it tracks in, and its state file.

Layout of a work directory (default ``./rblock_runs``)::

    <workdir>/mlflow.db            MLflow tracking (unless --tracking-uri)
    <workdir>/optuna.db            Optuna studies, unless --optuna-storage (optuna-dashboard URL)
    <workdir>/ray/                 Ray Tune results and trial checkpoints (unless --storage)
    <workdir>/<study>/study.json   the study's state (:class:`rblock_tune.layout.StudyState`)
    <workdir>/<study>/spec.yaml    the spec as run
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from rblock_tune._files import ensure_writable_dir
from rblock_tune._stores import check_optuna_url, redact_url
from rblock_tune.errors import CheckpointError, ConfigError
from rblock_tune.layout import STATE_FILE, STATE_FORMAT, StudyState

__all__ = [
    "ARTIFACTS_DIR",
    "MLFLOW_DB",
    "OPTUNA_DB",
    "RAY_DIR",
    "RESERVED_NAMES",
    "StudyPaths",
    "check_address",
    "check_destinations",
    "check_format",
    "check_optuna_storage",
    "write_private",
    "locate_study",
    "read_state",
    "recorded_url",
    "redact_url",
    "resolve_paths",
    "state_path",
    "write_state",
]


MLFLOW_DB = "mlflow.db"
"""The work directory's MLflow store (unless --tracking-uri)."""
OPTUNA_DB = "optuna.db"
"""The work directory's Optuna store (unless --optuna-storage)."""
RAY_DIR = "ray"
"""The work directory's Ray Tune results and checkpoints (unless --storage)."""
ARTIFACTS_DIR = "mlartifacts"
"""The local MLflow store's artifacts."""
_SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")
"""Files SQLite keeps beside a database while it writes."""
RESERVED_NAMES: frozenset[str] = frozenset(
    {RAY_DIR, ARTIFACTS_DIR}
    | {db + side for db in (MLFLOW_DB, OPTUNA_DB) for side in ("", *_SQLITE_SIDE_FILES)}
)
"""Names in a work directory that belong to it, never to a study (``<workdir>/<study>/``)."""


@dataclass(frozen=True)
class StudyPaths:
    """Where a study keeps everything."""

    workdir: Path
    storage: str
    tracking_uri: str
    optuna_storage: str
    address: str | None


def _is_remote_uri(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def resolve_paths(
    workdir: str | Path,
    address: str | None,
    storage: str | None,
    tracking_uri: str | None,
    optuna_storage: str | None = None,
) -> StudyPaths:
    """Defaults and the rules for a remote cluster (one-line errors)."""
    work = Path(workdir).expanduser().resolve()
    tracking = tracking_uri or f"sqlite:///{work / MLFLOW_DB}"
    ray_storage = storage or str(work / RAY_DIR)
    if address and address not in ("local",):
        if tracking.startswith(("sqlite:", "file:")) or "://" not in tracking:
            raise ConfigError(
                f"--address {address} runs trials on other machines, which cannot write the local "
                f"tracking store {tracking}: start an MLflow server and pass --tracking-uri http://HOST:PORT"
            )
        if storage is None:
            raise ConfigError(
                f"--address {address} needs --storage: a path every node sees (NFS) or cloud storage "
                "(s3://...), for Ray's results and checkpoints"
            )
    if not _is_remote_uri(ray_storage):
        ray_storage = str(Path(ray_storage).expanduser().resolve())
    optuna_url = optuna_storage or f"sqlite:///{work / OPTUNA_DB}"
    check_optuna_url(optuna_url, reading=False, creates=work)
    return StudyPaths(work, ray_storage, tracking, optuna_url, address)


ADDRESS_PROBE_TIMEOUT_S = 3.0
"""How long the head node's GCS port has to accept a connection before ``--address`` is refused."""


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")  # + empty SETTINGS


def _expect_http2_settings(conn: socket.socket) -> None:
    """Send the HTTP/2 client preface; a gRPC server answers with a SETTINGS frame (type 4)."""
    conn.sendall(_HTTP2_PREFACE)
    header = b""
    while len(header) < 9:
        chunk = conn.recv(9 - len(header))
        if not chunk:
            raise ConnectionError("it closed the connection: not a Ray head's port")
        header += chunk
    if header[3] != 4:
        raise ConnectionError("it does not speak gRPC: not a Ray head's port")


def check_address(address: str | None) -> None:
    """Refuse, within seconds and with one line, an ``--address HOST:PORT`` where no Ray head answers
    (Ray itself retries for minutes): the port must accept a connection and answer an HTTP/2 (gRPC)
    preface with its SETTINGS frame, as a Ray GCS does, within :data:`ADDRESS_PROBE_TIMEOUT_S`.
    (With ``RAY_USE_TLS`` set only the connection is tried; a ``ray://`` client address likewise.)"""
    if not address:
        return
    target = address.removeprefix("ray://")
    if target in ("auto", "local") or "://" in target:
        return  # "auto": Ray reads the address file and fails at once when there is none
    host, _, port_text = target.rpartition(":")
    if not host:
        host, port_text = target, "10001" if address.startswith("ray://") else "6379"
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"--address {address}: expected HOST:PORT, e.g. 10.0.0.1:6379, or auto") from None
    grpc = not address.startswith("ray://") and os.environ.get("RAY_USE_TLS", "0") in ("", "0")
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=ADDRESS_PROBE_TIMEOUT_S) as conn:
            if grpc:
                _expect_http2_settings(conn)
    except OSError as exc:
        timed_out = isinstance(exc, TimeoutError)
        reason = f"no answer within {ADDRESS_PROBE_TIMEOUT_S:.0f} s" if timed_out else str(exc)
        raise ConfigError(
            f"--address {address}: no Ray head answers there ({reason}); start it with "
            f"'ray start --head --port={port}' or pass the head's HOST:PORT"
        ) from None


def check_destinations(paths: StudyPaths) -> None:
    """The work directory, and Ray's storage when it is a local path, can be written (checked before
    any work; nothing is left behind).

    Raises:
        ConfigError: one of them is a file, lies under a file, or cannot be created or written.
    """
    ensure_writable_dir(paths.workdir, "work directory", keep=False)
    if not _is_remote_uri(paths.storage) and not paths.storage.startswith("file://"):
        ensure_writable_dir(paths.storage, "Ray storage", keep=False)


def check_optuna_storage(url: str) -> None:
    """Fail fast, with one line, when the Optuna storage cannot be opened (before Ray starts)."""
    import sqlalchemy.exc

    from rblock_tune.tuning._optuna_mirror import database_storage

    shown = redact_url(url)
    try:
        database_storage(url)
    except ImportError:  # optuna turns a missing driver (psycopg2, ...) into an ImportError
        raise ConfigError(
            f"optuna storage {shown} needs its database driver, which is not installed: "
            "pip install 'rblock-tune[cluster]' (PostgreSQL), or the driver of that database"
        ) from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(
            f"optuna storage {shown} cannot be opened ({reason}); start the database or pass another "
            "--optuna-storage"
        ) from None


def state_path(workdir: Path, name: str) -> Path:
    """Where study ``name`` of ``workdir`` keeps its state."""
    return workdir / name / STATE_FILE


_STATE_KEYS: dict[str, tuple[type, ...]] = {
    "spec": (dict,),
    "workdir": (str,),
    "storage": (str,),
    "tracking_uri": (str,),
    "optuna_storage": (str,),
}
"""Keys every study state holds, with their JSON types (what resume, status and report read)."""
_OPTIONAL_STATE_KEYS: dict[str, tuple[type, ...]] = {
    "format": (int,),
    "name": (str,),
    "address": (str, type(None)),
    "search_seeds": (dict,),
    "seed_phase_seeds": (list,),
    "search_done": (bool,),
    "seeds_done": (bool,),
    "best": (list,),
    "driver": (dict, type(None)),
}


def read_state(path: Path) -> StudyState:
    """The state in ``path`` (a study's :data:`~rblock_tune.layout.STATE_FILE`).

    Raises:
        CheckpointError: one line naming the file, when it cannot be read, is not JSON, or is not a
            study state (a key missing or of the wrong type).
    """
    folder = path.parent
    what = f"{path.name} in {folder}"
    fix = (
        f"restore it from a copy, or remove {folder} and run the study again (its MLflow runs and "
        "Optuna trials stay in their stores)"
    )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{what} is not a study state (not UTF-8 text): {fix}") from None
    except OSError as exc:
        raise CheckpointError(f"{what} cannot be read ({exc.strerror or exc})") from None
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = "empty" if not text.strip() else f"not valid JSON at line {exc.lineno}, truncated?"
        raise CheckpointError(f"{what} is not a study state ({problem}): {fix}") from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{what} is not a study state (a JSON {type(state).__name__}, not an object): {fix}"
        )
    for key in _STATE_KEYS:
        if key not in state:
            raise CheckpointError(f"{what} is not a study state (missing {key!r}): {fix}")
    for key, types in {**_STATE_KEYS, **_OPTIONAL_STATE_KEYS}.items():
        if key in state and (
            not isinstance(state[key], types) or (bool not in types and isinstance(state[key], bool))
        ):
            raise CheckpointError(
                f"{what} is not a study state ({key!r} is {json.dumps(state[key])[:40]}, not "
                f"{' or '.join(_json_type(t) for t in types)}): {fix}"
            )
    driver = state.get("driver") or {}
    if not isinstance(driver.get("pid", 0), int) or not isinstance(driver.get("host", ""), str):
        raise CheckpointError(
            f"{what} is not a study state ('driver' is {json.dumps(driver)[:60]}, not a pid and host): {fix}"
        )
    return cast(StudyState, state)


def _json_type(tp: type) -> str:
    return {dict: "object", list: "list", str: "string", int: "integer", bool: "boolean"}.get(tp, "null")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 600 (a crash leaves the old file or the new
    one, never half; other users never read it, not even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.chmod(0o600)  # whatever the umask
    tmp.replace(path)


def write_state(path: Path, state: StudyState) -> None:
    """Write ``state`` atomically, mode 600, with every store URL's password redacted
    (:func:`recorded_url` finds it again on resume)."""
    record: dict[str, Any] = dict(state)
    for key in ("tracking_uri", "optuna_storage", "storage"):
        value = record.get(key)
        if isinstance(value, str):
            record[key] = redact_url(value)
    write_private(path, json.dumps(record, indent=2) + "\n")


_ENV_OF = {
    "tracking_uri": "RBLOCK_TRACKING_URI",
    "optuna_storage": "RBLOCK_OPTUNA_STORAGE",
    "storage": "RBLOCK_STORAGE",
}


def recorded_url(state: StudyState, key: str, path: Path) -> str:
    """The store URL ``state[key]`` with its password, which study.json never holds: taken from the
    environment variable the user passes it by (``RBLOCK_TRACKING_URI``, ``RBLOCK_OPTUNA_STORAGE``;
    for an HTTP tracking server MLflow's ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``
    too). A one-line error says which variable to set when none matches."""
    recorded = str(state[key])  # type: ignore[literal-required]
    if "***" not in recorded:  # recorded by redact_url only where there was a password
        return recorded
    env = _ENV_OF[key]
    given = os.environ.get(env)
    if given and redact_url(given) == recorded:
        return given
    if key == "tracking_uri" and recorded.startswith(("http://", "https://")):
        if os.environ.get("MLFLOW_TRACKING_PASSWORD"):
            return re.sub(r"://[^@/]*@", "://", recorded)  # MLflow sends the credentials from the environment
        env += " (or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)"
    raise ConfigError(
        f"{path} records {key} {recorded} without its password (it is never written to disk): set {env} "
        "to that URL with its password"
    )


def check_format(state: StudyState, path: Path, what: str) -> None:
    """Refuse a study state written by an rblock-tune whose seeds and drop rates meant otherwise."""
    if state.get("format") != STATE_FORMAT:
        raise CheckpointError(
            f"{what}: {path} was written by an older rblock-tune (study state format "
            f"{state.get('format', 1)}, this one writes {STATE_FORMAT}), whose seed phase reused the search "
            "seed and whose R-Block drop rates meant the shared mask's; run that study again with this "
            "version"
        )


def locate_study(name_or_dir: str, workdir: str | Path = "rblock_runs") -> Path:
    """The state file of a study given by name (in ``workdir``) or by its directory."""
    candidates = [Path(name_or_dir) / STATE_FILE, Path(workdir) / name_or_dir / STATE_FILE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = ", ".join(str(c) for c in candidates)
    raise CheckpointError(
        f"no study {name_or_dir!r} (looked for {looked}); pass its name with --workdir, or its folder"
    )
