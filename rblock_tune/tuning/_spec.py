"""The study spec: one YAML file describing a whole experiment protocol.

It is validated completely before Ray starts; every problem is one line that names the
dotted key (``space.reg.alpha.low``, ``search.num_samples``, ...). See docs/studies.md
for the format.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rblock_tune.config import (
    VARIANTS,
    TrialConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    flatten_config,
    parse_override,
    read_yaml,
    valid_keys,
)
from rblock_tune.errors import ConfigError

__all__ = [
    "DIMENSION_TYPES",
    "REPORTED_METRICS",
    "Arm",
    "Dimension",
    "FailureSpec",
    "ReportSpec",
    "ResourceSpec",
    "SchedulerSpec",
    "SearchSpec",
    "SeedSpec",
    "StudySpec",
    "load_study_spec",
    "search_seeds",
    "spec_from_dict",
]

log = logging.getLogger(__name__)

DIMENSION_TYPES = ("uniform", "loguniform", "int", "categorical")
REPORTED_METRICS: dict[str, str] = {
    "val_acc": "max",
    "val_loss": "min",
    "train_acc": "max",
    "train_loss": "min",
    "train_ce": "min",
    "consistency_kl_own": "min",
    "consistency_kl_probe": "min",
}
"""Per-epoch metrics a study may optimise, with their natural direction."""

_NEEDS_VALIDATION = ("val_", "consistency_")
"""Prefixes of the metrics measured on the validation split (absent when ``data.val_size`` is 0)."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_TOP_KEYS = (
    "name",
    "base",
    "metric",
    "mode",
    "space",
    "search",
    "scheduler",
    "resources",
    "failures",
    "seeds",
    "report",
)


def _unknown(where: str, key: str, choices: Sequence[str]) -> ConfigError:
    """``unknown key 'where.key' (did you mean 'where.choice'?)``; ``key`` may itself be dotted."""
    hint = difflib.get_close_matches(str(key), [str(c) for c in choices], n=1, cutoff=0.6)
    prefix = f"{where}." if where else ""
    suggestion = f" (did you mean {prefix + hint[0]!r}?)" if hint else ""
    return ConfigError(f"unknown key {prefix + str(key)!r}{suggestion}")


def _mapping(where: str, value: Any, allowed: Sequence[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where or 'the spec'} must be a mapping, but got {value!r}")
    for k in value:
        if k not in allowed:
            raise _unknown(where, k, allowed)
    return dict(value)


def _number(key: str, value: Any, *, integer: bool = False) -> float:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, str) and not integer:
        try:
            value = float(value)
            ok = True
        except ValueError:
            ok = False
    if not ok or isinstance(value, bool):
        raise ConfigError(
            f"{key}={value!r} has the wrong type: must be {'an integer' if integer else 'a number'}"
        )
    if not math.isfinite(float(value)):
        raise ConfigError(f"{key}={value!r} is out of range: must be a finite number")
    return float(value)


def _int(key: str, value: Any, minimum: int) -> int:
    number = int(_number(key, value, integer=True))
    if number < minimum:
        raise ConfigError(f"{key}={number} is out of range: must be >= {minimum}")
    return number


