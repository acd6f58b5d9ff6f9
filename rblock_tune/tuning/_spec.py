"""The study spec: one YAML file describing a whole experiment protocol.

It is validated completely before Ray starts; every problem is one line that names the
dotted key (``space.reg.alpha.low``, ``search.num_samples``, ...). See docs/studies.md
for the format.

The dataclasses below declare the spec's keys, types, defaults and per-key rules; the structure
is parsed by :func:`rblock_tune._schema.build`, as the trial config is. The search-space grammar
lives in :mod:`rblock_tune.tuning._space`. Checks that combine keys (conditions, pairs of
dimensions, a phase's epochs against the ramp, the metric against the validation split, the
seed phase against the search's seeds, ...) run after the structural parse, in ``_check_*``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rblock_tune._files import read_yaml
from rblock_tune._schema import (
    FINITE,
    Check,
    above,
    at_least,
    build,
    check_keys,
    internal,
    keys_of,
    one_of,
    setting,
    unknown_key,
)
from rblock_tune.config import (
    VARIANTS,
    TrialConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    flatten_config,
    parse_override,
    valid_keys,
)
from rblock_tune.errors import CheckpointError, ConfigError
from rblock_tune.layout import FINAL_METRIC, METRIC_MODES, REPORTED_METRICS
from rblock_tune.tuning._space import (
    DIMENSION_TYPES,
    Dimension,
    check_space_values,
    dim_samples,
    grid,
    missing_grid_keys,
    parse_space,
)
from rblock_tune.tuning._workdir import RESERVED_NAMES

__all__ = [
    "EVERY_EPOCH",
    "DIMENSION_TYPES",
    "REPORTED_METRICS",
    "Arm",
    "Dimension",
    "FailureSpec",
    "ReportSpec",
    "RaceSpec",
    "ResourceSpec",
    "SchedulerSpec",
    "SearchSpec",
    "SeedSpec",
    "StudySpec",
    "load_study_spec",
    "search_seeds",
    "search_size",
    "spec_from_dict",
    "spec_from_state",
    "trial_threads",
]

log = logging.getLogger(__name__)

_NEEDS_VALIDATION = ("val_", "consistency_")
"""Prefixes of the metrics measured on the validation split (absent when ``data.val_size`` is 0)."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


EVERY_EPOCH = "every_epoch"
"""``search.test_acc: every_epoch``: search trials measure the test set after every epoch."""


def _is_test_acc(value: Any) -> bool:
    return type(value) is bool or value == EVERY_EPOCH


@dataclass(frozen=True)
class SearchSpec:
    algorithm: str = setting(
        one_of(("tpe", "random", "grid"), "is not allowed: must be tpe, random or grid"), default="tpe"
    )
    num_samples: int = setting(at_least(1), default=8)
    max_concurrent: int = setting(at_least(1), default=2)
    seed: int = setting(at_least(0), default=0)
    points: tuple[dict[str, Any], ...] = ()
    # search trials measure test accuracy after their last epoch (true) or after every epoch
    # (every_epoch: the learning curves a recorded grid keeps); they still select on the metric
    test_acc: bool | str = setting(
        Check(_is_test_acc, "is not allowed: must be false, true or every_epoch", raw=True), default=False
    )


@dataclass(frozen=True)
class SchedulerSpec:
    type: str = setting(one_of(("asha", "fifo"), "is not allowed: must be asha or fifo"), default="asha")
    grace_period: int = setting(at_least(1), default=1)
    reduction_factor: float = setting(FINITE, above(1), default=2.0)
    budget: int | None = setting(at_least(1), default=None)  # epochs of a search trial; None: base's


def _is_threads(value: Any) -> bool:
    return value == "auto" or (type(value) is int and value >= 1)


@dataclass(frozen=True)
class ResourceSpec:
    """What one trial asks Ray for (``cpus``, ``gpus``), and how many threads it trains on.

    ``threads: auto`` (the default) gives each trial its share of its node's CPUs
    (:func:`trial_threads`); an integer fixes the count. Ray alone would hold every trial to
    ``floor(cpus)`` threads (its ``OMP_NUM_THREADS``), so a lone trial would leave cores idle."""

    cpus: float = setting(FINITE, above(0), default=1.0)
    gpus: float = setting(FINITE, at_least(0), default=0.0)
    threads: int | str = setting(
        Check(_is_threads, "is not allowed: must be auto or a whole number >= 1", raw=True), default="auto"
    )

    def threads_for(self, node_cpus: float, max_concurrent: int) -> int:
        """The threads of one trial on a node of ``node_cpus`` CPUs (:func:`trial_threads`)."""
        if isinstance(self.threads, int):
            return self.threads
        return trial_threads(node_cpus, self.cpus, max_concurrent)


