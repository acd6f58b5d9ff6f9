"""Which process runs a study: the driver record of ``study.json``, and whether that driver lives.

A running study records its driver (pid, host, the process's start time) in its state
(:class:`rblock_tune.layout.DriverRecord`) and clears it when it returns, finished or interrupted. A
record whose process is gone (a driver killed, or a crash) means the study is interrupted; the
start time tells the driver from another process that was given the same pid later.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from rblock_tune.layout import DriverRecord, StudyState

__all__ = [
    "FINISHED",
    "INTERRUPTED",
    "RUNNING",
    "driver_alive",
    "process_started",
    "study_state",
    "this_driver",
]

RUNNING = "running"
FINISHED = "finished"
INTERRUPTED = "interrupted"


def _proc_stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces); [] when
    there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat.rsplit(")", 1)[-1].split()


def process_started(pid: int) -> str | None:
    """When process ``pid`` started, as the OS tells it (clock ticks since boot, from
    ``/proc/<pid>/stat``; psutil's create time elsewhere); None when there is no such process or
    the OS does not tell."""
    fields = _proc_stat(pid)
    if fields:
        return fields[19] if len(fields) > 19 else None  # field 22 of proc(5): starttime
    if Path("/proc/self/stat").exists():
        return None  # /proc exists, so the process does not
    try:
        import psutil
    except ImportError:
        return None
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return None


def this_driver() -> DriverRecord:
    """The record of this process as a study's driver."""
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "started": process_started(pid)}


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def driver_alive(record: DriverRecord | dict[str, Any] | None) -> bool | None:
    """Whether the driver of ``record`` still runs: False when there is none or it is gone, None
    when it ran on another host (this one cannot tell)."""
    if not record:
        return False
    if record.get("host") != socket.gethostname():
        return None
    pid = int(record.get("pid", 0) or 0)
    if pid <= 0 or not _pid_exists(pid):
        return False
    fields = _proc_stat(pid)
    if fields and fields[0] in ("Z", "X"):  # a killed driver its parent has not reaped yet
        return False
    started = record.get("started")
    return started is None or process_started(pid) in (None, started)


def study_state(state: StudyState) -> str:
    """:data:`RUNNING` (a live driver, or one on another host), :data:`FINISHED` (every phase done) or
    :data:`INTERRUPTED`."""
    if driver_alive(state.get("driver")) is not False:
        return RUNNING
    if state.get("search_done") and state.get("seeds_done"):
        return FINISHED
    return INTERRUPTED
