"""The study's own display, on the driver: a Ray Tune callback that tells a person what the trials do.

On a terminal (``stream.isatty()``) one progress line is redrawn in place (phase, trials done /
running / pending, best so far, elapsed, ETA), and only failures and the phase's summary stay on
screen. Elsewhere (a log file, CI, a pipe) it writes one line per trial event instead::

    search trial 3 started: sdrop_dml alpha=3.6 drop_prob=0.44 block_size=1
    search trial 3 pruned at epoch 1 of 2: val_acc 0.164
    search trial 2 completed: val_acc 0.227 (2 epochs, 37s)
    search trial 4 failed: ValueError: boom
    search: 8 of 8 trials in 2m31s: 3 completed, 4 pruned, 1 failed; best val_acc 0.227 (trial 2: ...)
    seeds top1 seed 2 started

How a trial ended is read from the trial itself (:func:`trial_outcome`), so the summary of a resumed
phase counts the trials of earlier runs too. Quiet (``verbosity`` 0) keeps failures and summaries.
Ray's own tables and logs are kept out of the way by :mod:`rblock_tune.tuning._ray_output`.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ray import tune

from rblock_tune.layout import RESULT_MEMBERS_DIVERGED
from rblock_tune.tuning._verbosity import NORMAL, QUIET, VERBOSE

__all__ = [
    "QUIET",
    "NORMAL",
    "VERBOSE",
    "StudyDisplay",
    "describe_config",
    "error_reason",
    "format_duration",
    "members_diverged",
    "result_outcome",
    "run_outcomes",
    "trial_label",
    "trial_outcome",
    "trial_runs",
]

_REDRAW_SECONDS = 0.5


def format_duration(seconds: float) -> str:
    """``seconds`` as ``45s``, ``3m07s`` or ``2h05m``."""
    seconds = max(round(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:.3g}"


def _seed_label(config: dict[str, Any]) -> str:
    """``top1 seed 2``; a fused trial of several seeds: ``top1 seeds 2,3``."""
    seeds = config.get("seeds")
    if isinstance(seeds, (list, tuple)):
        return f"{config['arm']} seeds {','.join(str(s) for s in seeds)}"
    return f"{config['arm']} seed {config.get('seed')}"


def describe_config(config: dict[str, Any]) -> str:
    """A trial's sampled values in a few words: ``sdrop_dml alpha=3.6 drop_prob=0.44`` for a search
    trial (a variant bare, other keys by their last part, floats to 3 significant digits), ``arm
    top1 seed 2`` for a seed run, ``the base config`` when nothing was sampled."""
    if "arm" in config:
        return f"arm {_seed_label(config)}"
    overrides = dict(config.get("overrides", config))
    words = []
    variant = overrides.pop("reg.variant", None)
    if variant is not None:
        words.append(str(variant))
    words += [f"{key.rsplit('.', 1)[-1]}={_value(value)}" for key, value in overrides.items()]
    return " ".join(words) or "the base config"


def trial_label(trial: Any) -> str:
    """A trial by what it is: ``top1 seed 2`` for a seed run, else ``trial 3``, its number in its
    phase (Ray's experiment tag), which stays the same on resume."""
    config = getattr(trial, "config", None) or {}
    if "arm" in config:
        return _seed_label(config)
    tag = str(getattr(trial, "experiment_tag", "") or "")
    number = tag.split("_", 1)[0]
    return f"trial {number}" if number.isdigit() else f"trial {trial.trial_id}"


def _named(trial: Any) -> str:
    """``trial 3: sdrop_dml alpha=3.6`` (a seed run's label says it all)."""
    config = getattr(trial, "config", None) or {}
    label = trial_label(trial)
    return label if "arm" in config else f"{label}: {describe_config(config)}"


def error_reason(text: str | None) -> str:
    """The reason in a trial's error text (Ray's ``error.txt``): the exception's own line, i.e. the
    last unindented line of the traceback, without Ray's ``Failure #`` headers."""
    if not text:
        return "no error recorded"
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line[0].isspace() and not line.startswith("Failure #")
    ]
    return lines[-1] if lines else text.strip().splitlines()[0]


