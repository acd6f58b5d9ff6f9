"""A racing seed phase's own record (:data:`~rblock_tune.layout.RACE_STATE_FILE`), read without Ray:
what ``study status`` shows of a race. The searcher that writes it: :mod:`rblock_tune.tuning._race`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rblock_tune.errors import CheckpointError
from rblock_tune.racing import UNDECIDED

__all__ = ["RACE_FORMAT", "latest_look", "race_summary", "read_race_state"]

RACE_FORMAT = "rblock-race/1"
"""Format of :data:`~rblock_tune.layout.RACE_STATE_FILE`."""


def read_race_state(path: Path) -> dict[str, Any] | None:
    """A race's record (None when there is none).

    Raises:
        CheckpointError: the file is not a race record of this version.
    """
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable race record ({exc}); restore it from a backup"
        ) from None
    if not isinstance(record, dict) or record.get("format") != RACE_FORMAT:
        found = record.get("format") if isinstance(record, dict) else None
        raise CheckpointError(f"{path}: race record format {found!r}, this rblock-tune reads {RACE_FORMAT!r}")
    return record


def latest_look(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    looks = record.get("looks") or []
    return list(looks[-1]) if looks else []


def race_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """What ``study status`` shows of a race: arms live and decided, seeds used against the fixed
    design's, and whether the race is over."""
    design = record["design"]
    arms = [a for a in record["arms"] if a != design["baseline"]]
    latest = {row["arm"]: row for row in latest_look(record)}
    results = record.get("results", {})
    used = len(record.get("assigned", {}))
    done = sum(len(seeds) for seeds in results.values())
    decided = {
        arm: latest[arm]
        for arm in arms
        if arm in latest and (latest[arm]["decision"] != UNDECIDED or not latest[arm]["live"])
    }
    live = [arm for arm in arms if arm not in decided]
    return {
        "design": design,
        "looks": len(record.get("looks") or []),
        "live": live,
        "decided": {
            arm: {"decision": row["decision"], "n_pairs": row["n_pairs"], "stopped": not row["live"]}
            for arm, row in decided.items()
        },
        "runs_started": used,
        "runs_done": done,
        "fixed_design_runs": len(record["arms"]) * int(design["max_seeds"]),
        "over": bool(record.get("over")),
    }