@dataclass(frozen=True)
class Dimension:
    """One search dimension over a dotted trial key.

    ``when`` maps other keys to the values for which this dimension is sampled; when the
    condition does not hold, the key keeps the base config's value.
    """

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    step: int | None = None
    values: tuple[Any, ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def can_take(self, value: Any) -> bool:
        """Whether sampling this dimension can give ``value`` (compared with ==)."""
        finite = self.possible_values()
        if finite is not None:
            return any((value == v and type(value) is not bool) or value is v for v in finite)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        assert self.low is not None and self.high is not None
        return self.low <= value <= self.high

    def possible_values(self) -> tuple[Any, ...] | None:
        """The finite set of values this dimension can take, or None for a continuous one."""
        if self.type == "categorical":
            return self.values
        if self.type == "int" and self.low is not None and self.high is not None:
            return tuple(range(int(self.low), int(self.high) + 1, self.step or 1))
        return None


@dataclass(frozen=True)
class SearchSpec:
    algorithm: str = "tpe"
    num_samples: int = 8
    max_concurrent: int = 2
    seed: int = 0
    points: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class SchedulerSpec:
    type: str = "asha"
    grace_period: int = 1
    reduction_factor: float = 2.0
    budget: int | None = None  # epochs of a search trial; None = base train.epochs


@dataclass(frozen=True)
class ResourceSpec:
    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class FailureSpec:
    retries: int = 2


@dataclass(frozen=True)
class Arm:
    """One arm of the seed phase: a label and the overrides of its trial config."""

    label: str
    overrides: dict[str, Any] = field(default_factory=dict)
    from_study: str | None = None


@dataclass(frozen=True)
class SeedSpec:
    """The seed phase. ``allow_search_seeds`` lets an explicit ``seeds`` list reuse a seed that a
    search trial ran with (the report then says so among its caveats)."""

    top_k: int = 1
    n_seeds: int = 5
    seeds: tuple[int, ...] = ()
    arms: tuple[Arm, ...] = ()
    epochs: int | None = None  # None = base train.epochs
    allow_search_seeds: bool = False

    def seed_list(self, search_seeds: Sequence[int] = ()) -> list[int]:
        """The seeds every arm runs: the explicit ``seeds``, else ``n_seeds`` consecutive seeds
        starting after the largest seed any search trial used (``search_seeds``), so that no run
        that selected a configuration is counted again as evidence for it."""
        if self.seeds:
            return list(self.seeds)
        start = max(search_seeds) + 1 if search_seeds else 0
        return list(range(start, start + self.n_seeds))

    def check_disjoint(self, search_seeds: Sequence[int], where: str = "the search trials") -> None:
        """Refuse explicit ``seeds`` that reuse a seed of ``search_seeds``, unless allowed.

        Raises:
            ConfigError: one line naming the shared seeds and the ways out.
        """
        shared = sorted(set(self.seeds) & set(search_seeds))
        if shared and not self.allow_search_seeds:
            raise ConfigError(
                f"seeds.seeds={list(self.seeds)} reuses seed(s) {shared} of {where}: a top arm's run "
                "on such a seed repeats the very trial that selected it; drop them, leave seeds.seeds "
                "out (the default seeds start after the search's), or set seeds.allow_search_seeds: true"
            )


@dataclass(frozen=True)
class ReportSpec:
    """The report written when a study ends (``rblock-tune report`` with these settings)."""

    metric: str = "test_acc"
    baseline: str | None = None  # None: the first arm running dropblock, dropout, ... (see analysis)
    alpha: float = 0.05


@dataclass(frozen=True)
class StudySpec:
    """A validated study spec. ``base`` is the resolved trial config."""

    name: str
    base: TrialConfig
    metric: str = "val_acc"
    mode: str = "max"
    space: tuple[Dimension, ...] = ()
    search: SearchSpec = field(default_factory=SearchSpec)
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    failures: FailureSpec = field(default_factory=FailureSpec)
    seeds: SeedSpec | None = None
    report: ReportSpec | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def search_epochs(self) -> int:
        """Epoch budget of one search trial (ASHA's max_t)."""
        return self.scheduler.budget or self.base.train.epochs

    @property
    def seed_epochs(self) -> int:
        """Epochs of one seed-phase run (the full budget)."""
        if self.seeds is not None and self.seeds.epochs:
            return self.seeds.epochs
        return self.base.train.epochs


def search_seeds(spec: StudySpec) -> list[int]:
    """The seeds this study's search trials run with: ``base.seed`` when there is a search
    (``space`` is never allowed to search the seed), else none."""
    return [spec.base.seed] if spec.space else []


def _parse_dimension(key: str, value: Any, trial_keys: set[str]) -> Dimension:
    where = f"space.{key}"
    if key == "seed":
        raise ConfigError(
            "space.seed is not allowed: searching over the seed picks a lucky seed; the search runs "
            "with base.seed and the seed phase measures the spread over seeds"
        )
    if key not in trial_keys:
        hint = difflib.get_close_matches(key, sorted(trial_keys), n=1, cutoff=0.6)
        suggestion = f" (did you mean 'space.{hint[0]}'?)" if hint else ""
        raise ConfigError(f"{where}: {key!r} is not a trial config key{suggestion}")
    if isinstance(value, list):  # shorthand: a list is a categorical dimension
        value = {"type": "categorical", "values": value}
    spec = _mapping(where, value, ("type", "low", "high", "step", "values", "when"))
    kind = spec.get("type")
    if kind not in DIMENSION_TYPES:
        raise ConfigError(
            f"{where}.type={kind!r} is not allowed: must be one of {', '.join(DIMENSION_TYPES)}"
        )
    low = high = None
    step = None
    values: tuple[Any, ...] = ()
    if kind == "categorical":
        raw_values = spec.get("values")
        if not isinstance(raw_values, list) or not raw_values:
            raise ConfigError(f"{where}.values must be a non-empty list, but got {raw_values!r}")
        values = tuple(raw_values)
        for v in values:
            if not (v is None or isinstance(v, (bool, int, float, str))):
                raise ConfigError(f"{where}.values: {v!r} is not allowed: categorical values must be scalars")
        for k in ("low", "high", "step"):
            if k in spec:
                raise ConfigError(f"{where}.{k} is not allowed for a categorical dimension (use values)")
    else:
        if "values" in spec:
            raise ConfigError(f"{where}.values is only for categorical dimensions (use low and high)")
        for k in ("low", "high"):
            if k not in spec:
                raise ConfigError(f"{where}.{k} is missing: a {kind} dimension needs low and high")
        integer = kind == "int"
        low = _number(f"{where}.low", spec["low"], integer=integer)
        high = _number(f"{where}.high", spec["high"], integer=integer)
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise ConfigError(f"{where}: low={spec['low']!r} must be below high={spec['high']!r}")
        if kind == "loguniform" and low <= 0:
            raise ConfigError(
                f"{where}.low={spec['low']!r} is out of range: a loguniform dimension needs low > 0"
            )
        if "step" in spec:
            if kind != "int":
                raise ConfigError(f"{where}.step is only for int dimensions")
            step = _int(f"{where}.step", spec["step"], 1)
    when: list[tuple[str, tuple[Any, ...]]] = []
    for cond_key, cond_values in _mapping(f"{where}.when", spec.get("when"), sorted(trial_keys)).items():
        allowed = tuple(cond_values) if isinstance(cond_values, list) else (cond_values,)
        if not allowed:
            raise ConfigError(f"{where}.when.{cond_key} is empty: the dimension could never be sampled")
        when.append((cond_key, allowed))
    return Dimension(key, kind, low, high, step, values, tuple(when))


def _check_space_values(dims: Sequence[Dimension], base: TrialConfig) -> None:
    """Every value a dimension can take must make a valid trial config; conditions must be satisfiable."""
    base_dict = config_to_dict(base)
    seen: dict[str, Dimension] = {}
    for dim in dims:
        samples: list[Any] = list(dim.possible_values() or (dim.low, dim.high))
        if dim.type == "int":
            samples = [int(v) for v in samples]
        for value in samples:
            try:
                config_from_dict(apply_overrides(base_dict, {dim.key: value}))
            except ConfigError as exc:
                raise ConfigError(f"space.{dim.key}: the value {value!r} is invalid: {exc}") from None
        for cond_key, allowed in dim.when:
            if cond_key == dim.key:
                raise ConfigError(f"space.{dim.key}.when cannot refer to the dimension itself")
            if cond_key in seen:
                earlier = seen[cond_key]
                if not any(earlier.can_take(v) for v in allowed):
                    possible = earlier.possible_values()
                    takes = list(possible) if possible is not None else f"[{earlier.low}, {earlier.high}]"
                    raise ConfigError(
                        f"space.{dim.key}.when.{cond_key}={list(allowed)!r} can never hold: "
                        f"space.{cond_key} takes only {takes}"
                    )
            elif any(d.key == cond_key for d in dims):
                raise ConfigError(
                    f"space.{dim.key}.when.{cond_key}: list space.{cond_key} before space.{dim.key} "
                    "(conditions refer to dimensions sampled earlier)"
                )
            else:
                base_value = _flat_value(base, cond_key)
                if base_value not in allowed:
                    raise ConfigError(
                        f"space.{dim.key}.when.{cond_key}={list(allowed)!r} can never hold: "
                        f"{cond_key} is fixed at {base_value!r} (not searched)"
                    )
        seen[dim.key] = dim
    _check_pairs(dims, base_dict)
    _check_combinations(dims, base_dict)


def _dim_samples(dim: Dimension) -> list[Any]:
    samples: list[Any] = list(dim.possible_values() or (dim.low, dim.high))
    return [int(v) for v in samples] if dim.type == "int" else samples


def _check_pairs(dims: Sequence[Dimension], base_dict: dict[str, Any]) -> None:
    """Every pair of dimensions must combine into valid configs at their extreme values (a
    drop rate valid for one variant may be out of range for another), where both are sampled."""
    for i, later in enumerate(dims):
        conditions = dict(later.when)
        for earlier in dims[:i]:
            for v_earlier in _dim_samples(earlier):
                if earlier.key in conditions and v_earlier not in conditions[earlier.key]:
                    continue
                for v_later in _dim_samples(later):
                    try:
                        config_from_dict(
                            apply_overrides(base_dict, {earlier.key: v_earlier, later.key: v_later})
                        )
                    except ConfigError as exc:
                        pair = f"{earlier.key}={v_earlier!r} with {later.key}={v_later!r}"
                        raise ConfigError(f"space: {pair} is invalid: {exc}") from None


_MAX_COMBINATIONS = 4096
"""Above this many extreme-value combinations of the whole space, only pairs are checked."""


def _check_combinations(dims: Sequence[Dimension], base_dict: dict[str, Any]) -> None:
    """Every combination of the dimensions' extreme values (both ends of a range, every categorical
    value) that sampling can produce must make a valid config: pairs alone miss, say, a searched
    ``reg.rate_basis`` with a searched variant and drop rate."""
    base_flat = flatten_config(config_from_dict(base_dict))
    points: list[dict[str, Any]] = [{}]
    for dim in dims:
        grown: list[dict[str, Any]] = []
        for point in points:
            if all(point.get(key, base_flat[key]) in allowed for key, allowed in dim.when):
                grown.extend({**point, dim.key: v} for v in _dim_samples(dim))
            else:
                grown.append(point)
        points = grown
        if len(points) > _MAX_COMBINATIONS:
            return
    for point in points:
        try:
            config_from_dict(apply_overrides(base_dict, point))
        except ConfigError as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
            raise ConfigError(f"space: {shown} together are invalid: {exc}") from None


def _check_epochs(base: TrialConfig, epochs: int, where: str) -> None:
    """The base config must also hold with ``train.epochs`` set to a phase's epochs."""
    try:
        config_from_dict(apply_overrides(config_to_dict(base), {"train.epochs": epochs}))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


_RAMP_KEYS = ("reg.schedule", "reg.ramp_fraction", "reg.ramp_epochs")


def _longest_ramp(spec: StudySpec) -> float:
    """The longest drop-rate ramp (epochs) a search trial can get: the base's, or the longest over
    the extreme values of the searched ramp keys."""
    base = flatten_config(spec.base)
    options: list[list[Any]] = []
    for key in _RAMP_KEYS:
        dim = next((d for d in spec.space if d.key == key), None)
        options.append(_dim_samples(dim) if dim is not None else [base[key]])
    longest = 0.0
    for schedule, fraction, epochs in itertools.product(*options):
        if fraction is not None and epochs is not None:
            continue  # refused when sampled together
        try:
            reg = dataclasses.replace(
                spec.base.reg, schedule=schedule, ramp_fraction=fraction, ramp_epochs=epochs
            )
        except ConfigError:
            continue
        longest = max(longest, reg.ramp_length(spec.search_epochs))
    return longest


def _ramp_warning(spec: StudySpec) -> str | None:
    """A warning when ASHA's first rung judges search trials before the drop-rate ramp is halfway."""
    searched = {d.key for d in spec.space}
    drops = spec.base.reg.variant != "none" or "reg.variant" in searched
    if spec.scheduler.type != "asha" or not spec.space or not drops:
        return None
    ramp = _longest_ramp(spec)
    rung = spec.scheduler.grace_period
    if rung >= ramp / 2:
        return None
    which = (
        "the longest drop-rate ramp the space allows" if searched & set(_RAMP_KEYS) else "the drop-rate ramp"
    )
    return (
        f"scheduler.grace_period={rung}: ASHA's first rung judges search trials at epoch {rung}, when "
        f"{which} ({ramp:g} epochs) is at {rung / ramp:.0%} of its target, so early stopping can hardly "
        f"see reg.drop_prob or reg.alpha; set base.reg.ramp_epochs <= {2 * rung} (or a later grace_period)"
    )


def _flat_value(config: TrialConfig, key: str) -> Any:
    return flatten_config(config)[key]


def _parse_overrides(key: str, value: Any, base: TrialConfig) -> dict[str, Any]:
    """A mapping of dotted trial keys, validated against ``base``."""
    overrides = _mapping(key, value, valid_keys())
    try:
        config_from_dict(apply_overrides(config_to_dict(base), overrides))
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    return overrides


def spec_from_dict(raw: Mapping[str, Any]) -> StudySpec:
    """Validate a study spec mapping (a parsed YAML file) into a :class:`StudySpec`."""
    raw = dict(raw)
    top = _mapping("", raw, _TOP_KEYS)
    name = top.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"name={name!r} is invalid: give the study a name of letters, digits, '-', '_' or '.'"
        )
    base_raw = top.get("base") or {}
    if not isinstance(base_raw, Mapping):
        raise ConfigError(f"base must be a mapping of trial keys, but got {base_raw!r}")
    try:
        base = config_from_dict(base_raw)
    except ConfigError as exc:
        raise ConfigError(f"base: {exc}") from None

    metric = top.get("metric", "val_acc")
    if not isinstance(metric, str) or metric not in REPORTED_METRICS:
        raise ConfigError(
            f"metric={metric!r} is not reported by trials: must be one of {', '.join(REPORTED_METRICS)}"
        )
    if metric.startswith(_NEEDS_VALIDATION) and base.data.val_size == 0:
        raise ConfigError(f"metric={metric!r} needs a validation set, but base.data.val_size is 0")
    mode = top.get("mode", REPORTED_METRICS[metric])
    if mode not in ("min", "max"):
        raise ConfigError(f"mode={mode!r} is not allowed: must be min or max")

    trial_keys = set(valid_keys())
    space_value = top.get("space") or {}
    if not isinstance(space_value, Mapping):
        raise ConfigError(f"space must be a mapping of dotted trial keys, but got {space_value!r}")
    space_raw = dict(space_value)
    dims = tuple(_parse_dimension(k, v, trial_keys) for k, v in space_raw.items())
    _check_space_values(dims, base)

    s = _mapping("search", top.get("search"), [f.name for f in dataclasses.fields(SearchSpec)])
    algorithm = s.get("algorithm", "tpe")
    if algorithm not in ("tpe", "random", "grid"):
        raise ConfigError(f"search.algorithm={algorithm!r} is not allowed: must be tpe, random or grid")
    if algorithm == "grid":
        for dim in dims:
            if dim.possible_values() is None:
                raise ConfigError(
                    f"search.algorithm=grid needs finite dimensions, but space.{dim.key} is {dim.type}"
                )
    points = s.get("points") or []
    if not isinstance(points, list):
        raise ConfigError(f"search.points must be a list of mappings, but got {points!r}")
    dim_keys = {d.key for d in dims}
    checked_points = []
    for i, point in enumerate(points):
        p = _mapping(f"search.points[{i}]", point, valid_keys())
        for k, v in p.items():
            if k not in dim_keys:
                raise ConfigError(f"search.points[{i}].{k} is not a dimension of space")
            dim = next(d for d in dims if d.key == k)
            if not dim.can_take(v):
                raise ConfigError(f"search.points[{i}].{k}={v!r} is outside space.{k}")
        checked_points.append(_parse_overrides(f"search.points[{i}]", p, base))
    search = SearchSpec(
        algorithm=algorithm,
        num_samples=_int("search.num_samples", s.get("num_samples", 8), 1),
        max_concurrent=_int("search.max_concurrent", s.get("max_concurrent", 2), 1),
        seed=_int("search.seed", s.get("seed", 0), 0),
        points=tuple(checked_points),
    )

    sc = _mapping("scheduler", top.get("scheduler"), [f.name for f in dataclasses.fields(SchedulerSpec)])
    kind = sc.get("type", "asha")
    if kind not in ("asha", "fifo"):
        raise ConfigError(f"scheduler.type={kind!r} is not allowed: must be asha or fifo")
    budget = sc.get("budget")
    scheduler = SchedulerSpec(
        type=kind,
        grace_period=_int("scheduler.grace_period", sc.get("grace_period", 1), 1),
        reduction_factor=_number("scheduler.reduction_factor", sc.get("reduction_factor", 2.0)),
        budget=None if budget is None else _int("scheduler.budget", budget, 1),
    )
    if scheduler.reduction_factor <= 1:
        raise ConfigError(
            f"scheduler.reduction_factor={scheduler.reduction_factor} is out of range: must be > 1"
        )
    max_t = scheduler.budget or base.train.epochs
    if kind == "asha" and scheduler.grace_period > max_t:
        raise ConfigError(
            f"scheduler.grace_period={scheduler.grace_period} is larger than the budget of {max_t} epochs"
        )

    r = _mapping("resources", top.get("resources"), ("cpus", "gpus"))
    resources = ResourceSpec(
        cpus=_number("resources.cpus", r.get("cpus", 1.0)), gpus=_number("resources.gpus", r.get("gpus", 0.0))
    )
    if resources.cpus <= 0:
        raise ConfigError(f"resources.cpus={resources.cpus} is out of range: must be > 0")
    if resources.gpus < 0:
        raise ConfigError(f"resources.gpus={resources.gpus} is out of range: must be >= 0")
    f = _mapping("failures", top.get("failures"), ("retries",))
    failures = FailureSpec(retries=_int("failures.retries", f.get("retries", 2), 0))

    _check_epochs(base, scheduler.budget or base.train.epochs, "scheduler.budget")
    seeds = _parse_seeds(top.get("seeds"), base) if top.get("seeds") is not None else None
    if seeds is not None and dims:
        seeds.check_disjoint([base.seed], f"the search trials (base.seed={base.seed})")
    report = _parse_report(top.get("report", False), seeds)
    if report is not None and seeds is None:
        variants = [d for d in dims if d.key == "reg.variant"]
        if not variants or len(variants[0].possible_values() or ()) < 2:
            raise ConfigError(
                "report: without a seeds phase the report compares search trials by reg.variant, but "
                "space.reg.variant is not searched over two or more variants; add a seeds phase"
            )
    spec = StudySpec(
        name=name,
        base=base,
        metric=metric,
        mode=mode,
        space=dims,
        search=search,
        scheduler=scheduler,
        resources=resources,
        failures=failures,
        seeds=seeds,
        report=report,
        raw=dict(raw),
    )
    warning = _ramp_warning(spec)
    return dataclasses.replace(spec, warnings=(warning,)) if warning else spec


