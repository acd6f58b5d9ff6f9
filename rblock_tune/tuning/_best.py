"""The best configurations of a finished search as trial config files: ``<workdir>/<study>/best.yaml``
(arm ``top1`` of the seed phase), then ``top2.yaml``..., each one that ``rblock-tune train --config``
takes (file names: :func:`rblock_tune.layout.best_config_file`)."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import yaml

from rblock_tune.config import config_to_dict, with_overrides
from rblock_tune.layout import RAY_TRIAL_ATTR, best_config_file
from rblock_tune.tuning._spec import StudySpec

__all__ = ["top_configs", "top_trials", "write_best_configs"]

log = logging.getLogger(__name__)


def top_trials(study: Any, k: int) -> list[Any]:
    """The ``k`` best COMPLETE trials of Optuna study ``study``, best first (no Ray imported: ``study
    status`` reads it)."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE,)
    done = [t for t in study.get_trials(deepcopy=False, states=states) if t.value is not None]
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    done.sort(key=lambda t: t.value, reverse=reverse)
    return list(itertools.islice(done, k))


def top_configs(study: Any, k: int) -> list[tuple[dict[str, Any], float]]:
    """The ``k`` best COMPLETE trials as (overrides, value), best first."""
    return [(dict(t.params), float(t.value)) for t in top_trials(study, k)]


def _trial_of(study: Any, overrides: dict[str, Any], value: Any) -> Any:
    """The COMPLETE Optuna trial with these parameters and this value (None when there is none)."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if trial.params == overrides and trial.value == value:
            return trial
    return None


def _load_study(spec: StudySpec, optuna_storage: str | None) -> Any:
    if optuna_storage is None:
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=spec.name, storage=optuna_storage)
    except Exception as exc:  # noqa: BLE001 - the files are still written, without the trial numbers
        log.warning("best configs: the Optuna study is not readable (%s); written without trial numbers", exc)
        return None


def write_best_configs(
    spec: StudySpec, folder: Path, best: list[dict[str, Any]], optuna_storage: str | None = None
) -> list[Path]:
    """Write each of ``best`` (``{"overrides": {...}, <metric>: value}``, best first) into ``folder``
    as a full trial config: the spec's base with the overrides, in the normalised form a run
    directory records, under a comment header naming the study, the Optuna trial (looked up in
    ``optuna_storage``) and the metric value. Returns the files written, best first."""
    study = _load_study(spec, optuna_storage)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for rank, entry in enumerate(best, start=1):
        overrides = dict(entry["overrides"])
        value = entry.get(spec.metric)
        config = with_overrides(spec.base, overrides)
        path = folder / best_config_file(rank)
        trial = None if study is None else _trial_of(study, overrides, value)
        where = "" if trial is None else f", Optuna trial {trial.number}"
        ray_id = None if trial is None else trial.user_attrs.get(RAY_TRIAL_ATTR)
        if ray_id:
            where += f" (Ray trial {ray_id})"
        shown = "n/a" if value is None else f"{value:.6g}"
        lines = [
            f"# study {spec.name!r}: search configuration {rank} (seed-phase arm top{rank}){where}",
            f"# {spec.metric} = {shown} ({spec.mode}) in a search trial of {spec.search_epochs} epochs; "
            f"this config trains {config.train.epochs} (base.train.epochs)",
            "# overrides of the study's base: "
            + (", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "none"),
            f"# train it: rblock-tune train --config {path}",
        ]
        body = yaml.safe_dump(config_to_dict(config), sort_keys=False)
        path.write_text("\n".join(lines) + "\n" + body)
        written.append(path)
    for rank in range(len(best) + 1, len(best) + 100):  # a resumed search with fewer results: no stale file
        stale = folder / best_config_file(rank)
        if not stale.exists():
            break
        stale.unlink()
    return written
