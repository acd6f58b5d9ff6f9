"""The seed phase's plan: its arms (``top1..topK`` and the spec's, ``from_study`` resolved) and its
seeds, disjoint from every seed a search trial that selected an arm ran with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rblock_tune.config import flatten_config, with_overrides
from rblock_tune.errors import ConfigError
from rblock_tune.layout import StudyState
from rblock_tune.tuning._spec import StudySpec, search_seeds, spec_from_state
from rblock_tune.tuning._workdir import check_format, read_state, state_path

__all__ = ["build_arms", "plan_seeds", "resolve_arms"]

_LOCAL_KEYS = frozenset({"seed", "data.root", "data.cache_dir", "train.device", "train.epochs"})
"""Keys a ``from_study`` arm does not take from the other study: where and how long it ran."""


def _other_study(workdir: Path, label: str, name: str) -> tuple[StudySpec, StudyState]:
    """The spec and state of another study of the same workdir, for a ``from_study`` arm."""
    other = state_path(workdir, name)
    if not other.is_file():
        raise ConfigError(
            f"seeds arm {label!r}: from_study {name!r} has no state at {other}; "
            "run that study first in the same --workdir"
        )
    state = read_state(other)
    check_format(state, other, f"seeds arm {label!r}: from_study {name!r}")
    return spec_from_state(state, other), state


def resolve_arms(spec: StudySpec, workdir: Path) -> dict[str, dict[str, Any]]:
    """The spec's own seed-phase arms (label -> overrides of the base), ``from_study`` resolved.

    A ``from_study`` arm takes the whole winning configuration of that study (its base plus
    its best trial's parameters, as overrides of this study's base, apart from where and how
    long it ran), then the arm's own ``set``.

    Raises:
        ConfigError: a ``from_study`` study that has not run (or has no completed trial) in
            ``workdir``, or an arm that makes no valid config.
    """
    assert spec.seeds is not None
    arms: dict[str, dict[str, Any]] = {}
    for arm in spec.seeds.arms:
        overrides = dict(arm.overrides)
        if arm.from_study is not None:
            other_spec, other_state = _other_study(workdir, arm.label, arm.from_study)
            other_best = other_state.get("best") or []
            if not other_best:
                raise ConfigError(f"seeds arm {arm.label!r}: study {arm.from_study!r} has no completed trial")
            winner = flatten_config(with_overrides(other_spec.base, other_best[0]["overrides"]))
            mine = flatten_config(spec.base)
            carried = {k: v for k, v in winner.items() if v != mine[k] and k not in _LOCAL_KEYS}
            overrides = {**carried, **overrides}
        arms[arm.label] = overrides
    for overrides in arms.values():  # every arm must make a valid config, for the seed phase's epochs
        with_overrides(spec.base, {**overrides, "train.epochs": spec.seed_epochs})
    return arms


def build_arms(spec: StudySpec, workdir: Path, best: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Seed-phase arms: ``top1..topK`` from the search, then the spec's arms (:func:`resolve_arms`)."""
    assert spec.seeds is not None
    arms: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(best[: spec.seeds.top_k]):
        arms[f"top{i + 1}"] = dict(entry["overrides"])
    arms.update(resolve_arms(spec, workdir))
    return arms


def plan_seeds(spec: StudySpec, workdir: Path) -> dict[str, Any]:
    """The seeds of each phase, fixed before any trial runs.

    Returns:
        ``{"search_seeds": {study: [seeds its search trials ran with]}, "seeds": [seed-phase
        seeds]}``; ``search_seeds`` names this study and every ``from_study`` study, since those
        searches selected arms of this seed phase too. By default the seed-phase seeds start after
        the largest of them; explicit ``seeds.seeds`` that reuse one are refused unless
        ``seeds.allow_search_seeds`` is set.

    Raises:
        ConfigError: a ``from_study`` study is missing, or explicit seeds reuse a search seed.
    """
    used: dict[str, list[int]] = {spec.name: search_seeds(spec)}
    if spec.seeds is None:
        return {"search_seeds": used, "seeds": []}
    resolve_arms(spec, workdir)  # a missing from_study study stops the study here, not after its search
    for arm in spec.seeds.arms:
        if arm.from_study is not None and arm.from_study not in used:
            other_spec, _ = _other_study(workdir, arm.label, arm.from_study)
            used[arm.from_study] = search_seeds(other_spec)
            spec.seeds.check_disjoint(used[arm.from_study], f"study {arm.from_study!r}'s search trials")
    every = sorted({seed for seeds in used.values() for seed in seeds})
    return {"search_seeds": used, "seeds": spec.seeds.seed_list(every)}