def trial_threads(node_cpus: float, trial_cpus: float, max_concurrent: int) -> int:
    """``resources.threads: auto``: a node's CPUs shared by the trials that can run on it at once.

    At once on one node run at most ``max_concurrent`` trials (``search.max_concurrent``) and at
    most as many as fit by ``resources.cpus``; each of them gets ``floor(node_cpus / that many)``
    threads, at least 1 and at least ``floor(trial_cpus)``. A lone trial on a 2-CPU node gets 2,
    two at once get 1 each.
    """
    fit = max(1, math.floor(node_cpus / trial_cpus))
    at_once = max(1, min(max_concurrent, fit))
    return max(1, math.floor(trial_cpus), math.floor(node_cpus / at_once))


@dataclass(frozen=True)
class FailureSpec:
    retries: int = setting(at_least(0), default=2)


@dataclass(frozen=True)
class Arm:
    """One arm of the seed phase: a label and the overrides of its trial config (key ``set``)."""

    label: str = setting(
        Check(_is_name, "is invalid: a name of letters, digits, '-', '_'", raw=True),
        Check(lambda label: not label.startswith("top"), "is reserved for the search's top configurations"),
    )
    overrides: dict[str, Any] = setting(key="set", default_factory=dict)
    from_study: str | None = setting(
        Check(lambda name: name is None or _is_name(name), "is not a study name", raw=True), default=None
    )


@dataclass(frozen=True)
class RaceSpec:
    """A racing seed phase (``seeds.race``): seeds go to the arms still undecided against the
    baseline (:mod:`rblock_tune.racing`). ``None`` defaults are resolved by :meth:`StudySpec.race_design`."""

    min_seeds: int = setting(at_least(2), default=3)
    max_seeds: int | None = setting(at_least(2), default=None)  # None: the seed list's length
    margin: float = setting(FINITE, at_least(0), default=0.0)
    alpha: float | None = setting(
        Check(lambda a: a is None or 0 < a < 1, "is out of range: must be between 0 and 1 (e.g. 0.05)"),
        default=None,
    )  # None: report.significance, else 0.05
    futility: float = setting(
        FINITE, Check(lambda f: 0 <= f <= 1, "is out of range: must be between 0 (off) and 1"), default=0.6
    )
    baseline: str | None = None  # None: report.baseline
    statistic: str = setting(
        one_of(("t", "hall"), "is not allowed: must be t (the one-sample t) or hall (skewness-corrected)"),
        default="t",
    )


def _switch_or_keys(where: str, value: Any, section: type) -> Mapping[str, Any] | None:
    """A section that is off (false or null), on with its defaults (true), or a mapping of its keys:
    None, or the mapping to build it from."""
    if value is False or value is None:
        return None
    if value is True:
        return {}
    if not isinstance(value, Mapping):
        keys = ", ".join(keys_of(section))
        raise ConfigError(f"{where}={value!r} has the wrong type: must be true/false or {{{keys}}}")
    return value


def _parse_race(where: str, value: Any) -> RaceSpec | None:
    """``seeds.race``: false or null (a fixed design), true (the defaults), or a mapping of its keys."""
    keys = _switch_or_keys(where, value, RaceSpec)
    return None if keys is None else build(RaceSpec, keys, where)


