"""The search-space grammar of a study spec: ``space:`` dimensions, and the checks that every value
(and every combination of extreme values) they can sample makes a valid trial config.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rblock_tune._schema import FINITE, as_mapping, at_least, check_keys, coerce, one_of, run_checks
from rblock_tune.config import (
    TrialConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    flatten_config,
    valid_keys,
)
from rblock_tune.errors import ConfigError

__all__ = [
    "grid",
    "is_active",
    "missing_grid_keys",
    "DIMENSION_TYPES",
    "Dimension",
    "check_space_values",
    "dim_samples",
    "parse_space",
]

DIMENSION_TYPES = ("uniform", "loguniform", "int", "categorical")
_DIMENSION_KEYS = ("type", "low", "high", "step", "values", "when")
_TYPE = one_of(DIMENSION_TYPES, f"is not allowed: must be one of {', '.join(DIMENSION_TYPES)}")


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


def parse_space(where: str, value: Any) -> tuple[Dimension, ...]:
    """``space``: a mapping of dotted trial keys to dimensions (null or empty: no search)."""
    value = value or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping of dotted trial keys, but got {value!r}")
    trial_keys = set(valid_keys())
    return tuple(_parse_dimension(k, v, trial_keys) for k, v in value.items())


def _bound(key: str, value: Any, integer: bool) -> float:
    """A ``low`` or ``high``: an integer for an int dimension, else a finite number."""
    if integer:
        return float(coerce(key, value, int))
    return float(run_checks(key, coerce(key, value, float), [FINITE]))


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
    spec = as_mapping(where, value)
    check_keys(where, spec, _DIMENSION_KEYS)
    kind: str = run_checks(f"{where}.type", spec.get("type"), [_TYPE])
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
        low = _bound(f"{where}.low", spec["low"], integer)
        high = _bound(f"{where}.high", spec["high"], integer)
        if low >= high:
            raise ConfigError(f"{where}: low={spec['low']!r} must be below high={spec['high']!r}")
        if kind == "loguniform" and low <= 0:
            raise ConfigError(
                f"{where}.low={spec['low']!r} is out of range: a loguniform dimension needs low > 0"
            )
        if "step" in spec:
            if kind != "int":
                raise ConfigError(f"{where}.step is only for int dimensions")
            step = run_checks(f"{where}.step", coerce(f"{where}.step", spec["step"], int), [at_least(1)])
    when: list[tuple[str, tuple[Any, ...]]] = []
    conditions = as_mapping(f"{where}.when", spec.get("when"))
    check_keys(f"{where}.when", conditions, sorted(trial_keys))
    for cond_key, cond_values in conditions.items():
        allowed = tuple(cond_values) if isinstance(cond_values, list) else (cond_values,)
        if not allowed:
            raise ConfigError(f"{where}.when.{cond_key} is empty: the dimension could never be sampled")
        when.append((cond_key, allowed))
    return Dimension(key, kind, low, high, step, values, tuple(when))


def check_space_values(dims: Sequence[Dimension], base: TrialConfig) -> None:
    """Every value a dimension can take must make a valid trial config; conditions must be satisfiable."""
    base_dict = config_to_dict(base)
    seen: dict[str, Dimension] = {}
    for dim in dims:
        for value in dim_samples(dim):
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


def dim_samples(dim: Dimension) -> list[Any]:
    samples: list[Any] = list(dim.possible_values() or (dim.low, dim.high))
    return [int(v) for v in samples] if dim.type == "int" else samples


def _check_pairs(dims: Sequence[Dimension], base_dict: dict[str, Any]) -> None:
    """Every pair of dimensions must combine into valid configs at their extreme values (a
    drop rate valid for one variant may be out of range for another), where both are sampled."""
    for i, later in enumerate(dims):
        conditions = dict(later.when)
        for earlier in dims[:i]:
            for v_earlier in dim_samples(earlier):
                if earlier.key in conditions and v_earlier not in conditions[earlier.key]:
                    continue
                for v_later in dim_samples(later):
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
                grown.extend({**point, dim.key: v} for v in dim_samples(dim))
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


def _flat_value(config: TrialConfig, key: str) -> Any:
    return flatten_config(config)[key]


def is_active(dim: Dimension, chosen: Mapping[str, Any], base: Mapping[str, Any]) -> bool:
    """Whether ``dim`` is sampled given the values ``chosen`` so far (else ``base``'s flat values)."""
    return all(chosen.get(key, base[key]) in allowed for key, allowed in dim.when)


def grid(dims: Sequence[Dimension], base: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the (finite) dimensions ``dims``, conditions applied, without repeats;
    ``base`` is the flat base config (:func:`~rblock_tune.config.flatten_config`)."""
    points: list[dict[str, Any]] = [{}]
    for dim in dims:
        values = dim.possible_values() or ()
        grown: list[dict[str, Any]] = []
        for point in points:
            if is_active(dim, point, base):
                grown.extend({**point, dim.key: v} for v in values)
            else:
                grown.append(point)
        points = grown
    unique: list[dict[str, Any]] = []
    for point in points:
        if point not in unique:
            unique.append(point)
    return unique


def missing_grid_keys(
    dims: Sequence[Dimension], point: Mapping[str, Any], base: Mapping[str, Any]
) -> list[str]:
    """The dimensions a grid point leaves out although they are active for it (a complete point: none)."""
    return [d.key for d in dims if d.key not in point and is_active(d, point, base)]
