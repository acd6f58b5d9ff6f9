"""A parsed study spec as plain data, every default filled in: what the study saves for readers
(the report) that must not re-apply defaults or re-parse the spec grammar of their own."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from rblock_tune.config import config_to_dict
from rblock_tune.tuning._spec import StudySpec

__all__ = ["spec_record"]


def _plain(value: Any) -> Any:
    """Dataclasses to dicts and tuples to lists, recursively (YAML- and JSON-safe)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value))


def spec_record(spec: StudySpec) -> dict[str, Any]:
    """The normalised spec (see :data:`rblock_tune.layout.NORMALISED_SPEC_ARTIFACT` for its keys)."""
    space = {
        dim.key: {
            "type": dim.type,
            "low": dim.low,
            "high": dim.high,
            "step": dim.step,
            "values": _plain(list(dim.values)),
            "when": {key: _plain(list(values)) for key, values in dim.when},
        }
        for dim in spec.space
    }
    seeds = None
    if spec.seeds is not None:
        seeds = {**_plain(spec.seeds), "epochs": spec.seed_epochs, "race": spec.race_design()}
    return {
        "name": spec.name,
        "metric": spec.metric,
        "mode": spec.mode,
        "base": config_to_dict(spec.base),
        "space": space,
        "search": _plain(spec.search),
        "scheduler": {**_plain(spec.scheduler), "budget": spec.search_epochs},
        "resources": _plain(spec.resources),
        "failures": _plain(spec.failures),
        "seeds": seeds,
        "report": None if spec.report is None else _plain(spec.report),
    }