@dataclass(frozen=True)
class SeedSpec:
    """The seed phase. ``allow_search_seeds`` lets an explicit ``seeds`` list reuse a seed that a
    search trial ran with (the report then says so among its caveats)."""

    top_k: int = setting(at_least(0), default=1)
    n_seeds: int = setting(at_least(1), default=5)
    seeds: tuple[int, ...] = setting(each=(at_least(0),), default=())
    arms: tuple[Arm, ...] = ()
    epochs: int | None = setting(at_least(1), default=None)  # None = base train.epochs
    allow_search_seeds: bool = False
    race: RaceSpec | None = setting(parse=_parse_race, default=None)
    fuse: int = setting(at_least(1), default=1)  # members per fused trial; 1: every run its own trial

    @property
    def count(self) -> int:
        """How many seeds the list has: ``race.max_seeds`` when set, else ``len(seeds)`` or ``n_seeds``."""
        if self.race is not None and self.race.max_seeds is not None:
            return self.race.max_seeds
        return len(self.seeds) if self.seeds else self.n_seeds

    def seed_list(self, search_seeds: Sequence[int] = ()) -> list[int]:
        """The seeds every arm runs (a race: at most; in this order): the explicit ``seeds``, else
        :attr:`count` consecutive seeds
        starting after the largest seed any search trial used (``search_seeds``), so that no run
        that selected a configuration is counted again as evidence for it."""
        if self.seeds:
            return list(self.seeds)[: self.count]
        start = max(search_seeds) + 1 if search_seeds else 0
        return list(range(start, start + self.count))

    def seed_groups(self, seeds: Sequence[int]) -> list[list[int]]:
        """``seeds`` in consecutive groups of :attr:`fuse` (the last may be smaller): the seeds that
        one fused trial of an arm trains together (:class:`rblock_tune.trainer.FusedTrainer`)."""
        return [list(seeds[i : i + self.fuse]) for i in range(0, len(seeds), self.fuse)]

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

    metric: str = setting(
        one_of(
            ("test_acc", *REPORTED_METRICS),
            f"is not reported by trials: must be test_acc or one of {', '.join(REPORTED_METRICS)}",
        ),
        default="test_acc",
    )
    baseline: str | None = None  # None: the first arm running dropblock, dropout, ... (see analysis)
    significance: float = setting(
        FINITE,
        Check(lambda a: 0 < a < 1, "is out of range: must be between 0 and 1 (e.g. 0.05)"),
        default=0.05,
    )


def _parse_base(where: str, value: Any) -> TrialConfig:
    """``base``: a trial config (null or empty: the defaults)."""
    value = value or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping of trial keys, but got {value!r}")
    try:
        return config_from_dict(value)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _parse_report(where: str, value: Any) -> ReportSpec | None:
    """``report``: false or null (no report), true (the defaults), or a mapping of its keys."""
    value = _switch_or_keys(where, value, ReportSpec)
    if value is None:
        return None
    if "alpha" in value:  # its earlier name; alpha is the KL weight (reg.alpha)
        raise ConfigError(
            f"{where}.alpha is now {where}.significance (the significance level; alpha is the KL weight, "
            f"reg.alpha): rename the key"
        )
    return build(ReportSpec, value, where)


@dataclass(frozen=True)
class StudySpec:
    """A validated study spec. ``base`` is the resolved trial config. ``mode`` defaults to the
    metric's natural direction (:data:`REPORTED_METRICS`)."""

    name: str = setting(
        Check(_is_name, "is invalid: give the study a name of letters, digits, '-', '_' or '.'", raw=True),
        Check(
            lambda name: name not in RESERVED_NAMES,
            f"is reserved: the work directory keeps its own files under {', '.join(sorted(RESERVED_NAMES))}; "
            "pick another --name",
        ),
    )
    base: TrialConfig = setting(parse=_parse_base)
    metric: str = setting(
        one_of(
            tuple(REPORTED_METRICS),
            f"is not reported by trials: must be one of {', '.join(REPORTED_METRICS)}",
        ),
        default="val_acc",
    )
    mode: str = setting(one_of(("min", "max"), "is not allowed: must be min or max"), default="max")
    space: tuple[Dimension, ...] = setting(parse=parse_space, default=())
    search: SearchSpec = field(default_factory=SearchSpec)
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    failures: FailureSpec = field(default_factory=FailureSpec)
    seeds: SeedSpec | None = None
    report: ReportSpec | None = setting(parse=_parse_report, default=None)
    raw: dict[str, Any] = internal(default_factory=dict, compare=False)
    warnings: tuple[str, ...] = internal(default=(), compare=False)

    @property
    def search_epochs(self) -> int:
        """Epoch budget of one search trial (ASHA's max_t)."""
        return self.scheduler.budget or self.base.train.epochs

    @property
    def search_measures_test(self) -> bool:
        """Whether search trials measure and log ``test_acc``: when ``search.test_acc`` asks, or when
        the report compares search trials (no seed phase) on it."""
        compares_search = self.seeds is None and self.report is not None and self.report.metric == "test_acc"
        return bool(self.search.test_acc) or compares_search

    def race_design(self) -> dict[str, Any] | None:
        """The resolved design of a racing seed phase (None for a fixed one): ``alpha``, ``margin``,
        ``min_seeds``, ``max_seeds``, ``futility``, ``metric`` and ``mode`` (the report's metric, else
        ``test_acc``) and ``baseline`` (``seeds.race.baseline``, else ``report.baseline``)."""
        if self.seeds is None or self.seeds.race is None:
            return None
        race, report = self.seeds.race, self.report
        metric = report.metric if report is not None else FINAL_METRIC
        alpha = race.alpha if race.alpha is not None else report.significance if report is not None else 0.05
        return {
            "alpha": alpha,
            "margin": race.margin,
            "min_seeds": race.min_seeds,
            "max_seeds": self.seeds.count,
            "futility": race.futility,
            "statistic": race.statistic,
            "metric": metric,
            "mode": METRIC_MODES[metric],
            "baseline": race.baseline if race.baseline is not None else report.baseline if report else None,
        }

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


