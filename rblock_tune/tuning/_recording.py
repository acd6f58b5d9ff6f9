"""A recorded study: every search trial's configuration and per-epoch learning curves, in one file.

This module owns the file format (:data:`RECORDING_FORMAT`, JSON) and what can be read off it: the
points, the grid's best, and where a suggested configuration lands (:meth:`Recording.snap`). The
writing side, from a finished study's stores, is :func:`rblock_tune.tuning._export.export_study`; the
replay of search strategies against it is :mod:`rblock_tune.tuning._replay`.

A point's ``curves`` hold one value per epoch it ran (``None`` where an epoch lacks that metric, e.g.
``test_acc`` when it was measured after the last epoch only); ``epochs`` is how many epochs it ran, the
study's budget for a trial that ran to the end.

Replicates: the same grid recorded from several trial seeds (one study per ``base.seed``; a search never
searches the seed) is merged into one recording by :func:`merge_recordings`, each point keeping its
``seed``. A configuration's value is then its mean over its replicates (:meth:`Recording.truth`), which
ranks the grid (:meth:`Recording.best`), while :meth:`Recording.snap` hands a replayed trial one
replicate's curves, as a real search trains one seed of each configuration it tries.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rblock_tune.errors import ConfigError
from rblock_tune.layout import COMPLETED, FINAL_METRIC

__all__ = [
    "CURVE_METRICS",
    "RECORDING_FORMAT",
    "RecordedPoint",
    "Recording",
    "load_recording",
    "merge_recordings",
]

RECORDING_FORMAT = "rblock-recording/1"
"""The ``format`` field of a recording file."""

CURVE_METRICS: tuple[str, ...] = (
    "val_acc",
    "val_loss",
    "train_loss",
    "train_acc",
    "epoch_seconds",
    FINAL_METRIC,
)
"""The per-epoch metrics a recording keeps of each trial (a study's ``metric`` is added when it is
another one)."""


@dataclass(frozen=True)
class RecordedPoint:
    """One recorded trial: its searched values, how it ended and its learning curves.

    Attributes:
        params: dotted key -> value of the searched dimensions (the Optuna trial's params).
        status: the trial run's ``rblock.status`` (``completed``, ``early_stopped``, ...).
        epochs: how many epochs it ran.
        curves: metric -> one value per epoch (index 0 is epoch 1); ``None`` where not measured.
        trial: its Optuna trial number in the recorded study.
        run_id: its MLflow run.
        seed: the trial's seed (``base.seed`` of its study); None in recordings made before seeds were
            kept, which :func:`merge_recordings` reads as their spec's ``base.seed``.
    """

    params: dict[str, Any]
    status: str
    epochs: int
    curves: dict[str, list[float | None]]
    trial: int | None = None
    run_id: str | None = None
    seed: int | None = None

    def value(self, metric: str, epoch: int) -> float | None:
        """``metric`` after ``epoch`` (1-based), or None when it was not measured."""
        values = self.curves.get(metric, [])
        return values[epoch - 1] if 1 <= epoch <= len(values) else None

    def final(self, metric: str) -> float | None:
        """``metric`` after the last epoch this point ran."""
        return self.value(metric, self.epochs)

    def seconds(self, epoch: int) -> float:
        """The recorded wall time of ``epoch`` (0 when it was not recorded)."""
        value = self.value("epoch_seconds", epoch)
        return 0.0 if value is None else float(value)


@dataclass(frozen=True)
class Recording:
    """A recorded study (:data:`RECORDING_FORMAT`).

    Attributes:
        study: the study's name.
        metric: the metric it optimised; ``mode``: ``max`` or ``min``.
        budget: epochs of a whole trial.
        spec: the study's spec as run (a mapping :func:`~rblock_tune.tuning.spec_from_dict` reads).
        points: the recorded trials, in the study's trial order.
        code: the code that recorded it (rblock-tune version, git commit when known).
        meta: anything else about the recording (when, where, how long it took).
    """

    study: str
    metric: str
    mode: str
    budget: int
    spec: dict[str, Any]
    points: tuple[RecordedPoint, ...]
    code: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ reading
    @property
    def keys(self) -> tuple[str, ...]:
        """The searched keys, in the spec's order."""
        space = self.spec.get("space") or {}
        keys = [k for k in space if any(k in p.params for p in self.points)]
        return tuple(keys)

    def complete(self) -> list[RecordedPoint]:
        """The points that ran the whole budget and have the metric at its end."""
        return [p for p in self.points if p.epochs >= self.budget and _finite(p.final(self.metric))]

    def values(self, key: str) -> list[Any]:
        """The distinct recorded values of ``key``, sorted (numbers by value)."""
        seen: list[Any] = []
        for point in self.points:
            value = point.params.get(key)
            if value is not None and not any(_same(value, v) for v in seen):
                seen.append(value)
        return sorted(seen, key=lambda v: (not _is_number(v), v if _is_number(v) else str(v)))

    def seed_of(self, point: RecordedPoint) -> int:
        """The seed ``point`` was trained from: its own, else its spec's ``base.seed`` (a recording made
        before points kept their seed)."""
        return _base_seed(self.spec) if point.seed is None else point.seed

    def seeds(self) -> tuple[int, ...]:
        """The distinct seeds the points were trained from, in recorded order (one for a recording of
        one study)."""
        return tuple(dict.fromkeys(self.seed_of(p) for p in self.points))

    def configurations(self) -> list[RecordedPoint]:
        """One point of each distinct configuration, the first recorded, in recorded order."""
        out: list[RecordedPoint] = []
        for point in self.points:
            if not any(self._same_config(q.params, point.params) for q in out):
                out.append(point)
        return out

    def replicates(self, point: RecordedPoint) -> list[RecordedPoint]:
        """The complete points of ``point``'s configuration (its replicates over seeds; itself alone in a
        recording of one seed), in recorded order."""
        return [p for p in self.complete() if self._same_config(p.params, point.params)]

    def truth(
        self, point: RecordedPoint, metric: str | None = None, seeds: Iterable[int] | None = None
    ) -> float | None:
        """``metric`` (default: the study's) of ``point``'s configuration after the whole budget: the
        mean over its replicates of ``seeds`` (default: every seed of the recording). None unless every
        one of those seeds ran it to the end and measured it: a configuration that failed on a seed is
        not worth its lucky seeds."""
        wanted = self.seeds() if seeds is None else tuple(seeds)
        by_seed = {self.seed_of(p): p.final(metric or self.metric) for p in self.replicates(point)}
        values = [by_seed.get(seed) for seed in wanted]
        if not values or any(v is None or not math.isfinite(v) for v in values):
            return None
        return sum(values) / len(values)  # type: ignore[arg-type]

    def best(self) -> RecordedPoint:
        """A complete point of the configuration with the best :meth:`truth` (the first recorded among
        equals; with one seed, the point with the best final metric)."""
        scored = [(p, self.truth(p)) for p in self.complete()]
        scored = [(p, v) for p, v in scored if v is not None]
        if not scored:
            raise ConfigError(
                f"recording of study {self.study!r} has no configuration that ran all {self.budget} epochs "
                "on every seed: record a study whose trials run to the end (a grid with scheduler.type: fifo)"
            )
        sign = 1.0 if self.mode == "max" else -1.0
        return max(scored, key=lambda pv: sign * pv[1])[0]  # type: ignore[operator]

    def grid_epochs(self) -> int:
        """Epochs one pass over the recording spent: one seed's (:meth:`total_epochs` over the seeds)."""
        return round(self.total_epochs() / len(self.seeds()))

    def total_epochs(self) -> int:
        """Epochs the recorded study spent."""
        return sum(p.epochs for p in self.points)

    def total_seconds(self) -> float:
        """Recorded seconds of training the study spent (the sum of its epoch times)."""
        return sum(p.seconds(e) for p in self.points for e in range(1, p.epochs + 1))

    def snap(self, config: Mapping[str, Any], seed: int | None = None) -> RecordedPoint:
        """The recorded point a suggested configuration lands on (trained from ``seed``, default: the
        recording's first).

        Each searched key is moved to its nearest recorded value (a categorical one must match; a
        number moves on a log scale for :meth:`log_keys`, else linearly), then the complete point of
        that seed with exactly those values is returned; a recording that is not a full grid gives the
        nearest complete point of that seed instead (distance: the sum over keys of the distance in
        grid steps).
        """
        seed = self.seeds()[0] if seed is None else seed
        complete = [p for p in self.complete() if self.seed_of(p) == seed]
        if not complete:
            if seed not in self.seeds():
                raise ConfigError(
                    f"recording of study {self.study!r} has no seed {seed}: it has {self.seeds()}"
                )
            return self.best()  # raises the one-line error when nothing is complete
        target = {key: self._nearest(key, config.get(key)) for key in self.keys}
        found = next((p for p in complete if self._same_config(p.params, target)), None)
        return found or min(complete, key=lambda p: self._distance(p.params, target))

    def _same_config(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        return all(_same(a.get(k), b.get(k)) for k in self.keys)

    # ------------------------------------------------------------------ snapping
    def log_keys(self) -> set[str]:
        """Numeric keys of 3 or more positive values evenly spaced on a log scale (within 25%), and more
        so than on a linear one: :meth:`snap` and :meth:`search_space` read them as logs."""
        out = set()
        for key in self.keys:
            values = self.values(key)
            if len(values) >= 3 and all(_is_number(v) and v > 0 for v in values):
                logs = _steps([math.log(float(v)) for v in values])
                if _spread(logs) < min(0.25, _spread(_steps(values))):
                    out.add(key)
        return out

    def _scale(self, key: str, value: float) -> float:
        return math.log(value) if key in self.log_keys() and value > 0 else value

    def _nearest(self, key: str, value: Any) -> Any:
        values = self.values(key)
        if value is None or not values:
            return value
        if not _is_number(value) or not all(_is_number(v) for v in values):
            return next((v for v in values if _same(v, value)), value)
        x = self._scale(key, float(value))
        return min(values, key=lambda v: abs(self._scale(key, float(v)) - x))

    def _distance(self, params: Mapping[str, Any], target: Mapping[str, Any]) -> float:
        total = 0.0
        for key, value in target.items():
            values = self.values(key)
            have = params.get(key)
            index = {i for i, v in enumerate(values) if _same(v, have)}
            want = {i for i, v in enumerate(values) if _same(v, value)}
            total += min((abs(a - b) for a in index for b in want), default=len(values))
        return total

    def search_space(self) -> dict[str, dict[str, Any]]:
        """A continuous search space over the recorded values, for a replayed search to sample from.

        A numeric key with 3 or more evenly spaced values (on a log scale for :meth:`log_keys`)
        becomes a range reaching half a step beyond its end values, so every recorded value owns an
        equal share of it after :meth:`snap`; every other key stays categorical over its values.
        """
        space: dict[str, dict[str, Any]] = {}
        logs = self.log_keys()
        for key in self.keys:
            values = self.values(key)
            numeric = len(values) >= 3 and all(_is_number(v) and not isinstance(v, int) for v in values)
            if numeric and (key in logs or _spread(_steps(values)) < 0.01):
                if key in logs:
                    ratio = math.exp((math.log(values[-1]) - math.log(values[0])) / (len(values) - 1))
                    half = math.sqrt(ratio)
                    space[key] = {
                        "type": "loguniform",
                        "low": _round(values[0] / half),
                        "high": _round(values[-1] * half),
                    }
                else:
                    half = (values[-1] - values[0]) / (len(values) - 1) / 2
                    space[key] = {
                        "type": "uniform",
                        "low": _round(values[0] - half),
                        "high": _round(values[-1] + half),
                    }
            else:
                space[key] = {"type": "categorical", "values": list(values)}
        return space

    # ------------------------------------------------------------------ the file
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RECORDING_FORMAT,
            "study": self.study,
            "metric": self.metric,
            "mode": self.mode,
            "budget": self.budget,
            "code": self.code,
            "meta": self.meta,
            "spec": self.spec,
            "points": [
                {
                    "trial": p.trial,
                    "run_id": p.run_id,
                    "params": p.params,
                    "status": p.status,
                    "epochs": p.epochs,
                    "curves": p.curves,
                    **({} if p.seed is None else {"seed": p.seed}),
                }
                for p in self.points
            ],
        }

    def save(self, path: str | Path) -> Path:
        """Write the recording as JSON (one point per line, so a diff of two recordings reads)."""
        data = self.to_dict()
        points = data.pop("points")
        head = json.dumps(data, indent=1, allow_nan=False)[:-2]  # without the closing brace
        lines = ",\n".join("  " + json.dumps(p, allow_nan=False) for p in points)
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        try:
            tmp.write_text(f'{head},\n "points": [\n{lines}\n ]\n}}\n')
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)  # gone after the move; left only by a failed write
        return out


