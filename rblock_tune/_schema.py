"""Frozen dataclasses built from mappings: the one validator of trial configs and study specs.

:func:`build` turns a (YAML) mapping into a frozen dataclass. The dataclass declares everything:

* the keys: its fields (a field's spec key may differ from its name, see :func:`setting`); any
  other key is refused, with the closest allowed key;
* the types: the field annotations (``int``, ``float``, ``bool``, ``str``, unions with ``None``,
  ``tuple[X, ...]`` for lists, ``dict[str, Any]`` for free mappings, nested dataclasses);
* the defaults: the field defaults, and nowhere else; a key that is absent keeps its default;
* per-field rules: the :class:`Check` s in the field's metadata (bounds, choices, name patterns).

Every problem is one :class:`~rblock_tune.errors.ConfigError` line that names the dotted key, the
value and what is allowed, for example ``search.num_samples=0 is out of range: must be >= 1``.
Checks that combine several fields stay with the dataclass (``__post_init__``) or its parser.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass
from typing import Any, TypeVar

from rblock_tune.errors import ConfigError

__all__ = [
    "FINITE",
    "Check",
    "UnknownKey",
    "above",
    "as_mapping",
    "at_least",
    "build",
    "check_choice",
    "check_keys",
    "coerce",
    "internal",
    "keys_of",
    "one_of",
    "out_of_range",
    "run_checks",
    "setting",
    "type_name",
    "unknown_key",
]

T = TypeVar("T")

_RULE = "rblock_tune.schema"
"""Metadata key of a field's :class:`_Rule`."""


def out_of_range(key: str, value: Any, allowed: str) -> ConfigError:
    """``key=value is out of range: must be <allowed>``."""
    return ConfigError(f"{key}={value!r} is out of range: must be {allowed}")


def _suggestion(value: Any, choices: Sequence[Any], prefix: str = "") -> str:
    hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {prefix + hint[0]!r}?)" if hint else ""


def check_choice(key: str, value: Any, choices: Sequence[Any]) -> None:
    """Refuse a value outside ``choices``, suggesting the closest choice."""
    if value not in choices:
        raise ConfigError(
            f"{key}={value!r} is not allowed{_suggestion(value, choices)}: "
            f"must be one of {', '.join(map(str, choices))}"
        )


def unknown_key(where: str, key: Any, allowed: Sequence[Any]) -> ConfigError:
    """``unknown key 'where.key' (did you mean 'where.choice'?)``; ``key`` may itself be dotted."""
    prefix = f"{where}." if where else ""
    return ConfigError(f"unknown key {prefix + str(key)!r}{_suggestion(key, allowed, prefix)}")


UnknownKey = Callable[[str, Any, Sequence[Any]], ConfigError]
"""Makes the error for an unknown key: ``(where, key, allowed keys)``, as :func:`unknown_key`."""


def as_mapping(where: str, value: Any, noun: str = "a mapping") -> dict[str, Any]:
    """``value`` as a dict: null is empty, anything but a mapping is refused."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where or 'the spec'} must be {noun}, but got {value!r}")
    return dict(value)


def check_keys(
    where: str, values: Mapping[Any, Any], allowed: Sequence[Any], unknown: UnknownKey = unknown_key
) -> None:
    """Refuse the first key of ``values`` that is not in ``allowed``."""
    known = set(allowed)
    for key in values:
        if key not in known:
            raise unknown(where, key, allowed)


# --- per-field rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One rule of a field: ``ok(value)`` must hold, else ``key=value <problem>``.

    ``problem`` may depend on the value (a suggestion). A check runs on the coerced value and
    skips null, unless ``raw``: then it sees the value as written, null and wrong types included,
    and its message is the one the user gets for them (choices, name patterns).
    """

    ok: Callable[[Any], bool]
    problem: str | Callable[[Any], str]
    raw: bool = False

    def __call__(self, key: str, value: Any) -> None:
        if (value is not None or self.raw) and not self.ok(value):
            problem = self.problem(value) if callable(self.problem) else self.problem
            raise ConfigError(f"{key}={value!r} {problem}")


def at_least(minimum: float) -> Check:
    return Check(lambda v: v >= minimum, f"is out of range: must be >= {minimum}")


def above(minimum: float) -> Check:
    return Check(lambda v: v > minimum, f"is out of range: must be > {minimum}")


FINITE = Check(math.isfinite, "is out of range: must be a finite number")


def one_of(choices: Sequence[Any], problem: str | None = None) -> Check:
    """The value must be one of ``choices`` (checked as written, so a wrong type gets this message
    too). ``problem`` replaces the default ``is not allowed (did you mean ...?): must be one of ...``."""
    options = tuple(choices)

    def default(value: Any) -> str:
        return f"is not allowed{_suggestion(value, options)}: must be one of {', '.join(map(str, options))}"

    return Check(lambda v: v in options, problem or default, raw=True)


@dataclass(frozen=True)
class _Rule:
    checks: tuple[Check, ...] = ()
    each: tuple[Check, ...] = ()
    key: str | None = None
    parse: Callable[[str, Any], Any] | None = None
    internal: bool = False


def setting(
    *checks: Check,
    default: Any = MISSING,
    each: Sequence[Check] = (),
    key: str | None = None,
    parse: Callable[[str, Any], Any] | None = None,
    default_factory: Any = MISSING,
) -> Any:
    """A dataclass field with its spec rules.

    Args:
        checks: run in order on the coerced value (see :class:`Check`).
        default: the field's default (omit it for a required key, which is then checked as null).
        each: run on every item of a list field, keyed ``key[i]``.
        key: the spec key, when it differs from the field name.
        parse: ``parse(dotted_key, value)`` replaces the coercion by type for a value of its own
            grammar; its result is checked by ``checks``.
        default_factory: as :func:`dataclasses.field`.
    """
    rule = _Rule(tuple(checks), tuple(each), key, parse)
    kwargs: dict[str, Any] = {"metadata": {_RULE: rule}}
    if default is not MISSING:
        kwargs["default"] = default
    if default_factory is not MISSING:
        kwargs["default_factory"] = default_factory
    return dataclasses.field(**kwargs)