def spec_from_dict(raw: Mapping[str, Any]) -> StudySpec:
    """Validate a study spec mapping (a parsed YAML file) into a :class:`StudySpec`."""
    raw = dict(raw)
    spec = build(StudySpec, raw)
    if "mode" not in raw:
        spec = dataclasses.replace(spec, mode=REPORTED_METRICS[spec.metric])
    if spec.metric.startswith(_NEEDS_VALIDATION) and spec.base.data.val_size == 0:
        raise ConfigError(f"metric={spec.metric!r} needs a validation set, but base.data.val_size is 0")
    check_space_values(spec.space, spec.base)
    _check_search(spec)
    _check_grid(spec, raw)
    _check_top_k(spec)
    _check_devices(spec)
    _check_scheduler(spec)
    _check_epochs(spec.base, spec.search_epochs, "scheduler.budget")
    if spec.seeds is not None:
        _check_seeds(spec.seeds, spec.base)
        if spec.space:
            spec.seeds.check_disjoint([spec.base.seed], f"the search trials (base.seed={spec.base.seed})")
    _check_report(spec)
    _check_race(spec, raw)
    spec = dataclasses.replace(spec, raw=raw)
    warning = _ramp_warning(spec)
    return dataclasses.replace(spec, warnings=(warning,)) if warning else spec


def spec_from_state(state: Mapping[str, Any], state_file: Path) -> StudySpec:
    """The spec a study's state (``state_file``) holds, validated again; one line naming the file
    when this version refuses it."""
    try:
        return spec_from_dict(state["spec"])
    except ConfigError as exc:
        raise CheckpointError(
            f"{state_file.name} in {state_file.parent} holds a spec this rblock-tune refuses ({exc}); "
            "fix the spec and run the study again under another --name"
        ) from None


def _check_overrides(where: str, overrides: Mapping[str, Any], base: TrialConfig) -> None:
    """A mapping of dotted trial keys must make a valid trial config on top of ``base``."""
    check_keys(where, overrides, valid_keys())
    try:
        config_from_dict(apply_overrides(config_to_dict(base), overrides))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_search(spec: StudySpec) -> None:
    """A grid needs finite dimensions; every start point must lie in the space and be valid."""
    if spec.search.algorithm == "grid":
        for dim in spec.space:
            if dim.possible_values() is None:
                raise ConfigError(
                    f"search.algorithm=grid needs finite dimensions, but space.{dim.key} is {dim.type}"
                )
    dims = {d.key: d for d in spec.space}
    for i, point in enumerate(spec.search.points):
        where = f"search.points[{i}]"
        check_keys(where, point, valid_keys())
        for k, v in point.items():
            if k not in dims:
                raise ConfigError(f"{where}.{k} is not a dimension of space")
            if not dims[k].can_take(v):
                raise ConfigError(f"{where}.{k}={v!r} is outside space.{k}")
        _check_overrides(where, point, spec.base)


def search_size(spec: StudySpec) -> int:
    """The number of search trials: every grid combination once, else ``search.num_samples``."""
    if spec.search.algorithm == "grid":
        return len(grid(spec.space, flatten_config(spec.base)))
    return spec.search.num_samples


