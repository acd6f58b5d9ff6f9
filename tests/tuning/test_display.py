"""The study's display (a Ray Tune callback) with fake trials, and the driver record of a study."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rblock_tune.tuning._display import (
    StudyDisplay,
    describe_config,
    error_reason,
    format_duration,
    trial_outcome,
)
from rblock_tune.tuning._verbosity import NORMAL, QUIET, VERBOSE


@dataclass
class FakeTrial:
    """What the display reads of a Ray Tune trial."""

    trial_id: str
    experiment_tag: str
    config: dict[str, Any]
    status: str = "PENDING"
    last_result: dict[str, Any] = field(default_factory=dict)
    error_file: str | None = None


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def search_trial(n: int, **overrides: Any) -> FakeTrial:
    return FakeTrial(f"id{n}", f"{n}_reg_alpha=1", {"overrides": overrides})


def run_events(display: StudyDisplay, tmp_path: Path) -> list[FakeTrial]:
    """Four search trials of budget 4: completed, pruned at epoch 1, failed, diverged."""
    trials = [
        search_trial(1, **{"reg.variant": "sdrop_dml", "reg.alpha": 3.6000912, "reg.drop_prob": 0.4421}),
        search_trial(2, **{"reg.variant": "bdrop_dml", "reg.alpha": 0.19351}),
        search_trial(3, **{"reg.variant": "bdrop_dml", "reg.alpha": 9.0}),
        search_trial(4, **{"reg.variant": "sdrop_dml", "reg.alpha": 1.0}),
    ]
    for trial in trials:
        trial.status = "RUNNING"
        display.on_trial_start(0, trials, trial)
    trials[0].last_result = {"epoch": 4, "val_acc": 0.61234, "time_total_s": 95.0}
    display.on_trial_complete(1, trials, trials[0])
    trials[0].status = "TERMINATED"
    trials[1].last_result = {"epoch": 1, "val_acc": 0.2}
    display.on_trial_complete(2, trials, trials[1])
    trials[1].status = "TERMINATED"
    error = tmp_path / "error.txt"
    error.write_text(
        "Failure # 1 (occurred at 2026-12-01_10-00-00)\n"
        "ray::ImplicitFunc.train() (pid=12, ip=127.0.0.1, actor_id=ab)\n"
        '  File "trainable.py", line 3, in run_trial\n'
        "    raise ValueError('boom')\n"
        "ValueError: boom\n"
    )
    trials[2].error_file = str(error)
    trials[2].status = "ERROR"
    display.on_trial_error(3, trials, trials[2])
    trials[3].last_result = {"epoch": 2, "diverged": 1, "val_acc": 0.1}
    display.on_trial_complete(4, trials, trials[3])
    trials[3].status = "TERMINATED"
    display.on_step_end(5, trials)
    return trials


def test_one_line_per_trial_event_when_not_a_terminal(tmp_path: Path) -> None:
    out = io.StringIO()
    display = StudyDisplay("search", 5, "val_acc", "max", budget=4, verbosity=NORMAL, stream=out)
    run_events(display, tmp_path)
    display.finish(unfinished=1)
    lines = out.getvalue().splitlines()
    assert lines[0] == "search trial 1 started: sdrop_dml alpha=3.6 drop_prob=0.442"
    assert lines[1] == "search trial 2 started: bdrop_dml alpha=0.194"
    assert "search trial 1 completed: val_acc 0.6123 (4 epochs, 1m35s)" in lines
    assert "search trial 2 pruned at epoch 1 of 4: val_acc 0.2" in lines
    assert "search trial 3 failed: ValueError: boom" in lines
    assert "search trial 4 diverged at epoch 2 (non-finite loss)" in lines
    assert len(lines) == 4 + 4 + 1  # four starts, four ends, the summary
    summary = lines[-1]
    assert summary.startswith("search: interrupted after ")
    assert "1 of 5 trials unfinished: 1 completed, 1 pruned, 1 diverged, 1 failed" in summary
    assert summary.endswith("best val_acc 0.6123 (trial 1: sdrop_dml alpha=3.6 drop_prob=0.442)")
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_quiet_keeps_failures_and_the_summary(tmp_path: Path) -> None:
    out = io.StringIO()
    display = StudyDisplay("search", 4, "val_acc", "max", budget=4, verbosity=QUIET, stream=out)
    run_events(display, tmp_path)
    display.finish()
    lines = out.getvalue().splitlines()
    assert lines[:2] == [
        "search trial 3 failed: ValueError: boom",
        "search trial 4 diverged at epoch 2 (non-finite loss)",
    ]
    assert lines[2].startswith("search: 4 of 4 trials in ") and len(lines) == 3


def test_terminal_gets_a_progress_line_redrawn_in_place(tmp_path: Path) -> None:
    out = Terminal()
    display = StudyDisplay("search", 6, "val_acc", "max", budget=4, verbosity=NORMAL, stream=out)
    trials = run_events(display, tmp_path)
    progress = display.progress()
    assert progress.startswith("search 4/6 done, 0 running, 2 pending | best val_acc 0.6123 | ")
    assert ", eta ~" in progress
    text = out.getvalue()
    assert "\r" in text and "\x1b[K" in text  # redrawn, not appended
    kept = [
        line.split("\r")[-1].removeprefix("\x1b[K") for line in text.split("\n")[:-1]
    ]  # stays above the bar
    assert [k for k in kept if k] == [
        "search trial 3 failed: ValueError: boom",
        "search trial 4 diverged at epoch 2 (non-finite loss)",
    ]
    trials.append(search_trial(5))
    trials[-1].status = "RUNNING"
    display.on_trial_start(6, trials, trials[-1])
    assert display.progress().startswith("search 4/6 done, 1 running, 1 pending")
    display.finish()
    assert out.getvalue().endswith("\r\x1b[K" + display.summary() + "\n")


def test_verbose_writes_events_as_lines_even_on_a_terminal(tmp_path: Path) -> None:
    out = Terminal()
    display = StudyDisplay("search", 4, "val_acc", "max", budget=4, verbosity=VERBOSE, stream=out)
    run_events(display, tmp_path)
    assert "\r" not in out.getvalue() and "search trial 1 started" in out.getvalue()


def test_seed_runs_and_resumed_trials_are_named_by_what_they_are() -> None:
    out = io.StringIO()
    display = StudyDisplay("seeds", 2, "val_loss", "min", budget=3, stream=out)
    first = FakeTrial("a", "0_arm=top1,seed=2", {"arm": "top1", "seed": 2}, status="RUNNING")
    second = FakeTrial("b", "1_arm=none,seed=2", {"arm": "none", "seed": 2}, status="RUNNING")
    second.last_result = {"epoch": 2, "val_loss": 1.5}
    display.on_trial_start(0, [first, second], first)
    display.on_trial_start(0, [first, second], second)
    for trial, loss in ((first, 1.2), (second, 0.9)):
        trial.last_result = {"epoch": 3, "val_loss": loss}
        display.on_trial_complete(1, [first, second], trial)
        trial.status = "TERMINATED"
    assert out.getvalue().splitlines() == [
        "seeds top1 seed 2 started",
        "seeds none seed 2 continued after epoch 2",
        "seeds top1 seed 2 completed: val_loss 1.2 (3 epochs, 0s)",
        "seeds none seed 2 completed: val_loss 0.9 (3 epochs, 0s)",
    ]
    assert display.summary().endswith("trials in 0s: 2 completed")  # no best seed run: arms are compared
    assert "best" not in display.progress()


def test_best_follows_the_mode() -> None:
    display = StudyDisplay("search", 2, "val_loss", "min", budget=3, stream=io.StringIO())
    trials = [search_trial(1, **{"train.lr": 0.1}), search_trial(2, **{"train.lr": 0.01})]
    for trial, loss in zip(trials, (1.2, 0.9), strict=True):
        trial.status, trial.last_result = "TERMINATED", {"epoch": 3, "val_loss": loss}
    display.on_step_end(0, trials)
    assert display.summary().endswith("; best val_loss 0.9 (trial 2: lr=0.01)")
    assert " | best val_loss 0.9 | " in display.progress()


def test_outcomes_reasons_and_durations() -> None:
    trial = search_trial(1)
    assert trial_outcome(trial, 4) == "pending"
    trial.status = "TERMINATED"
    trial.last_result = {"epoch": 4}
    assert trial_outcome(trial, 4) == "completed"
    trial.last_result = {"epoch": 3}
    assert trial_outcome(trial, 4) == "pruned"
    trial.status = "ERROR"
    assert trial_outcome(trial, 4) == "failed"
    assert (
        error_reason("Failure # 1 (x)\nTraceback (most recent call last):\n  File x\nKeyError: 'a'\n")
        == "KeyError: 'a'"
    )
    assert error_reason(None) == "no error recorded"
    assert [format_duration(s) for s in (4.4, 65, 3 * 3600 + 120)] == ["4s", "1m05s", "3h02m"]
    assert describe_config({"overrides": {}}) == "the base config"
    assert (
        describe_config({"overrides": {"train.lr": 0.012345, "model.name": "vgg16"}})
        == "lr=0.0123 name=vgg16"
    )


def test_display_pickles_without_its_stream() -> None:
    """Ray saves the run config's callbacks with the experiment (tuner.pkl)."""
    display = StudyDisplay("search", 2, "val_acc", "max", budget=2, stream=io.StringIO())
    display.on_step_end(0, [search_trial(1)])
    copy = pickle.loads(pickle.dumps(display))
    assert copy.stream is sys.stderr and copy.progress().startswith("search 0/2 done, 0 running, 2 pending")


