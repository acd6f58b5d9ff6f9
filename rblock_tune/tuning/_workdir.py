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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from rblock_tune._files import ensure_writable_dir
from rblock_tune.errors import CheckpointError, ConfigError
from rblock_tune.layout import STATE_FILE, STATE_FORMAT, StudyState

__all__ = [
    "ARTIFACTS_DIR",
    "MLFLOW_DB",
    "OPTUNA_DB",
    "RAY_DIR",
    "RESERVED_NAMES",
    "StudyPaths",
    "check_destinations",
    "check_format",
    "check_optuna_storage",
    "locate_study",
    "read_state",
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
    if "://" not in optuna_url:
        raise ConfigError(
            f"--optuna-storage {optuna_url!r} is not a database URL: use sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST:5432/optuna"
        )
    return StudyPaths(work, ray_storage, tracking, optuna_url, address)


def check_destinations(paths: StudyPaths) -> None:
    """The work directory, and Ray's storage when it is a local path, can be written (checked before
    any work; nothing is left behind).

    Raises:
        ConfigError: one of them is a file, lies under a file, or cannot be created or written.
    """
    ensure_writable_dir(paths.workdir, "work directory", keep=False)
    if not _is_remote_uri(paths.storage) and not paths.storage.startswith("file://"):
        ensure_writable_dir(paths.storage, "Ray storage", keep=False)


def redact_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part replaced by ``***``."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def check_optuna_storage(url: str) -> None:
    """Fail fast, with one line, when the Optuna storage cannot be opened (before Ray starts)."""
    import optuna
    import sqlalchemy.exc

    shown = redact_url(url)
    try:
        optuna.storages.RDBStorage(url)
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
    return cast(StudyState, state)


def _json_type(tp: type) -> str:
    return {dict: "object", list: "list", str: "string", int: "integer", bool: "boolean"}.get(tp, "null")


def write_state(path: Path, state: StudyState) -> None:
    """Write ``state`` atomically (a crash leaves the old state or the new one, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


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