def _check_grid(spec: StudySpec, raw: Mapping[str, Any]) -> None:
    """A grid runs each combination once: ``num_samples`` can only repeat that count, and a
    starting point must name every dimension it activates (a partial one is sampled at random, so
    it repeats one grid point while the grid's own point count leaves another one out)."""
    if spec.search.algorithm != "grid":
        return
    base = flatten_config(spec.base)
    size = search_size(spec)
    written = raw.get("search")
    if isinstance(written, Mapping) and "num_samples" in written and spec.search.num_samples != size:
        raise ConfigError(
            f"search.num_samples={spec.search.num_samples} does not apply to search.algorithm=grid, "
            f"which runs each of its {size} combinations once: remove search.num_samples "
            f"(or set it to {size})"
        )
    for i, point in enumerate(spec.search.points):
        missing = missing_grid_keys(spec.space, point, base)
        if missing:
            raise ConfigError(
                f"search.points[{i}] leaves out {', '.join(missing)}: a grid point must name every "
                "dimension (the grid runs every combination anyway); complete it or remove search.points"
            )


def _check_top_k(spec: StudySpec) -> None:
    """``seeds.top_k`` cannot exceed the configurations the search can produce."""
    if spec.seeds is None or (spec.seeds.top_k <= 1 and spec.space):
        return
    if not spec.space:
        if spec.seeds.top_k > 1:
            raise ConfigError(
                f"seeds.top_k={spec.seeds.top_k} but there is no search (space is empty), whose only "
                "configuration is the base: set seeds.top_k to 1 (or 0 with seeds.arms)"
            )
        return
    size = search_size(spec)
    if spec.seeds.top_k > size:
        trials = (
            f"its {size} grid combinations"
            if spec.search.algorithm == "grid"
            else f"search.num_samples={size}"
        )
        raise ConfigError(
            f"seeds.top_k={spec.seeds.top_k} asks for more configurations than the search runs ({trials}): "
            f"lower seeds.top_k to at most {size}, or run more search trials"
        )


def _check_devices(spec: StudySpec) -> None:
    """Ray hands each trial ``resources.gpus``: a CPU trial holding a GPU idles it, and a CUDA trial
    without one sees no GPU at all."""
    gpus = spec.resources.gpus
    devices = {"base.train.device": spec.base.train.device}
    if spec.seeds is not None:
        for i, arm in enumerate(spec.seeds.arms):
            if "train.device" in arm.overrides:
                devices[f"seeds.arms[{i}].set.train.device"] = arm.overrides["train.device"]
    for where, device in devices.items():
        if gpus > 0 and device == "cpu":
            raise ConfigError(
                f"resources.gpus={gpus:g} with {where}=cpu: every trial would hold a GPU it never uses; "
                "set resources.gpus: 0, or train.device: auto (or cuda)"
            )
        if gpus == 0 and device == "cuda":
            raise ConfigError(
                f"{where}=cuda with resources.gpus=0: Ray gives such a trial no GPU, so it cannot run on "
                "CUDA; set resources.gpus (1, or a share such as 0.5), or train.device: auto (or cpu)"
            )


def _check_scheduler(spec: StudySpec) -> None:
    scheduler = spec.scheduler
    if scheduler.type == "asha" and scheduler.grace_period > spec.search_epochs:
        raise ConfigError(
            f"scheduler.grace_period={scheduler.grace_period} is larger than the budget of "
            f"{spec.search_epochs} epochs"
        )


def _check_seeds(seeds: SeedSpec, base: TrialConfig) -> None:
    """Distinct seeds and labels, at least one arm, and every arm valid at the phase's epochs."""
    if len(set(seeds.seeds)) != len(seeds.seeds):
        raise ConfigError(f"seeds.seeds={list(seeds.seeds)} repeats a seed")
    for i, arm in enumerate(seeds.arms):
        _check_overrides(f"seeds.arms[{i}].set", arm.overrides, base)
        if "seed" in arm.overrides:
            raise ConfigError(f"seeds.arms[{i}].set.seed is not allowed: every arm runs the same seed list")
    labels = [a.label for a in seeds.arms]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"seeds.arms labels repeat: {labels}")
    if seeds.top_k == 0 and not seeds.arms:
        raise ConfigError("seeds has no arms: set seeds.top_k >= 1 or list seeds.arms")
    seed_epochs = seeds.epochs or base.train.epochs
    _check_epochs(base, seed_epochs, "seeds.epochs")
    if seeds.fuse > 1 and seeds.race is not None:
        raise ConfigError(
            f"seeds.fuse={seeds.fuse} with seeds.race: a race hands out one seed at a time, so its runs "
            "cannot be fused; drop seeds.fuse (or set it to 1), or drop seeds.race"
        )
    for i, arm in enumerate(seeds.arms):
        _check_overrides(f"seeds.arms[{i}].set", {**arm.overrides, "train.epochs": seed_epochs}, base)