def load_recording(path: str | Path) -> Recording:
    """Read a recording file; one line saying what is wrong when it is not one."""
    where = Path(path)
    try:
        raw = json.loads(where.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such recording (make one with `rblock-tune study export`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{where}: not a readable recording ({exc})") from None
    return recording_from_dict(raw, str(where))


def recording_from_dict(raw: Any, where: str = "recording") -> Recording:
    """A :class:`Recording` from its JSON form, checked field by field."""
    if not isinstance(raw, Mapping) or raw.get("format") != RECORDING_FORMAT:
        got = raw.get("format") if isinstance(raw, Mapping) else type(raw).__name__
        raise ConfigError(f"{where}: format {got!r}, this rblock-tune reads {RECORDING_FORMAT!r}")
    try:
        points = tuple(_point(p) for p in raw["points"])
        recording = Recording(
            study=str(raw["study"]),
            metric=str(raw["metric"]),
            mode=str(raw["mode"]),
            budget=int(raw["budget"]),
            spec=dict(raw["spec"]),
            points=points,
            code=dict(raw.get("code") or {}),
            meta=dict(raw.get("meta") or {}),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{where}: a recording field is missing or malformed ({exc!r})") from None
    _check_base_seed(recording.spec, where)
    if recording.mode not in ("max", "min") or recording.budget < 1 or not points:
        raise ConfigError(f"{where}: needs mode max or min, a budget >= 1 and at least one point")
    return recording


def merge_recordings(recordings: Sequence[Recording]) -> Recording:
    """Replicates of one grid (the same spec but for its name and ``base.seed``) as one recording whose
    points keep their seeds; one recording is returned as it is.

    Raises:
        ConfigError: the recordings are not of one grid, or two were trained from the same seed.
    """
    if not recordings:
        raise ConfigError("no recording to merge: pass at least one")
    if len(recordings) == 1:
        return recordings[0]
    first = recordings[0]
    points: list[RecordedPoint] = []
    seen: dict[int, int] = {}  # seed -> the recording that trained from it
    for index, rec in enumerate(recordings):
        for field_name in ("metric", "mode", "budget"):
            if getattr(rec, field_name) != getattr(first, field_name):
                raise ConfigError(
                    f"recordings {first.study!r} and {rec.study!r} are not replicates of one grid: their "
                    f"{field_name} differs ({getattr(first, field_name)!r}, {getattr(rec, field_name)!r})"
                )
        differ = _spec_difference(first.spec, rec.spec)
        if differ:
            raise ConfigError(
                f"recordings {first.study!r} and {rec.study!r} are not replicates of one grid: their specs "
                f"differ in {differ} (replicates differ only in name and base.seed)"
            )
        default = _base_seed(rec.spec)
        if index and _config_list(rec) != _config_list(first):
            missing = sorted(set(_config_list(first)) ^ set(_config_list(rec)))
            raise ConfigError(
                f"recordings {first.study!r} and {rec.study!r} are not replicates of one grid: they hold "
                f"other configurations ({missing[0]} is in one only); replicates hold the same points"
            )
        for point in rec.points:
            if point.seed is not None and point.seed != default:
                raise ConfigError(
                    f"recording {rec.study!r}: trial {point.trial} says seed {point.seed} but its spec's "
                    f"base.seed is {default}; a search trains every trial from base.seed"
                )
            seed = default
            if seen.setdefault(seed, index) != index:
                raise ConfigError(
                    f"recordings {recordings[seen[seed]].study!r} and {rec.study!r} were both trained from "
                    f"seed {seed}: replicates need different base.seed values"
                )
            points.append(replace(point, seed=seed))
    meta = {
        "replicates": [
            {"study": r.study, "seed": _base_seed(r.spec), "code": r.code, "meta": r.meta} for r in recordings
        ]
    }
    return replace(first, points=tuple(points), meta=meta)


def _base_seed(spec: Mapping[str, Any]) -> int:
    """The trial seed a recorded spec trained from (rblock-tune's default 0 when it sets none;
    :func:`recording_from_dict` has checked it)."""
    base = spec.get("base") or {}
    return int(base.get("seed", 0)) if isinstance(base, Mapping) else 0


def _check_base_seed(spec: Mapping[str, Any], where: str) -> None:
    base = spec.get("base")
    seed = base.get("seed", 0) if isinstance(base, Mapping) else 0
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{where}: spec.base.seed is {seed!r}; a trial seed is an integer >= 0")


def _config_list(rec: Recording) -> list[str]:
    """Every point's configuration, as sorted text (a multiset: a grid's points, each once)."""
    return sorted(json.dumps(p.params, sort_keys=True) for p in rec.points)


_REPLICATE_FREE = ("name", "base.seed", "resources.", "failures.", "seeds.", "report.")
"""Spec keys replicates may differ in: the name and trial seed, and what does not shape a search
trial's curves (where it ran, retries, the seed phase and report a replay drops)."""


def _spec_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    """The first dotted key (other than :data:`_REPLICATE_FREE`) in which two specs differ, or ''."""

    def flat(value: Any, prefix: str) -> dict[str, Any]:
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for k, v in value.items():
                out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
            return out
        return {prefix: value}

    fa, fb = flat(a, ""), flat(b, "")
    for key in sorted(set(fa) | set(fb)):
        if key in _REPLICATE_FREE or key.startswith(tuple(k for k in _REPLICATE_FREE if k.endswith("."))):
            continue
        if key not in fa or key not in fb or fa[key] != fb[key]:
            return key
    return ""


def _seed_field(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"a point's seed is {value!r}, not an integer >= 0")
    return value


def _point(raw: Mapping[str, Any]) -> RecordedPoint:
    curves = {str(k): [None if v is None else float(v) for v in vs] for k, vs in raw["curves"].items()}
    return RecordedPoint(
        params=dict(raw["params"]),
        status=str(raw.get("status", COMPLETED)),
        epochs=int(raw["epochs"]),
        curves=curves,
        trial=None if raw.get("trial") is None else int(raw["trial"]),
        run_id=raw.get("run_id"),
        seed=_seed_field(raw.get("seed")),
    )


def _round(value: float) -> float:
    """``value`` to 12 significant digits (no 6.9e-18 for a range that starts at 0)."""
    return float(f"{value:.12g}") if abs(value) > 1e-12 else 0.0


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b) and type(a) is type(b)


def _steps(values: Sequence[float]) -> list[float]:
    return [float(b) - float(a) for a, b in itertools.pairwise(values)]


def _spread(steps: Iterable[float]) -> float:
    """Relative spread of a list of steps (0 when they are equal)."""
    steps = list(steps)
    if not steps:
        return 0.0
    mean = sum(steps) / len(steps)
    return (max(steps) - min(steps)) / abs(mean) if mean else math.inf