def _read_error(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    if path:
        try:
            return error_reason(Path(path).read_text(errors="replace"))
        except OSError:
            pass
    return error_reason(None)


def trial_outcome(trial: Any, budget: int) -> str:
    """How a trial ended, from the trial itself: ``failed`` (Ray status ERROR), ``diverged``,
    ``pruned`` (stopped by the scheduler before ``budget`` epochs), ``completed``, or ``running``,
    ``pending`` while it is not done."""
    status = getattr(trial, "status", "PENDING")
    if status == "ERROR":
        return "failed"
    if status != "TERMINATED":
        return "running" if status in ("RUNNING", "PAUSED") else "pending"
    return result_outcome(trial.last_result, budget)


def trial_runs(trial: Any) -> int:
    """The runs a trial stands for: one, or one per member of a fused trial (its ``seeds``)."""
    seeds = (getattr(trial, "config", None) or {}).get("seeds")
    return len(seeds) if isinstance(seeds, (list, tuple)) and seeds else 1


def members_diverged(trial: Any) -> int:
    """How many members of a fused trial have diverged, from its last result (0 for a plain trial)."""
    last = getattr(trial, "last_result", None) or {}
    return min(int(last.get(RESULT_MEMBERS_DIVERGED, 0) or 0), trial_runs(trial))


def run_outcomes(trial: Any, budget: int) -> dict[str, int]:
    """How the runs of a trial ended (or stand), counted: a plain trial's one run has its trial's
    outcome (:func:`trial_outcome`); of a fused trial that ended without an error, the members its
    last result counts as diverged are ``diverged`` and the others have the trial's outcome."""
    runs = trial_runs(trial)
    outcome = trial_outcome(trial, budget)
    diverged = members_diverged(trial)
    if runs == 1 or outcome in ("failed", "running", "pending", "diverged") or not diverged:
        return {outcome: runs}
    return {outcome: runs - diverged, "diverged": diverged}


def result_outcome(last: dict[str, Any] | None, budget: int) -> str:
    """How a trial that ended without an error ended, from its last result: ``diverged``,
    ``pruned`` (fewer than ``budget`` epochs) or ``completed``."""
    last = last or {}
    if last.get("diverged"):
        return "diverged"
    if int(last.get("epoch", 0) or 0) < budget:
        return "pruned"
    return "completed"


class StudyDisplay(tune.Callback):  # type: ignore[misc]
    """Driver-side display of one phase (see the module docstring).

    Args:
        phase: ``search`` or ``seeds`` (which shows no best trial).
        expected: how many trials the phase has in all (runs, with ``unit`` ``runs``).
        metric: the metric to show (the study's).
        mode: ``max`` or ``min``: which value is best.
        budget: epochs of one trial of this phase (fewer: pruned).
        verbosity: :data:`QUIET`, :data:`NORMAL` or :data:`VERBOSE`.
        stream: where to write (default: ``sys.stderr`` when written). Not pickled: Ray saves its
            callbacks with the experiment.
        unit: what it counts: ``trials``, or ``runs`` for a fused seed phase, whose trials train
            several seeds' runs each (:func:`run_outcomes`).
    """

    def __init__(
        self,
        phase: str,
        expected: int,
        metric: str,
        mode: str,
        budget: int,
        verbosity: int = NORMAL,
        stream: TextIO | None = None,
        unit: str = "trials",
    ) -> None:
        self.phase = phase
        self.unit = unit
        self.expected = expected
        self.metric = metric
        self.mode = mode
        self.budget = budget
        self.verbosity = verbosity
        self._stream = stream
        self.ranked = phase != "seeds"
        """Whether a best trial is shown: a search's, not the seed phase's (arms are compared by the
        report, over all their seeds)."""
        self._trials: list[Any] = []
        self._start = time.monotonic()
        self._drawn = ""
        self._last_draw = 0.0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_stream"] = None
        state["_trials"] = []
        return state

    # ------------------------------------------------------------------ where and how it writes
    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    @property
    def live(self) -> bool:
        """Whether a progress line is redrawn (a terminal, and neither quiet nor verbose)."""
        isatty = getattr(self.stream, "isatty", None)
        return self.verbosity == NORMAL and bool(isatty and isatty())

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = ""

    def _line(self, text: str) -> None:
        """Write one line that stays (above the progress line, on a terminal)."""
        self._clear()
        self.stream.write(f"{text}\n")
        self.stream.flush()
        self._redraw(force=True)

    def _event(self, text: str) -> None:
        """A trial event: its own line when not on a terminal, unless quiet."""
        if self.verbosity >= NORMAL and not self.live:
            self._line(f"{self.phase} {text}")
        else:
            self._redraw(force=True)

    def _redraw(self, force: bool = False) -> None:
        if not self.live:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < _REDRAW_SECONDS:
            return
        self._last_draw = now
        text = self.progress()
        self.stream.write(f"\r{text}\x1b[K")
        self.stream.flush()
        self._drawn = text

    # ------------------------------------------------------------------ what it says
    def _metric(self, trial: Any) -> float | None:
        value = (trial.last_result or {}).get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
        return None

    def _best(self) -> tuple[Any, float] | None:
        scored = [
            (t, v)
            for t in self._trials
            if trial_outcome(t, self.budget) == "completed" and (v := self._metric(t)) is not None
        ]
        if not scored:
            return None
        pick = max if self.mode == "max" else min
        return pick(scored, key=lambda tv: tv[1])

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for trial in self._trials:
            for outcome, n in run_outcomes(trial, self.budget).items():
                counts[outcome] = counts.get(outcome, 0) + n
        return counts

    def progress(self) -> str:
        """The progress line: ``search 3/8 done, 2 running, 3 pending | best val_acc 0.227 |
        1m05s, eta ~2m10s``."""
        counts = self._counts()
        running = counts.pop("running", 0)
        counts.pop("pending", 0)
        done = sum(counts.values())
        pending = max(self.expected - done - running, 0)
        elapsed = time.monotonic() - self._start
        text = f"{self.phase} {done}/{self.expected} done, {running} running, {pending} pending"
        if self.ranked:
            best = self._best()
            text += f" | best {self.metric} {'-' if best is None else f'{best[1]:.4g}'}"
        text += f" | {format_duration(elapsed)}"
        if 0 < done < self.expected:
            text += f", eta ~{format_duration(elapsed / done * (self.expected - done))}"
        return text

    def summary(self, unfinished: int = 0) -> str:
        """The phase's one-line summary; ``unfinished``: the Ray trials left (shown as the runs left
        when the display counts runs)."""
        counts = self._counts()
        counts.pop("running", None)
        counts.pop("pending", None)
        done = sum(counts.values())
        parts = [f"{counts[k]} {k}" for k in ("completed", "pruned", "diverged", "failed") if counts.get(k)]
        elapsed = format_duration(time.monotonic() - self._start)
        head = f"{self.phase}: {done} of {self.expected} {self.unit} in {elapsed}"
        if unfinished:  # Ray trials; in runs, the runs not done
            left = max(self.expected - done, 1) if self.unit == "runs" else unfinished
            head = (
                f"{self.phase}: interrupted after {elapsed}, {left} of {self.expected} {self.unit} unfinished"
            )
        text = head + (": " + ", ".join(parts) if parts else "")
        best = self._best() if self.ranked else None
        if best is not None:
            text += f"; best {self.metric} {best[1]:.4g} ({_named(best[0])})"
        return text

    def finish(self, unfinished: int = 0) -> None:
        """End the phase: the progress line gives way to the summary."""
        self._clear()
        self.stream.write(self.summary(unfinished) + "\n")
        self.stream.flush()

    # ------------------------------------------------------------------ Ray Tune's hooks
    def _seen(self, trials: list[Any]) -> None:
        self._trials = list(trials)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._seen(trials)
        self._redraw()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._seen(trials)
        done = int((trial.last_result or {}).get("epoch", 0) or 0)
        verb = f"continued after epoch {done}" if done else "started"
        label, _, config = _named(trial).partition(": ")
        self._event(f"{label} {verb}" + (f": {config}" if config else ""))

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._seen(trials)
        last = trial.last_result or {}
        outcome = result_outcome(last, self.budget)  # Ray marks the trial TERMINATED just after
        epoch = int(last.get("epoch", 0) or 0)
        value = self._metric(trial)
        shown = f"{self.metric} {value:.4g}" if value is not None else f"no {self.metric}"
        if outcome == "pruned":
            self._event(f"{trial_label(trial)} pruned at epoch {epoch} of {self.budget}: {shown}")
        elif outcome == "diverged":
            self._line(f"{self.phase} {trial_label(trial)} diverged at epoch {epoch} (non-finite loss)")
        else:
            seconds = float(last.get("time_total_s", 0.0) or 0.0)
            epochs = f"{epoch} epoch{'s' if epoch != 1 else ''}"
            diverged = members_diverged(trial)
            members = f"; {diverged} of {trial_runs(trial)} runs diverged" if diverged else ""
            self._event(
                f"{trial_label(trial)} completed: {shown} ({epochs}, {format_duration(seconds)}{members})"
            )

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._seen(trials)
        self._line(
            f"{self.phase} {trial_label(trial)} failed, retrying from its checkpoint: {_read_error(trial)}"
        )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._seen(trials)
        self._line(f"{self.phase} {trial_label(trial)} failed: {_read_error(trial)}")
