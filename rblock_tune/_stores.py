"""The stores a study talks to, checked before any work: the MLflow tracking URI and the Optuna storage.

One owner for "is this URI usable": every verb (``study run|resume|status``, ``report``) asks here
first, so a garbage URI, a typo'd sqlite path or a dead server ends as one line within seconds.
A *reading* verb (``study status``, ``report``) never creates a store: a sqlite file that does not
exist, or is not an MLflow (Optuna) database, is refused instead of being created empty.
Every URI shown in a message is :func:`redact_url`'d.
"""

from __future__ import annotations

import base64
import os
import re
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from rblock_tune.errors import ConfigError

__all__ = [
    "HEALTH_TIMEOUT_S",
    "check_optuna_url",
    "check_tracking_uri",
    "check_tracking_server",
    "redact_url",
    "remember",
    "sqlite_path",
    "unredact",
]

HEALTH_TIMEOUT_S = 5.0
"""How long a tracking server has to answer ``/health``."""

TRACKING_SCHEMES = ("sqlite", "http", "https", "file", "databricks", "postgresql", "mysql", "mssql")
"""The schemes of an MLflow tracking URI this tool accepts (database ones with a ``+driver`` suffix too)."""

_TRACKING_HINT = "use sqlite:///PATH/mlflow.db or http://HOST:5000"


def redact_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part, and any ``password=`` query value,
    replaced by ``***``."""
    url = re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)
    return re.sub(r"(?i)([?&](?:password|passwd|pwd)=)[^&]*", r"\1***", url)


def without_userinfo(url: str) -> str:
    """``url`` without its ``user[:password]@`` part: a link for a browser, which asks for the
    credentials itself (a ``user:***@`` link would not open)."""
    return re.sub(r"://[^/@]*@", "://", url, count=1)


_FULL: dict[str, str] = {}


def remember(url: str) -> str:
    """Note ``url``'s password in this process, so that :func:`unredact` can put it back into an
    object that was pickled with the redacted URL (Ray's tuner.pkl); returns ``url``."""
    _FULL[redact_url(url)] = url
    return url


def unredact(url: str) -> str:
    """``url`` with the password :func:`remember` noted for it (``url`` itself when none)."""
    return _FULL.get(url, url)


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URI (None for another scheme or an in-memory database)."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:") :]
    if not rest.startswith("///"):
        return None
    path = rest[3:].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def _tables(path: Path) -> set[str]:
    """The tables of sqlite file ``path``, opened read-only (an empty set for a non-sqlite file)."""
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = con.execute("select name from sqlite_master where type = 'table'").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return set()
    return {str(r[0]) for r in rows}


def _check_sqlite(
    uri: str, what: str, flag: str, *, reading: bool, tables: set[str], creates: Path | None
) -> None:
    path = sqlite_path(uri)
    if path is None:
        return
    shown = redact_url(uri)
    if reading:
        if not path.is_file():
            raise ConfigError(
                f"no {what} at {shown} ({path} does not exist); pass {flag} where the study tracked, "
                "or --workdir"
            )
        if not tables <= _tables(path):
            raise ConfigError(
                f"no {what} at {shown} ({path} is not one); pass {flag} where the study tracked"
            )
        return
    if path.is_dir():
        raise ConfigError(f"{flag} {shown}: {path} is a directory; name a file in it, e.g. {path}/mlflow.db")
    parent = path.parent
    if creates is not None and parent.resolve() == creates.resolve():
        return  # the caller's work directory, which it creates (and checks) itself
    if not parent.exists():
        raise ConfigError(
            f"{flag} {shown}: the directory {parent} does not exist; create it or pass another {flag}"
        )
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{flag} {shown}: the directory {parent} is not writable; pass another {flag}")


def check_tracking_server(uri: str, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """Fail with one line when an HTTP(S) tracking server does not answer ``/health`` within ``timeout``."""
    if not uri.startswith(("http://", "https://")):
        return
    shown = redact_url(uri)
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6
        netloc = f"[{netloc}]"
    try:
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError:
        raise ConfigError(f"--tracking-uri {shown} has a bad port; {_TRACKING_HINT}") from None
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    request = urllib.request.Request(url)
    user = parts.username or os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = parts.password or os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        token = base64.b64encode(f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode())
        request.add_header("Authorization", "Basic " + token.decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(
            f"tracking server {shown} is unreachable ({reason}); start it (mlflow server ...) or pass "
            "another --tracking-uri"
        ) from None
    if status >= 400:
        raise ConfigError(
            f"tracking server {shown} answered HTTP {status} on /health; is it an MLflow server?"
        )


def check_tracking_uri(
    uri: str, *, reading: bool, creates: Path | None = None, timeout: float = HEALTH_TIMEOUT_S
) -> None:
    """Fail with one line, before any work, when MLflow tracking URI ``uri`` cannot be used.

    Refused: no scheme or an unknown one; a sqlite file whose directory does not exist (writing) or
    that does not exist or is not an MLflow store (``reading``: status and report never create one);
    an HTTP(S) server that does not answer ``/health`` within ``timeout`` seconds. ``creates``: a
    directory the caller is about to create (a study's work directory), where a new store may go.
    """
    shown = redact_url(uri)
    scheme = _scheme(uri)
    if not scheme:
        raise ConfigError(f"--tracking-uri {shown!r} is not a tracking URI (no scheme): {_TRACKING_HINT}")
    if scheme not in TRACKING_SCHEMES:
        raise ConfigError(f"--tracking-uri {shown}: unknown scheme {scheme!r}: {_TRACKING_HINT}")
    if scheme == "sqlite":
        if sqlite_path(uri) is None:
            raise ConfigError(f"--tracking-uri {shown} names no file: {_TRACKING_HINT}")
        _check_sqlite(
            uri, "MLflow store", "--tracking-uri", reading=reading, tables={"experiments"}, creates=creates
        )
    elif scheme == "file" and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
        # MLflow 3 refuses its file store (maintenance mode) only once the store is first opened: here
        raise ConfigError(
            f"--tracking-uri {shown}: MLflow's file store is in maintenance mode and refused by this "
            f"MLflow: {_TRACKING_HINT} (or set MLFLOW_ALLOW_FILE_STORE=true to use it anyway)"
        )
    if scheme == "file" and reading:
        path = Path(urllib.parse.urlsplit(uri).path)
        if not path.is_dir():
            raise ConfigError(f"no MLflow store at {shown} ({path} is not a directory); pass --tracking-uri")
    check_tracking_server(uri, timeout)


def check_optuna_url(url: str, *, reading: bool, creates: Path | None = None) -> None:
    """Fail with one line when Optuna storage ``url`` is not a database URL, or (``reading``) names a
    sqlite file that does not exist or holds no Optuna studies; opening it is the caller's next step."""
    shown = redact_url(url)
    if "://" not in url:
        raise ConfigError(
            f"--optuna-storage {shown!r} is not a database URL: use sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST:5432/optuna"
        )
    if url.startswith("sqlite:"):
        if sqlite_path(url) is None:
            raise ConfigError(f"--optuna-storage {shown} names no file: use sqlite:///PATH/optuna.db")
        _check_sqlite(
            url, "Optuna storage", "--optuna-storage", reading=reading, tables={"studies"}, creates=creates
        )
