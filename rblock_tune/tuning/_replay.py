"""Replay a search strategy against a :class:`~rblock_tune.tuning._recording.Recording`.

Nothing is trained: each configuration the searcher suggests is snapped to its recorded point
(:meth:`Recording.snap`), and each of its "epochs" reports that point's recorded values, so a search
of hundreds of trials replays in seconds. What decides is the platform's own code: the searcher
(:class:`~rblock_tune.tuning._searcher.OptunaStudySearcher`, pruned feedback, or Ray's stock
``OptunaSearch`` for comparison), the search algorithm and the scheduler the search phase builds
(:func:`~rblock_tune.tuning._phases.search_algorithm`, :func:`~rblock_tune.tuning._phases.search_scheduler`:
ASHA on the epochs, or FIFO), called in the order Ray Tune's controller calls them:

* a result goes to the scheduler first; on CONTINUE it then goes to the searcher, and the trial
  trains its next epoch;
* on STOP (ASHA's rung, or ``max_t``) the searcher is not shown the result: the scheduler's and the
  searcher's ``on_trial_complete`` get it, as when Ray stops a trial;
* a FIFO trial's last result goes to the searcher as a result, then both are told it completed
  (Ray's ``stop_trial`` of a trainable that returned).

A recording of several seeds (:func:`~rblock_tune.tuning._recording.merge_recordings`) is replayed
one seed per replay, as a real search trains every trial from its ``base.seed``: replay ``k`` (the
sampler's seed) sees the ``k``-th seed modulo their number, so the strategies replayed with one sampler
seed see the same world. A pick is judged by its configuration's mean over every seed
(:meth:`~rblock_tune.tuning._recording.Recording.truth`, the same mean that ranks the grid), and also
over the seeds the replay did not see (``Pick.unseen``: free of the luck it was picked for).

Time runs on a clock of recorded seconds: ``search.max_concurrent`` trials train at once, each epoch
taking its recorded ``epoch_seconds``; the next event is always the earliest epoch end (ties: the
trial started first), so a replay is deterministic for a given sampler seed. Spend is counted in
epochs (every epoch any trial trained, the stopped ones' too) and in recorded seconds.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna

from rblock_tune.config import flatten_config
from rblock_tune.errors import ConfigError
from rblock_tune.layout import CONFIG_NUMBER_KEY, FINAL_METRIC, RESULT_RUN_ID
from rblock_tune.tuning._best import top_trials
from rblock_tune.tuning._recording import RecordedPoint, Recording
from rblock_tune.tuning._spec import StudySpec, spec_from_dict

__all__ = ["STRATEGIES", "Pick", "ReplayResult", "ReplayTrial", "Strategy", "replay", "replay_spec"]


@dataclass(frozen=True)
class Strategy:
    """A search strategy: the searcher's algorithm, the scheduler, and how ASHA's stops are told.

    ``feedback``: ``pruned`` (this project's searcher: a stopped trial is PRUNED, only a whole one
    COMPLETE) or ``stock`` (Ray's ``OptunaSearch``: a stopped trial is COMPLETE with its last value).
    """

    algorithm: str
    scheduler: str = "fifo"
    feedback: str = "pruned"

    def __post_init__(self) -> None:
        for field_name, allowed in (
            ("algorithm", ("grid", "random", "tpe")),
            ("scheduler", ("fifo", "asha")),
            ("feedback", ("pruned", "stock")),
        ):
            if getattr(self, field_name) not in allowed:
                raise ConfigError(
                    f"replay strategy {field_name}={getattr(self, field_name)!r} is not allowed: must be "
                    + " or ".join(allowed)
                )
        if self.feedback == "stock" and self.algorithm == "grid":
            raise ConfigError("replay strategy: Ray's stock OptunaSearch has no grid; use feedback pruned")


STRATEGIES: dict[str, Strategy] = {
    "grid": Strategy("grid"),
    "random": Strategy("random"),
    "tpe": Strategy("tpe"),
    "tpe+asha": Strategy("tpe", "asha"),
    "tpe+asha-stock": Strategy("tpe", "asha", "stock"),
}
"""The strategies ``benchmarks/bench_search.py`` compares, by name."""


@dataclass
class ReplayTrial:
    """One replayed trial: what was suggested, where it landed, how far it ran."""

    trial_id: str
    suggested: dict[str, Any]
    point: RecordedPoint
    epochs: int = 0
    stopped: bool = False  # the scheduler stopped it before the budget
    started_at: float = 0.0
    ended_at: float | None = None


@dataclass(frozen=True)
class Pick:
    """The configuration a strategy would pick at one moment, and what it cost to get there.

    ``value`` and ``test_acc`` are the picked configuration's recorded values after the whole budget
    (trained in full; the mean over every seed when the recording has several), whatever the trial that
    found it ran; ``unseen`` is its value averaged over the seeds the replay did not see (None with one
    seed)."""

    epochs: int
    seconds: float
    wall_seconds: float
    point: RecordedPoint
    value: float
    test_acc: float | None
    unseen: float | None = None


@dataclass
class ReplayResult:
    """A replay: its trials in start order, each change of pick (at a trial's end), what it spent."""

    strategy: str
    seed: int
    recorded_seed: int = 0  # the recording's seed whose curves the trials saw
    trials: list[ReplayTrial] = field(default_factory=list)
    picks: list[Pick] = field(default_factory=list)
    epochs: int = 0
    seconds: float = 0.0
    wall_seconds: float = 0.0
    study: optuna.study.Study | None = None  # the Optuna study the searcher told (in memory)

    @property
    def pick(self) -> Pick | None:
        """The final pick (None when no trial ran to its end)."""
        return self.picks[-1] if self.picks else None

    def value_at(self, epochs: float) -> float:
        """The pick's value once ``epochs`` had been spent (NaN before the first pick)."""
        value = math.nan
        for pick in self.picks:
            if pick.epochs > epochs:
                break
            value = pick.value
        return value

    def epochs_to(self, target: float, mode: str = "max") -> int | None:
        """The epochs spent when the pick first came within ``target`` (None: never)."""
        for pick in self.picks:
            if (pick.value >= target) if mode == "max" else (pick.value <= target):
                return pick.epochs
        return None


def replay_spec(
    recording: Recording,
    strategy: Strategy,
    seed: int = 0,
    max_concurrent: int = 1,
    num_samples: int | None = None,
    grace_period: int = 1,
    reduction_factor: float = 2.0,
    space: Mapping[str, Any] | None = None,
) -> StudySpec:
    """The study spec a replay of ``strategy`` runs: the recording's spec with the strategy's search
    and scheduler, and ``space`` (default: :meth:`Recording.search_space`, the recorded spec's own
    grid for ``grid``). Its seed phase and report are dropped: a replay is a search."""
    raw = {k: v for k, v in recording.spec.items() if k not in ("seeds", "report")}
    if strategy.algorithm == "grid":
        raw["space"] = {k: v for k, v in (recording.spec.get("space") or {}).items() if k in recording.keys}
    else:
        raw["space"] = dict(space) if space is not None else recording.search_space()
    search: dict[str, Any] = {
        "algorithm": strategy.algorithm,
        "max_concurrent": max_concurrent,
        "seed": seed,
    }
    if num_samples is not None and strategy.algorithm != "grid":  # a grid runs each point once
        search["num_samples"] = num_samples
    raw["search"] = search
    raw["scheduler"] = (
        {
            "type": "asha",
            "grace_period": grace_period,
            "reduction_factor": reduction_factor,
            "budget": recording.budget,
        }
        if strategy.scheduler == "asha"
        else {"type": "fifo", "budget": recording.budget}
    )
    try:
        return spec_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"replay of {recording.study!r}: {exc}") from None


class _Trial:
    """What Ray's schedulers read of a trial: its id."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


class _DefineByRun:
    """The spec's space as a define-by-run function of Ray's ``OptunaSearch`` (picklable: Ray saves
    the searcher with the experiment)."""

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec

    def __call__(self, trial: Any) -> None:
        from rblock_tune.tuning._searcher import sample_space

        sample_space(trial, self.spec)


def _searcher(
    spec: StudySpec, strategy: Strategy, budget: int, storage: optuna.storages.BaseStorage | None = None
) -> tuple[Any, optuna.study.Study]:
    """The searcher of one strategy and the Optuna study it tells (default: in memory)."""
    from rblock_tune.tuning._searcher import OptunaStudySearcher, _sampler

    storage = storage or optuna.storages.InMemoryStorage()
    if strategy.feedback == "pruned":
        searcher = OptunaStudySearcher(spec, storage, spec.name, budget)
        return searcher, searcher.study
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stock = OptunaSearch(
        space=_DefineByRun(spec),
        metric=spec.metric,
        mode=spec.mode,
        sampler=_sampler(spec),
        study_name=spec.name,
        storage=storage,
    )
    return stock, optuna.load_study(study_name=spec.name, storage=storage)


def replay(
    recording: Recording,
    spec: StudySpec,
    strategy: Strategy,
    *,
    label: str = "",
    epoch_budget: int | None = None,
) -> ReplayResult:
    """Replay one search of ``spec`` (from :func:`replay_spec`) against ``recording``.

    Trials are asked for until the searcher has given ``search.num_samples`` (a grid: every point) or,
    with ``epoch_budget``, until that many epochs are spent; the trials running then run to their end.
    """
    from ray.tune.schedulers import TrialScheduler

    from rblock_tune.tuning._phases import search_algorithm, search_scheduler
    from rblock_tune.tuning._searcher import grid_points

    budget = recording.budget
    searcher, study = _searcher(spec, strategy, budget)
    algorithm = search_algorithm(spec, searcher)
    scheduler = search_scheduler(spec, budget)
    num_samples = len(grid_points(spec)) if spec.search.algorithm == "grid" else spec.search.num_samples
    base = flatten_config(spec.base)
    seeds = recording.seeds()
    world = seeds[spec.search.seed % len(seeds)]  # every trial trains from one seed, as in a study
    others = [s for s in seeds if s != world]
    truths = [v for v in (recording.truth(p) for p in recording.configurations()) if v is not None]
    worst = (min if recording.mode == "max" else max)(truths, default=math.nan)
    out = ReplayResult(
        strategy=label or spec.search.algorithm, seed=spec.search.seed, recorded_seed=world, study=study
    )
    events: list[tuple[float, int, int]] = []  # (clock at the end of its next epoch, start order, index)
    clock = 0.0
    order = itertools.count()

    def launch() -> None:
        while sum(t.ended_at is None for t in out.trials) < spec.search.max_concurrent:
            if len(out.trials) >= num_samples or (epoch_budget is not None and out.epochs >= epoch_budget):
                return
            trial_id = f"replay_{len(out.trials):05d}"
            config = algorithm.suggest(trial_id)
            if not isinstance(config, dict):  # the limiter is full, or the searcher is finished
                return
            overrides = dict(config.get("overrides", config))
            overrides.pop(CONFIG_NUMBER_KEY, None)
            point = recording.snap({**{k: base.get(k) for k in recording.keys}, **overrides}, world)
            trial = ReplayTrial(trial_id, overrides, point, started_at=clock)
            out.trials.append(trial)
            scheduler.on_trial_add(None, _Trial(trial_id))
            heapq.heappush(events, (clock + point.seconds(1), next(order), len(out.trials) - 1))

    def result(trial: ReplayTrial, epoch: int) -> dict[str, Any]:
        values = {k: trial.point.value(k, epoch) for k in trial.point.curves}
        record: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
        record.update(
            {
                "epoch": epoch,
                "training_iteration": epoch,
                "time_this_iter_s": trial.point.seconds(epoch),
                "trial_id": trial.trial_id,
                RESULT_RUN_ID: f"replay-{trial.trial_id}",
                "diverged": 0,
            }
        )
        if record.get(spec.metric) is None:
            record[spec.metric] = math.nan
        return record

    def end(trial: ReplayTrial, last: dict[str, Any], stopped: bool) -> None:
        trial.stopped, trial.ended_at = stopped, clock
        scheduler.on_trial_complete(None, _Trial(trial.trial_id), last)
        algorithm.on_trial_complete(trial.trial_id, result=last)
        top = top_trials(study, 1)
        if top:
            point = recording.snap({**{k: base.get(k) for k in recording.keys}, **top[0].params}, world)
            value = recording.truth(point)
            if value is None:  # it failed on a seed this replay did not see: worth the grid's worst
                value = worst
            if not out.picks or out.picks[-1].point is not point:
                unseen = recording.truth(point, seeds=others) if others else None
                test = recording.truth(point, FINAL_METRIC)
                out.picks.append(Pick(out.epochs, out.seconds, clock, point, value, test, unseen))

    launch()
    while events:
        clock, _, index = heapq.heappop(events)
        trial = out.trials[index]
        trial.epochs += 1
        out.epochs += 1
        out.seconds += trial.point.seconds(trial.epochs)
        last = result(trial, trial.epochs)
        decision = scheduler.on_trial_result(None, _Trial(trial.trial_id), last)
        if decision == TrialScheduler.STOP:
            end(trial, last, stopped=trial.epochs < budget)
        else:
            algorithm.on_trial_result(trial.trial_id, last)
            if trial.epochs >= budget:
                end(trial, last, stopped=False)
            else:
                heapq.heappush(events, (clock + trial.point.seconds(trial.epochs + 1), next(order), index))
        launch()
    out.wall_seconds = clock
    return out
