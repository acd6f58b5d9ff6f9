"""The racing seed phase's Ray Tune searcher: it hands out (arm, seed) runs on demand, seed-major,
looks after every completed pair (:func:`rblock_tune.racing.race_step`) and finishes when the race
is over.

* Seeds go out in the seed list's order: every live arm, and the baseline while any arm is live,
  gets seed ``s`` before any gets the next one. Up to ``max_concurrent`` runs are out at once; while
  a look is pending, live arms keep receiving their next seeds.
* A run that completes its epochs gives its arm the race metric for its seed; a failed or diverged
  run gives none (no pair at that seed). Each completed result that makes a new (arm, baseline) pair
  triggers a look. An arm decided, or stopped as futile, gets no more seeds; runs it had already been
  handed finish and are recorded, but its decision and interval stay those of the look that decided it.
* The race is over when no arm is live, or every live arm has had all its seeds; then, once the runs
  still out are back, the searcher answers ``FINISHED``.

**Crash safety.** The searcher's own record, :data:`~rblock_tune.layout.RACE_STATE_FILE` in the
study's folder, is rewritten atomically at every change: runs handed out (by Ray trial id), results
and looks. A resumed phase reads it back: results and looks are kept as they are (no decision is
forgotten, no completed seed runs again); a run handed out that Ray's restored experiment does not know
(handed out after Ray's last save) is handed out again under a new trial. Each look is also recorded on
the seeds parent run: the table :data:`~rblock_tune.layout.RACE_LOOKS_ARTIFACT` and the decision tags.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.search import Searcher

from rblock_tune._stores import redact_url, remember, unredact
from rblock_tune.errors import CheckpointError
from rblock_tune.layout import (
    DECISION_TAG_PREFIX,
    RACE_LOOK_COLUMNS,
    RACE_LOOKS_ARTIFACT,
    RACE_TAG,
    race_tag,
)
from rblock_tune.racing import RACE_COLUMNS, UNDECIDED, race_step
from rblock_tune.tuning._race_record import RACE_FORMAT, latest_look, read_race_state
from rblock_tune.tuning._workdir import write_private

__all__ = ["RaceSearcher", "looks_table", "write_looks"]

log = logging.getLogger(__name__)


class RaceSearcher(Searcher):  # type: ignore[misc]
    """Suggests ``{"arm": label, "seed": s}`` until the race is over (module docstring)."""

    def __init__(
        self,
        *,
        design: Mapping[str, Any],
        arms: Sequence[str],
        seeds: Sequence[int],
        epochs: int,
        max_concurrent: int,
        record_file: Path,
        experiment_path: str,
        tracking_uri: str,
        parent_run_id: str,
    ) -> None:
        # no metric for Ray: it would require it in every epoch's result, and test_acc comes with the last
        super().__init__(metric=None, mode=None)
        self._design = dict(design)
        self._baseline = str(design["baseline"])
        self._arms = list(arms)
        self._seeds = [int(s) for s in seeds]
        self._epochs = int(epochs)
        self._max_concurrent = int(max_concurrent)
        self._record_file = str(record_file)
        self._experiment_path = experiment_path
        self._tracking_uri = remember(tracking_uri)
        self._parent = parent_run_id
        self._assigned: dict[str, list[Any]] = {}  # Ray trial id -> [arm, seed]
        self._results: dict[str, dict[str, float | None]] = {}  # arm -> seed (str) -> metric or None
        self._looks: list[list[dict[str, Any]]] = []
        self._over = False
        self._loaded = False  # the record is read on first use: after Ray restored the phase, if it did

    # -------------------------------------------------------------- the record
    def __getstate__(self) -> dict[str, Any]:  # Ray pickles it into tuner.pkl: without the password
        return {**self.__dict__, "_tracking_uri": redact_url(self._tracking_uri)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._tracking_uri = unredact(self._tracking_uri)

    def check_record(self) -> dict[str, Any] | None:
        """The race on record, if any, which must be this phase's (before Ray starts: one line).

        Raises:
            CheckpointError: an unreadable record, or one of other arms or seeds.
        """
        record = read_race_state(Path(self._record_file))
        if record is not None and (record["arms"] != self._arms or record["seeds"] != self._seeds):
            raise CheckpointError(
                f"{self._record_file}: the race on record has arms {record['arms']} and seeds "
                f"{record['seeds']}, this phase {self._arms} and {self._seeds}; the study's seed phase "
                "changed: start a new study"
            )
        return record

    def _load(self, ray_trials: Mapping[str, str]) -> None:
        """Read the record back: results and looks as they are; of the runs handed out without a
        result, only those Ray still holds (``ray_trials``: trial id -> Ray's status) stay out. A run
        that failed and that Ray resumes (``resume_errored``) is out again: its new result counts.
        A result on record that no look has seen yet (a crash in between) gets its look now."""
        record = self.check_record()
        if record is None:
            self._write()
            return
        self._results = {arm: dict(seeds) for arm, seeds in record["results"].items()}
        self._looks = [list(look) for look in record["looks"]]
        self._over = bool(record.get("over"))
        for trial, (arm, seed) in record["assigned"].items():
            if ray_trials.get(trial) == "ERROR" and self._results.get(arm, {}).get(str(seed), 0) is None:
                del self._results[arm][str(seed)]  # Ray runs it again under the same trial id
        self._assigned = {
            trial: list(pair)
            for trial, pair in record["assigned"].items()
            if str(pair[1]) in self._results.get(pair[0], {}) or trial in ray_trials
        }
        if self._unseen_pairs():
            self._look()
        self._write()

    def _unseen_pairs(self) -> bool:
        """Whether a live arm has more pairs on record than its last look saw."""
        latest = {row["arm"]: row for row in latest_look({"looks": self._looks})}
        base = self._results.get(self._baseline, {})
        cap = int(self._design["max_seeds"])
        for arm in self._live():
            mine = self._results.get(arm, {})
            pairs = sum(1 for s, v in mine.items() if v is not None and base.get(s) is not None)
            if min(pairs, cap) > (int(latest[arm]["n_pairs"]) if arm in latest else 0):
                return True
        return False

    def _write(self) -> None:
        record = {
            "format": RACE_FORMAT,
            "design": self._design,
            "arms": self._arms,
            "seeds": self._seeds,
            "assigned": self._assigned,
            "results": self._results,
            "looks": self._looks,
            "over": self._over,
        }
        write_private(Path(self._record_file), json.dumps(record, indent=1) + "\n")

    def save(self, checkpoint_path: str) -> None:
        """Ray's snapshot beside the experiment: only a pointer, the record is the race's own."""
        Path(checkpoint_path).write_text(json.dumps({"format": RACE_FORMAT, "record": self._record_file}))

    def restore(self, checkpoint_path: str) -> None:
        """A resumed phase: the record, reconciled with the trials Ray's saved experiment holds."""
        self._loaded = False
        self._ensure_loaded()

    def ray_trials(self) -> dict[str, str]:
        """The trials of Ray's saved experiment of this phase (trial id -> Ray's status); none when Ray
        has not saved it yet.

        Raises:
            CheckpointError: Ray's saved experiment exists but cannot be read (handing the runs that
                were out again would run their seeds twice).
        """
        folder = Path(self._experiment_path)
        if not any(folder.glob("experiment_state-*.json")):  # Ray's own file name (pinned Ray range)
            return {}
        try:
            return {t.trial_id: str(t.status) for t in tune.ExperimentAnalysis(self._experiment_path).trials}
        except Exception as exc:  # noqa: BLE001 - whatever Ray raises, one line
            raise CheckpointError(
                f"{folder}: Ray's saved experiment of this race cannot be read ({type(exc).__name__}: "
                f"{exc}); restore that folder from a backup, or start a new study"
            ) from None

    def _ensure_loaded(self) -> None:
        """Read the record once, reconciled with the trials Ray's saved experiment holds (none for a
        phase that starts afresh)."""
        if self._loaded:
            return
        self._load(self.ray_trials())
        self._loaded = True

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        return True  # metric and mode come from the race design

    # -------------------------------------------------------------- the race
    def _taken(self) -> set[tuple[str, int]]:
        taken = {(str(a), int(s)) for a, s in self._assigned.values()}
        taken |= {(arm, int(s)) for arm, seeds in self._results.items() for s in seeds}
        return taken

    def _pending(self) -> int:
        return sum(1 for a, s in self._assigned.values() if str(s) not in self._results.get(a, {}))

    def _live(self) -> list[str]:
        """Arms that still get seeds (all of them before the first look)."""
        latest = {row["arm"]: row for row in latest_look({"looks": self._looks})}
        return [a for a in self._arms if a != self._baseline and (a not in latest or latest[a]["live"])]

    def _next(self) -> tuple[str, int] | None:
        live = self._live()
        if not live:
            return None
        taken = self._taken()
        wanted = [self._baseline, *live]
        for seed in self._seeds:
            for arm in wanted:
                if (arm, seed) not in taken:
                    return arm, seed
        return None

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        self._ensure_loaded()
        if trial_id in self._assigned:  # a restored trial asks again
            arm, seed = self._assigned[trial_id]
            return {"arm": arm, "seed": int(seed)}
        if self._pending() >= self._max_concurrent:
            return None
        nxt = None if self._over else self._next()
        if nxt is None:
            if self._pending():
                return None  # the runs still out may change the race
            self._finish()
            return Searcher.FINISHED
        self._assigned[trial_id] = [nxt[0], nxt[1]]
        self._write()
        return {"arm": nxt[0], "seed": nxt[1]}

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        self._ensure_loaded()
        if trial_id not in self._assigned:
            return
        arm, seed = self._assigned[trial_id]
        seeds = self._results.setdefault(arm, {})
        if str(seed) in seeds:  # a run Ray resumed after its result was recorded
            return
        seeds[str(seed)] = self._value(result, error)
        if seeds[str(seed)] is not None and self._pairs_at(arm, str(seed)):
            self._look()  # the result and its look are written together
        else:
            self._write()

    def _value(self, result: Mapping[str, Any] | None, error: bool) -> float | None:
        if error or not result or result.get("diverged") or int(result.get("epoch", 0)) < self._epochs:
            return None
        value = result.get(self._design["metric"])
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    def _pairs_at(self, arm: str, seed: str) -> bool:
        """Whether the result of ``arm`` at ``seed`` completes at least one (arm, baseline) pair."""
        if arm != self._baseline:
            return self._results.get(self._baseline, {}).get(seed) is not None
        return any(self._results.get(a, {}).get(seed) is not None for a in self._arms if a != self._baseline)

    def values(self) -> pd.DataFrame:
        """Every result with a value so far: columns arm, seed, value."""
        rows = [
            {"arm": arm, "seed": int(seed), "value": value}
            for arm, seeds in self._results.items()
            for seed, value in seeds.items()
            if value is not None
        ]
        return pd.DataFrame(rows, columns=["arm", "seed", "value"])

    def _look(self) -> None:
        d = self._design
        previous = pd.DataFrame(self._looks[-1]) if self._looks else None
        table = race_step(
            self.values(),
            baseline=self._baseline,
            alpha=float(d["alpha"]),
            margin=float(d["margin"]),
            max_seeds=int(d["max_seeds"]),
            min_seeds=int(d["min_seeds"]),
            futility=float(d["futility"]),
            statistic=str(d.get("statistic", "t")),
            mode=str(d["mode"]),
            frozen=previous,
            arms=[a for a in self._arms if a != self._baseline],
        )
        rows = [{c: _plain(r[c]) for c in RACE_COLUMNS} for r in table.to_dict("records")]
        self._looks.append(rows)
        if self._next() is None and not self._live():
            self._over = True
        self._write()
        self._record_look()

    def _finish(self) -> None:
        if not self._over:
            self._over = True
            self._write()
        self._record_look(final=True)

    # -------------------------------------------------------------- MLflow
    def _record_look(self, final: bool = False) -> None:
        """The looks table and the decision tags on the seeds parent run (a failure is a warning: the
        race's own record holds everything, and the next look writes it all again)."""
        try:
            client = MlflowClient(tracking_uri=self._tracking_uri)
            write_looks(client, self._parent, self._design, self._looks, final=final)
        except Exception as exc:  # noqa: BLE001 - MLflow being down must not stop the race
            log.warning("the race's look could not be recorded in MLflow: %s", exc)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def looks_table(looks: Sequence[Sequence[Mapping[str, Any]]]) -> pd.DataFrame:
    """Every look of a race as one table (:data:`~rblock_tune.layout.RACE_LOOK_COLUMNS`)."""
    rows = [{"look": i + 1, **row} for i, look in enumerate(looks) for row in look]
    return pd.DataFrame(rows, columns=list(RACE_LOOK_COLUMNS))


def write_looks(
    client: MlflowClient,
    run_id: str,
    design: Mapping[str, Any],
    looks: Sequence[Sequence[Mapping[str, Any]]],
    *,
    final: bool = False,
) -> None:
    """Record a race on its parent run: :data:`RACE_TAG`, the looks table, and
    ``rblock.decision.<arm>`` for every decided arm (every arm once the race is ``final``)."""
    client.set_tag(run_id, RACE_TAG, race_tag(dict(design)))
    folder, name = RACE_LOOKS_ARTIFACT.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        looks_table(looks).to_csv(path, index=False)
        client.log_artifact(run_id, str(path), folder)
    for row in looks[-1] if looks else []:
        if final or row["decision"] != UNDECIDED or not row["live"]:
            client.set_tag(run_id, DECISION_TAG_PREFIX + str(row["arm"]), str(row["decision"]))
