"""Where Ray's own output goes: the study's log, unless -v; Ray's printer of worker output swapped."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray  # noqa: F401  (sets up the "ray" logger's own handler)
from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

from rblock_tune.tuning._ray_output import route_ray_output, route_worker_output, tune_verbose
from rblock_tune.tuning._verbosity import NORMAL, QUIET, VERBOSE


@pytest.fixture
def clean() -> Iterator[None]:
    """Start from Ray's own output (a study run earlier in this process routed it to its log), and
    leave the ray logger, the environment and the dispatcher as they were."""
    route_ray_output(Path(os.devnull), VERBOSE)  # puts back what an earlier study swapped
    route_worker_output(VERBOSE)
    engine = os.environ.get("RAY_AIR_NEW_OUTPUT")
    yield
    route_ray_output(Path(os.devnull), VERBOSE)  # puts back what it swapped
    for name in ("ray_print_logs", "rblock_study_log", "fake_printer"):
        dispatcher.remove_handler(name)
    assert os.environ.get("RAY_AIR_NEW_OUTPUT") == engine


def test_ray_logs_go_to_the_study_log_and_verbose_brings_them_back(tmp_path: Path, clean: None) -> None:
    ray_handlers = list(logging.getLogger("ray").handlers)
    log = tmp_path / "study.log"
    route_ray_output(log, NORMAL)
    assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0" and tune_verbose(NORMAL) == tune_verbose(QUIET) == 0
    assert os.environ["TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"] == "0"
    assert not set(ray_handlers) & set(logging.getLogger("ray").handlers)
    logging.getLogger("ray.tune.execution").warning("a snapshot warning")
    assert "a snapshot warning" in log.read_text()
    route_ray_output(log, VERBOSE)
    assert logging.getLogger("ray").handlers == ray_handlers and tune_verbose(VERBOSE) == 1


def test_worker_output_goes_to_the_log_instead_of_rays_printer(tmp_path: Path, clean: None) -> None:
    printed: list[Any] = []
    dispatcher.add_handler("ray_print_logs", printed.append)  # as ray.init(log_to_driver=True) does
    log = tmp_path / "study.log"
    route_ray_output(log, NORMAL)
    assert route_worker_output(NORMAL)
    worker = {"pid": 12, "actor_name": "run_trial", "is_err": True, "lines": ["Traceback (most recent"]}
    dispatcher.emit(worker)
    status = ["======== Autoscaler status: 2026-12-01 ========", "Node status"]
    dispatcher.emit({"pid": "autoscaler", "is_err": False, "lines": status})
    text = log.read_text()
    assert printed == [] and "(run_trial pid=12) Traceback (most recent" in text
    assert "Autoscaler status" not in text  # as Ray's printer: only the autoscaler's events
    assert route_worker_output(VERBOSE) is False
    assert [name for name, _ in dispatcher.handlers if name in ("ray_print_logs", "rblock_study_log")] == [
        "ray_print_logs"
    ]