def _parse_report(value: Any, seeds: SeedSpec | None) -> ReportSpec | None:
    """``report``: false (default), true (defaults), or {metric, baseline, alpha}."""
    if value is False or value is None:
        return None
    if value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"report={value!r} has the wrong type: must be true/false or {{metric, baseline, alpha}}"
        )
    r = _mapping("report", value, [f.name for f in dataclasses.fields(ReportSpec)])
    compared = str(r.get("metric", "test_acc"))
    if compared not in ("test_acc", *REPORTED_METRICS):
        raise ConfigError(
            f"report.metric={compared!r} is not reported by trials: must be test_acc or one of "
            f"{', '.join(REPORTED_METRICS)}"
        )
    alpha = _number("report.alpha", r.get("alpha", 0.05))
    if not 0 < alpha < 1:
        raise ConfigError(f"report.alpha={alpha} is out of range: must be between 0 and 1 (e.g. 0.05)")
    baseline = r.get("baseline")
    if baseline is not None:
        if seeds is not None:
            labels = [f"top{i + 1}" for i in range(seeds.top_k)] + [a.label for a in seeds.arms]
            where = "a seeds arm label"
        else:
            labels, where = list(VARIANTS), "a variant (the search is compared by variant)"
        if baseline not in labels:
            raise ConfigError(f"report.baseline={baseline!r} must be {where}: one of {', '.join(labels)}")
    return ReportSpec(metric=compared, baseline=None if baseline is None else str(baseline), alpha=alpha)


