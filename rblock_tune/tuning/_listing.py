"""Every study of a work directory at a glance (``rblock-tune study list``): its state, the trials
and seed runs done, and the best value. Reads ``study.json`` and the study's stores only: no Ray,
and a store that is not there (a sqlite file that was never made) is not created."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

from rblock_tune._stores import check_tracking_uri, sqlite_path
from rblock_tune.errors import ConfigError, RBlockError
from rblock_tune.layout import PHASE_SEARCH, PHASE_SEEDS, RUNNING, STATE_FILE, StudyState
from rblock_tune.tuning._driver import INTERRUPTED, study_state
from rblock_tune.tuning._spec import StudySpec, spec_from_state
from rblock_tune.tuning._workdir import read_state, recorded_url, redact_url

__all__ = ["list_studies"]

log = logging.getLogger(__name__)

SEARCH_DONE = "search done"


def _store_missing(url: str) -> bool:
    """A sqlite URL whose file does not exist (opening it would create an empty store)."""
    path = sqlite_path(url)
    return path is not None and not path.is_file()


def _state_of(state: dict[str, Any]) -> str:
    """What ``study status`` says (running, finished, interrupted), and ``search done`` for an
    interrupted study whose search has finished."""
    said = study_state(cast(StudyState, state))
    if said == INTERRUPTED and state.get("search_done"):
        return f"{INTERRUPTED} ({SEARCH_DONE})"
    return said


def _done(counts: dict[str, int]) -> int:
    return sum(n for status, n in counts.items() if status != RUNNING)


class _Stores:
    """One MLflow client per tracking URI, opened once for the whole list."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}
        self._failed: dict[str, Exception] = {}

    def run_counts(self, uri: str, name: str) -> dict[str, dict[str, int]] | None:
        from mlflow.tracking import MlflowClient

        from rblock_tune.tuning._study import run_counts

        if _store_missing(uri):
            return None
        if uri in self._failed:  # asked once: the next study on the same server does not wait again
            raise self._failed[uri]
        if uri not in self._clients:
            try:
                check_tracking_uri(uri, reading=True, timeout=3.0)  # a reading verb: never creates one
            except ConfigError as exc:
                self._failed[uri] = exc
                raise
            self._clients[uri] = MlflowClient(tracking_uri=uri)
        return run_counts(self._clients[uri], name)


def _optuna_best(name: str, url: str, mode: str) -> tuple[dict[str, int], float | None] | None:
    """The Optuna study's trials by state and its best value so far; None when there is no study."""
    import optuna

    from rblock_tune.tuning._study import optuna_counts

    if _store_missing(url):
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=url)
    except KeyError:
        return None
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    values = [t.value for t in complete if t.value is not None]
    best = (max if mode == "max" else min)(values) if values else None
    return optuna_counts(study), best


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return redact_url(text.splitlines()[0]) if text else type(exc).__name__


def _read(folder: Path) -> tuple[dict[str, Any], StudySpec]:
    """The study's state and spec; ValueError saying why they cannot be read."""
    path = folder / STATE_FILE
    try:
        state: Any = read_state(path)  # checks JSON, keys and types: one line naming the file
    except RBlockError as exc:
        # the row names the study: the reason without its folder and without the fix for resuming
        raise ValueError(str(exc).replace(f" in {folder}", "", 1).split(": restore it", 1)[0]) from None
    try:
        spec = spec_from_state(state, path)
    except RBlockError as exc:
        raise ValueError(f"its spec is not valid ({exc})") from None
    return state, spec


def _one(folder: Path, stores: _Stores) -> dict[str, Any]:
    state, spec = _read(folder)
    row: dict[str, Any] = {
        "name": folder.name,
        "folder": str(folder),
        "state": _state_of(state),
        "metric": spec.metric,
        "mode": spec.mode,
        "planned_trials": None,
        "trials": None,
        "seed_runs": None,
        "best": None,
        "error": None,
    }
    if spec.space and spec.search.algorithm != "grid":
        row["planned_trials"] = spec.search.num_samples
    best = state.get("best") or []
    if state.get("search_done") and best:
        row["best"] = best[0].get(spec.metric)
    tracking = str(state.get("tracking_uri", ""))
    try:
        if tracking:  # with its password, if any
            tracking = recorded_url(cast(StudyState, state), "tracking_uri", folder / STATE_FILE)
        counts = stores.run_counts(tracking, spec.name) if tracking else None
    except Exception as exc:  # noqa: BLE001 - an unreachable or broken store: a note on this row
        shown = (
            _reason(exc)
            if isinstance(exc, ConfigError)
            else f"tracking {redact_url(tracking)}: {_reason(exc)}"
        )
        counts, row["error"] = None, shown
    if counts is not None:
        row["trials"] = _done(counts.get(PHASE_SEARCH, {}))
        row["seed_runs"] = _done(counts.get(PHASE_SEEDS, {}))
    if spec.space and (row["trials"] is None or row["best"] is None) and state.get("optuna_storage"):
        try:
            optuna_url = recorded_url(cast(StudyState, state), "optuna_storage", folder / STATE_FILE)
            optuna_side = _optuna_best(spec.name, optuna_url, spec.mode)
        except Exception as exc:  # noqa: BLE001 - as above: the other studies are still listed
            optuna_side = None
            row["error"] = f"optuna {redact_url(str(state['optuna_storage']))}: {_reason(exc)}"
        if optuna_side is not None:
            by_state, best_so_far = optuna_side
            if row["trials"] is None:
                row["trials"] = sum(n for s, n in by_state.items() if s in ("complete", "pruned", "fail"))
            if row["best"] is None:
                row["best"] = best_so_far
    return row


def list_studies(workdir: str | Path = "rblock_runs") -> list[dict[str, Any]]:
    """Every study of ``workdir`` (each folder holding a ``study.json``), sorted by name.

    Each row: ``name``, ``folder``, ``state`` (``finished``, ``search done``, ``not finished`` or
    ``unreadable: <reason>`` for a study.json that cannot be read), ``metric``, ``mode``, ``trials``
    (search trials done, from MLflow, else from Optuna), ``planned_trials`` (``search.num_samples``;
    None for a grid or no search), ``seed_runs`` (seed runs done), ``best`` (the best search value:
    the recorded one once the search is done, else the best so far) and ``error`` (a store that did
    not answer). A value that is not known is None.

    Raises:
        ConfigError: ``workdir`` does not exist or is not a directory.
    """
    work = Path(workdir).expanduser()
    if not work.exists():
        raise ConfigError(f"work directory {str(work)!r} does not exist: pass the --workdir a study ran in")
    if not work.is_dir():
        raise ConfigError(
            f"work directory {str(work)!r} is not a directory: pass the --workdir a study ran in"
        )
    stores = _Stores()
    rows: list[dict[str, Any]] = []
    try:
        folders = sorted(p for p in work.iterdir() if (p / STATE_FILE).is_file())
    except OSError as exc:
        raise ConfigError(f"work directory {str(work)!r} cannot be read ({exc.strerror or exc})") from None
    for folder in folders:
        try:
            rows.append(_one(folder.resolve(), stores))
        except ValueError as exc:  # one broken study must not hide the others
            rows.append(
                {
                    "name": folder.name,
                    "folder": str(folder.resolve()),
                    "state": f"unreadable: {_reason(exc)}",
                    "metric": None,
                    "mode": None,
                    "planned_trials": None,
                    "trials": None,
                    "seed_runs": None,
                    "best": None,
                    "error": None,
                }
            )
    return rows