def test_exit_raised_in_a_teardown_callback_is_not_reported(tmp_path: Path) -> None:
    """Ray's SIGTERM handler raising SystemExit in a weakref callback (a trial worker's exit) prints no
    traceback; another exception raised there still does. In a process of its own: pytest has its own
    hook for such exceptions."""
    script = tmp_path / "teardown.py"
    script.write_text(
        textwrap.dedent(
            """
            import weakref
            from rblock_tune.tuning._trainable import quiet_exit_in_teardown

            class Thing:
                pass

            def exits(_):
                raise SystemExit(1)

            def fails(_):
                raise RuntimeError("kept")

            quiet_exit_in_teardown()
            quiet_exit_in_teardown()  # once is enough
            for callback in (exits, fails):
                thing = Thing()
                ref = weakref.ref(thing, callback)
                del thing
            print("went on")
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0 and done.stdout == "went on\n", done.stderr
    assert "SystemExit" not in done.stderr and done.stderr.count("Traceback") == 1
    assert "RuntimeError: kept" in done.stderr


def test_a_fused_seed_phase_is_counted_in_runs_diverged_members_included() -> None:
    out = io.StringIO()
    display = StudyDisplay("seeds", 6, "val_acc", "max", budget=3, stream=out, unit="runs")
    first = FakeTrial("a", "0_arm=top1", {"arm": "top1", "seeds": [1, 2, 3]}, status="RUNNING")
    second = FakeTrial("b", "1_arm=none", {"arm": "none", "seeds": [1, 2, 3]})
    trials = [first, second]
    display.on_trial_start(0, trials, first)
    display.on_step_end(0, trials)
    assert display.progress().startswith("seeds 0/6 done, 3 running, 3 pending")
    first.last_result = {"epoch": 3, "val_acc": 0.5, "seed": 3, "members_diverged": 1}
    display.on_trial_complete(1, trials, first)
    first.status = "TERMINATED"
    second.last_result = {"epoch": 2, "diverged": 1, "val_acc": 0.1, "seed": 3, "members_diverged": 3}
    display.on_trial_complete(2, trials, second)
    second.status = "TERMINATED"
    assert (
        "seeds top1 seeds 1,2,3 completed: val_acc 0.5 (3 epochs, 0s; 1 of 3 runs diverged)" in out.getvalue()
    )
    assert display.summary().endswith("6 of 6 runs in 0s: 2 completed, 4 diverged")
    assert display.summary(unfinished=1).startswith("seeds: interrupted after 0s, 1 of 6 runs unfinished")
