"""Where a trial's wall time goes: per-phase times of one trial, written only when asked.

When :data:`PROFILE_DIR_ENV` names a folder (``benchmarks/bench_study_overhead.py`` sets it), each
trial appends one JSON line to ``<folder>/trials-<pid>.jsonl`` when it ends: the wall-clock times it
entered and left the trainable, when its worker process started, how many trials that process ran
before it, its thread count, the seconds of each phase (:data:`PHASES`), and a few counts (its
``epoch_seconds``, checkpoints, whether it reused its worker's dataset). Without the variable
nothing is written: the runs, their MLflow records and Ray's results are the same either way.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch

__all__ = ["PHASES", "PROFILE_DIR_ENV", "TrialProfile"]

T = TypeVar("T")

PROFILE_DIR_ENV = "RBLOCK_PROFILE_DIR"
"""Environment variable: folder the trials append their profile lines to (unset: no profile)."""

PHASES = (
    "mlflow_run",  # find or create the trial's MLflow run: tags, params, config.yaml
    "data",  # load the dataset (or take it from this worker's memo)
    "build",  # model, loaders, optimiser
    "restore",  # Ray's checkpoint or the trial's own copy, when there is one
    "train",  # the epochs themselves: training, validation, test
    "checkpoint",  # trainer.save and the trial's own copy
    "mlflow_epoch",  # one epoch's metrics and log
    "report",  # tune.report of an epoch without a checkpoint
    "report_checkpoint",  # tune.report with a checkpoint (Ray copies it to its storage)
    "finish",  # the run's final status and log
)
"""The phases a trial's time is split into, in the order they first happen."""

_trials_in_process = 0


def _process_started() -> float | None:
    """Wall-clock time this process started (None where psutil, Ray's dependency, is missing)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - Ray installs it
        return None
    return float(psutil.Process().create_time())


class TrialProfile:
    """Accumulates one trial's per-phase wall times; :meth:`write` appends them when profiling is on."""

    def __init__(self) -> None:
        global _trials_in_process
        folder = os.environ.get(PROFILE_DIR_ENV, "")
        self.folder = Path(folder) if folder else None
        self.entered = time.time()
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.facts: dict[str, Any] = {}
        self.earlier_trials = _trials_in_process
        _trials_in_process += 1

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the time spent inside the block to phase ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def timed(self, items: Iterable[T], name: str) -> Iterator[T]:
        """The items of ``items``, the time spent making each one added to phase ``name`` (the time
        the caller spends on an item is not)."""
        iterator = iter(items)
        while True:
            with self.phase(name):
                try:
                    item = next(iterator)
                except StopIteration:
                    return
            yield item

    def add(self, name: str, amount: float = 1) -> None:
        """Add ``amount`` to the count ``name`` of this trial's line (epoch seconds, checkpoints)."""
        self.facts[name] = self.facts.get(name, 0) + amount

    def write(self) -> None:
        """Append this trial's line to the profile folder (nothing when profiling is off)."""
        if self.folder is None:
            return
        left = time.time()
        line = {
            "pid": os.getpid(),
            "process_started": _process_started(),
            "earlier_trials": self.earlier_trials,
            "entered": self.entered,
            "left": left,
            "threads": torch.get_num_threads(),
            "seconds": self.seconds,
            **self.facts,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / f"trials-{os.getpid()}.jsonl").open("a") as out:
            out.write(json.dumps(line) + "\n")