def _parse_seeds(value: Any, base: TrialConfig) -> SeedSpec:
    s = _mapping("seeds", value, ("top_k", "n_seeds", "seeds", "arms", "epochs", "allow_search_seeds"))
    explicit = s.get("seeds") or []
    if not isinstance(explicit, list):
        raise ConfigError(f"seeds.seeds must be a list of integers, but got {explicit!r}")
    seed_list = tuple(_int(f"seeds.seeds[{i}]", v, 0) for i, v in enumerate(explicit))
    if len(set(seed_list)) != len(seed_list):
        raise ConfigError(f"seeds.seeds={list(seed_list)} repeats a seed")
    arms_raw = s.get("arms") or []
    if not isinstance(arms_raw, list):
        raise ConfigError(f"seeds.arms must be a list, but got {arms_raw!r}")
    arms = []
    for i, arm in enumerate(arms_raw):
        a = _mapping(f"seeds.arms[{i}]", arm, ("label", "set", "from_study"))
        label = a.get("label")
        if not isinstance(label, str) or not _NAME.fullmatch(label):
            raise ConfigError(
                f"seeds.arms[{i}].label={label!r} is invalid: a name of letters, digits, '-', '_'"
            )
        if label.startswith("top"):
            raise ConfigError(
                f"seeds.arms[{i}].label={label!r} is reserved for the search's top configurations"
            )
        overrides = _parse_overrides(f"seeds.arms[{i}].set", a.get("set"), base)
        if "seed" in overrides:
            raise ConfigError(f"seeds.arms[{i}].set.seed is not allowed: every arm runs the same seed list")
        from_study = a.get("from_study")
        if from_study is not None and (not isinstance(from_study, str) or not _NAME.fullmatch(from_study)):
            raise ConfigError(f"seeds.arms[{i}].from_study={from_study!r} is not a study name")
        arms.append(Arm(label, overrides, from_study))
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"seeds.arms labels repeat: {labels}")
    epochs = s.get("epochs")
    allow = s.get("allow_search_seeds", False)
    if not isinstance(allow, bool):
        raise ConfigError(f"seeds.allow_search_seeds={allow!r} has the wrong type: must be true/false")
    spec = SeedSpec(
        top_k=_int("seeds.top_k", s.get("top_k", 1), 0),
        n_seeds=_int("seeds.n_seeds", s.get("n_seeds", 5), 1),
        seeds=seed_list,
        arms=tuple(arms),
        epochs=None if epochs is None else _int("seeds.epochs", epochs, 1),
        allow_search_seeds=allow,
    )
    if spec.top_k == 0 and not spec.arms:
        raise ConfigError("seeds has no arms: set seeds.top_k >= 1 or list seeds.arms")
    seed_epochs = spec.epochs or base.train.epochs
    _check_epochs(base, seed_epochs, "seeds.epochs")
    for i, arm in enumerate(spec.arms):
        _parse_overrides(f"seeds.arms[{i}].set", {**arm.overrides, "train.epochs": seed_epochs}, base)
    return spec