def internal(**kwargs: Any) -> Any:
    """A dataclass field that is no key of the mapping (set by the parser, not the user)."""
    return dataclasses.field(metadata={_RULE: _Rule(internal=True)}, **kwargs)


def run_checks(key: str, value: Any, checks: Sequence[Check]) -> Any:
    """Run ``checks`` on ``value`` and return it."""
    for check in checks:
        check(key, value)
    return value


# --- types ----------------------------------------------------------------------------------------


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def type_name(tp: Any) -> str:
    """How an error message names the type ``tp``."""
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is tuple:
        return f"a list of {type_name(typing.get_args(tp)[0])}"
    if _is_union(tp):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


def _wrong_type(key: str, value: Any, tp: Any) -> ConfigError:
    return ConfigError(f"{key}={value!r} has the wrong type: must be {type_name(tp)}")


def _list_noun(item: Any) -> str:
    if item is int:
        return "a list of integers"
    if typing.get_origin(item) is dict:
        return "a list of mappings"
    return "a list"


def coerce(
    key: str,
    value: Any,
    tp: Any,
    *,
    each: Sequence[Check] = (),
    noun: str = "a mapping",
    unknown: UnknownKey = unknown_key,
) -> Any:
    """Return ``value`` converted to the annotation ``tp`` or raise a one-line ConfigError.

    ``int`` refuses bools and floats; ``float`` takes ints and numeric strings (YAML 1.1 reads
    ``1e-3`` as one); a list field is null or a list (items keyed ``key[i]``, checked by ``each``);
    a nested dataclass is built by :func:`build` with ``noun`` and ``unknown``.
    """
    if _is_union(tp):  # such as ``int | None``
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        nested = [a for a in args if dataclasses.is_dataclass(a)]
        if nested:  # its own errors say more than "wrong type"
            return build(typing.cast(type[Any], nested[0]), value, key, noun=noun, unknown=unknown)
        # Exact type match first, so ``int | float`` keeps ints as ints.
        for arg in args:
            if arg is not type(None) and type(value) is arg:
                return value
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(key, value, arg, each=each, noun=noun, unknown=unknown)
            except ConfigError:
                continue
        raise _wrong_type(key, value, tp)
    if dataclasses.is_dataclass(tp):
        return build(typing.cast(type[Any], tp), value, key, noun=noun, unknown=unknown)
    origin = typing.get_origin(tp)
    if origin is tuple:
        item_type = typing.get_args(tp)[0]
        if value is None:
            return ()
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{key} must be {_list_noun(item_type)}, but got {value!r}")
        items = []
        for i, item in enumerate(value):
            where = f"{key}[{i}]"
            items.append(run_checks(where, coerce(where, item, item_type, noun=noun, unknown=unknown), each))
        return tuple(items)
    if origin is dict:
        return as_mapping(key, value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif (tp is str and isinstance(value, str)) or tp is Any:
        return value
    raise _wrong_type(key, value, tp)


# --- dataclasses ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Key:
    key: str
    name: str
    type: Any
    rule: _Rule
    required: bool


_KEYS: dict[type[Any], tuple[_Key, ...]] = {}


def _keys(cls: type[Any]) -> tuple[_Key, ...]:
    """The keys of dataclass ``cls`` (cached: resolving annotations is slow)."""
    if cls not in _KEYS:
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            rule = f.metadata.get(_RULE, _Rule())
            if rule.internal:
                continue
            required = f.default is MISSING and f.default_factory is MISSING
            out.append(_Key(rule.key or f.name, f.name, hints[f.name], rule, required))
        _KEYS[cls] = tuple(out)
    return _KEYS[cls]


def keys_of(cls: type[Any]) -> list[str]:
    """The keys a mapping for dataclass ``cls`` may hold, in declaration order."""
    return [k.key for k in _keys(cls)]


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def build(
    cls: type[T],
    values: Any,
    where: str = "",
    *,
    noun: str = "a mapping",
    unknown: UnknownKey = unknown_key,
) -> T:
    """Build the frozen dataclass ``cls`` from the mapping ``values`` found at dotted ``where``.

    Unknown keys are refused first; then every key present is coerced to its field's type and
    checked, in declaration order; absent keys keep the dataclass defaults, and an absent required
    key is checked as null. ``noun`` names what ``values`` must be (``... must be a mapping``);
    ``unknown`` makes the unknown-key error. Both apply to nested dataclasses too.
    """
    mapping = as_mapping(where, values, noun)
    keys = _keys(cls)
    check_keys(where, mapping, [k.key for k in keys], unknown)
    kwargs: dict[str, Any] = {}
    for k in keys:
        if k.key not in mapping and not k.required:
            continue
        dotted = _join(where, k.key)
        value = mapping.get(k.key)
        for check in k.rule.checks:
            if check.raw:
                check(dotted, value)
        if k.rule.parse is not None:
            value = k.rule.parse(dotted, value)
        else:
            value = coerce(dotted, value, k.type, each=k.rule.each, noun=noun, unknown=unknown)
        kwargs[k.name] = run_checks(dotted, value, [c for c in k.rule.checks if not c.raw])
    return cls(**kwargs)