def _check_report(spec: StudySpec) -> None:
    """The baseline must be an arm (or, without a seed phase, a searched variant)."""
    report, seeds = spec.report, spec.seeds
    if report is None:
        return
    if report.baseline is not None:
        if seeds is not None:
            labels = [f"top{i + 1}" for i in range(seeds.top_k)] + [a.label for a in seeds.arms]
            where = "a seeds arm label"
        else:
            labels, where = list(VARIANTS), "a variant (the search is compared by variant)"
        if report.baseline not in labels:
            raise ConfigError(
                f"report.baseline={report.baseline!r} must be {where}: one of {', '.join(labels)}"
            )
    if seeds is None:
        variants = [d for d in spec.space if d.key == "reg.variant"]
        if not variants or len(variants[0].possible_values() or ()) < 2:
            raise ConfigError(
                "report: without a seeds phase the report compares search trials by reg.variant, but "
                "space.reg.variant is not searched over two or more variants; add a seeds phase"
            )


def _check_race(spec: StudySpec, raw: Mapping[str, Any]) -> None:
    """A race's seed list, its baseline (an arm, the report's) and its seeds against the list."""
    seeds = spec.seeds
    if seeds is None or seeds.race is None:
        return
    race = seeds.race
    raw_seeds = raw.get("seeds") or {}
    if race.max_seeds is not None:
        if seeds.seeds and race.max_seeds > len(seeds.seeds):
            raise ConfigError(
                f"seeds.race.max_seeds={race.max_seeds} but seeds.seeds lists {len(seeds.seeds)} seeds: "
                "list more seeds or lower max_seeds"
            )
        if "n_seeds" in raw_seeds and seeds.n_seeds != race.max_seeds:
            raise ConfigError(
                f"seeds.n_seeds={seeds.n_seeds} and seeds.race.max_seeds={race.max_seeds} disagree: a race "
                "runs at most max_seeds seeds per arm; set only one of them"
            )
    if race.min_seeds > seeds.count:
        raise ConfigError(
            f"seeds.race.min_seeds={race.min_seeds} exceeds the race's {seeds.count} seeds per arm "
            "(seeds.race.max_seeds, seeds.n_seeds or seeds.seeds): lower min_seeds or give it more seeds"
        )
    labels = [f"top{i + 1}" for i in range(seeds.top_k)] + [a.label for a in seeds.arms]
    if len(labels) < 2:
        raise ConfigError(
            "seeds.race needs at least two arms (a baseline and one to compare): add seeds.arms"
        )
    report_baseline = spec.report.baseline if spec.report is not None else None
    if race.baseline is not None and report_baseline is not None and race.baseline != report_baseline:
        raise ConfigError(
            f"seeds.race.baseline={race.baseline!r} but report.baseline={report_baseline!r}: the report "
            "compares against the race's baseline; set one of them"
        )
    baseline = race.baseline or report_baseline
    if baseline is None:
        raise ConfigError(
            "seeds.race needs a baseline arm: set report.baseline (or seeds.race.baseline) to one of "
            + ", ".join(labels)
        )
    if baseline not in labels:
        raise ConfigError(
            f"seeds.race.baseline={baseline!r} must be a seeds arm label: one of {', '.join(labels)}"
        )


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
        options.append(dim_samples(dim) if dim is not None else [base[key]])
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


def load_study_spec(path: str | Path, overrides: Sequence[str] = ()) -> StudySpec:
    """Read a study spec file and apply ``--set`` overrides by dotted path (``search.num_samples=4``,
    ``base.data.root=/data``), then validate it."""
    raw = read_yaml(path, "study spec")
    if not raw:
        raise ConfigError(
            f"study spec {str(path)!r} is empty: a spec needs at least name and base (see docs/studies.md)"
        )
    for text in overrides:
        key, value = parse_override(text)
        _set_path(raw, key, value)
    spec = spec_from_dict(raw)
    for warning in spec.warnings:
        log.warning("%s", warning)
    return spec


def _set_path(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    top = keys_of(StudySpec)
    if parts[0] not in top:
        raise unknown_key("", parts[0], top)
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