def load_study_spec(path: str | Path, overrides: Sequence[str] = ()) -> StudySpec:
    """Read a study spec file and apply ``--set`` overrides by dotted path (``search.num_samples=4``,
    ``base.data.root=/data``), then validate it."""
    raw = read_yaml(path)
    for text in overrides:
        key, value = parse_override(text)
        _set_path(raw, key, value)
    spec = spec_from_dict(raw)
    for warning in spec.warnings:
        log.warning("%s", warning)
    return spec


def _set_path(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if parts[0] not in _TOP_KEYS:
        raise _unknown("", parts[0], _TOP_KEYS)
    node: dict[str, Any] = raw
    if parts[0] == "space" and len(parts) > 2:
        # space keys are dotted trial keys themselves: space.reg.alpha.low
        for n in (2, 1):
            dim_key = ".".join(parts[1 : 1 + n])
            if dim_key in valid_keys():
                break
        else:
            raise ConfigError(f"--set {key}: no trial key after 'space.'")
        if not isinstance(raw.get("space"), dict):
            raw["space"] = {}
        space = raw["space"]
        rest = parts[1 + n :]
        if not rest:
            space[dim_key] = value
            return
        dim = space.get(dim_key)
        if isinstance(dim, list):  # the list shorthand of a categorical dimension
            dim = {"type": "categorical", "values": dim}
        if not isinstance(dim, dict):
            dim = {}
        space[dim_key] = dim
        if rest[0] == "when" and len(rest) > 1:  # space.K.when.<dotted trial key>
            old_when = dim.get("when")
            when: dict[str, Any] = old_when if isinstance(old_when, dict) else {}
            when[".".join(rest[1:])] = value
            dim["when"] = when
        elif len(rest) == 1:
            dim[rest[0]] = value
        else:
            raise ConfigError(f"--set {key}: a dimension has no key {'.'.join(rest)!r}")
        return
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            node[p] = nxt
        node = nxt
    node[parts[-1]] = value
