"""Where Ray's own output goes: into the study's log file, unless ``-v`` brings it back.

A study shows its own display (:mod:`rblock_tune.tuning._display`); what Ray prints besides (its
trial tables, ``Started a local Ray instance``, snapshot and token warnings, the TensorBoard hint,
the workers' stdout and stderr with the trials' tracebacks) goes to ``<workdir>/<study>/``
:data:`~rblock_tune.layout.STUDY_LOG`, appended to on every run and resume:

- Tune's tables: ``RunConfig(verbose=0)`` (:func:`tune_verbose`) with Ray's earlier output engine
  (``RAY_AIR_NEW_OUTPUT=0``), which then prints nothing; Ray 2.60's new engine, the default, prints
  the experiment's table, its folder and a TensorBoard hint into Ray's temp dir even at ``verbose=0``.
- The ``ray`` logger (Ray's driver-side Python logs, Tune's included): its handlers are swapped for
  a file handler on the log.
- The workers' output, which Ray forwards to the driver (``log_to_driver``): written to the log
  instead of the terminal, by replacing the handler Ray registers for it (``ray_print_logs`` of
  ``ray._private.ray_logging.global_worker_stdstream_dispatcher``; an internal of the Ray minor
  version pinned in pyproject: when it is not there, the workers' output stays on the terminal).

With :data:`~rblock_tune.tuning._display.VERBOSE` all of it stays where Ray puts it. Either way
the warning Ray repeats about experiment snapshots is off: ``CheckpointConfig(num_to_keep=1)``
forces a snapshot after every checkpoint, by design (see :mod:`rblock_tune.tuning._trainable`).
"""

from __future__ import annotations

import logging
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

from rblock_tune.tuning._verbosity import VERBOSE

__all__ = ["route_ray_output", "route_worker_output", "tune_verbose"]

_DISPATCHER_HANDLER = "ray_print_logs"
"""The name under which ``ray.init(log_to_driver=True)`` registers its printer of worker output."""
_OWN_HANDLER = "rblock_study_log"
_WORKERS_LOGGER = "ray.rblock_workers"
"""Worker output is written through this child of ``ray``, so it lands where the ``ray`` logger writes."""


_OUTPUT_ENGINE = "RAY_AIR_NEW_OUTPUT"
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


class _Routing:
    """What this module swapped (one process may run several studies)."""

    file_handler: logging.Handler | None = None
    ray_handlers: list[logging.Handler] | None = None
    output_engine: str | None = None
    """``RAY_AIR_NEW_OUTPUT`` as it was before this module set it."""
    set_output_engine = False


def tune_verbose(verbosity: int) -> int:
    """``RunConfig.verbose``: Ray's trial tables only with ``-v``."""
    return 1 if verbosity >= VERBOSE else 0


def _choose_output_engine(verbosity: int) -> None:
    if _Routing.set_output_engine:  # put back what was there
        if _Routing.output_engine is None:
            os.environ.pop(_OUTPUT_ENGINE, None)
        else:
            os.environ[_OUTPUT_ENGINE] = _Routing.output_engine
        _Routing.set_output_engine = False
    if verbosity < VERBOSE:
        _Routing.output_engine = os.environ.get(_OUTPUT_ENGINE)
        os.environ[_OUTPUT_ENGINE] = "0"
        _Routing.set_output_engine = True


def route_ray_output(log_file: Path, verbosity: int) -> None:
    """Keep Tune's tables off the terminal and send the ``ray`` logger (and a copy of
    ``rblock_tune``'s) to ``log_file``; with :data:`VERBOSE`, leave Ray's output as Ray makes it.
    Call before Ray starts."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    _choose_output_engine(verbosity)
    ray_logger = logging.getLogger("ray")
    own_logger = logging.getLogger("rblock_tune")
    if _Routing.file_handler is not None:
        ray_logger.removeHandler(_Routing.file_handler)
        own_logger.removeHandler(_Routing.file_handler)
        _Routing.file_handler.close()
        _Routing.file_handler = None
    if _Routing.ray_handlers is not None:  # Ray's own, put back before choosing again
        for handler in _Routing.ray_handlers:
            ray_logger.addHandler(handler)
        _Routing.ray_handlers = None
    if verbosity >= VERBOSE:
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a", encoding="utf-8") as log:
        log.write(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')}: study driver {os.getpid()} started\n")
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(_FORMAT)
    _Routing.ray_handlers = list(ray_logger.handlers)
    for old in _Routing.ray_handlers:
        ray_logger.removeHandler(old)
    ray_logger.addHandler(handler)
    ray_logger.propagate = False
    own_logger.addHandler(handler)
    _Routing.file_handler = handler


def _write_worker_lines(data: dict[str, Any]) -> None:
    """Ray's printer of worker output, into the log: the same lines, without colours."""
    lines = list(data.get("lines", []))
    if data.get("pid") == "autoscaler":  # its status every few seconds: only its events, as Ray does
        from ray._private.worker import filter_autoscaler_events

        try:
            lines = list(filter_autoscaler_events(lines) or [])
        except Exception:  # noqa: BLE001  (it asks the GCS; no log line is worth Ray's log thread)
            lines = []
    who = data.get("actor_name") or data.get("task_name") or "worker"
    prefix = f"({who} pid={data.get('pid')})"
    logger = logging.getLogger(_WORKERS_LOGGER)
    level = logging.WARNING if data.get("is_err") else logging.INFO
    for line in lines:
        logger.log(level, "%s %s", prefix, line)


def route_worker_output(verbosity: int) -> bool:
    """After ``ray.init``: write the workers' forwarded output to the study's log instead of the
    terminal (not with :data:`VERBOSE`); whether it is routed there."""
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # another Ray: its printer stays
        return False
    handlers = getattr(dispatcher, "handlers", None)
    if not isinstance(handlers, list):
        return False
    names = {name for name, _ in handlers}
    if verbosity >= VERBOSE:
        if _OWN_HANDLER in names:  # a previous study of this process routed it: Ray's printer again
            from ray._private.worker import print_to_stdstream

            dispatcher.remove_handler(_OWN_HANDLER)
            dispatcher.add_handler(_DISPATCHER_HANDLER, partial(print_to_stdstream, ignore_prefix=False))
        return False
    if _Routing.file_handler is not None:  # ray.init sets the format of the ray logger's handlers
        _Routing.file_handler.setFormatter(_FORMAT)
    if _DISPATCHER_HANDLER not in names and _OWN_HANDLER not in names:
        return False  # Ray forwards nothing (log_to_driver=False)
    dispatcher.remove_handler(_DISPATCHER_HANDLER)
    if _OWN_HANDLER not in names:
        dispatcher.add_handler(_OWN_HANDLER, _write_worker_lines)
    return True
