"""Whether a study's recorded driver still runs it: a live process, a killed one (reaped or not), a pid
given to another process, a driver on another host."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from rblock_tune.tuning._driver import (
    FINISHED,
    INTERRUPTED,
    RUNNING,
    driver_alive,
    process_started,
    study_state,
    this_driver,
)


def test_a_killed_driver_is_not_alive_even_before_it_is_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {"pid": child.pid, "host": socket.gethostname(), "started": process_started(child.pid)}
        assert record["started"] is not None and driver_alive(record) is True
        assert study_state({"driver": record, "search_done": True, "seeds_done": True}) == RUNNING
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while driver_alive(record) and time.monotonic() < deadline:  # a zombie until reaped
            time.sleep(0.05)
        assert driver_alive(record) is False
    finally:
        child.kill()
        child.wait()
    assert driver_alive(record) is False
    assert study_state({"driver": record, "search_done": True, "seeds_done": False}) == INTERRUPTED


def test_a_pid_given_to_another_process_is_not_the_driver() -> None:
    me = this_driver()
    assert driver_alive(me) is True
    assert driver_alive({**me, "started": "1"}) is False  # same pid, another start time


def test_states_without_a_live_driver() -> None:
    assert driver_alive(None) is False
    assert driver_alive({**this_driver(), "host": "another-host"}) is None  # cannot tell from here
    assert study_state({"driver": {**this_driver(), "host": "another-host"}}) == RUNNING
    assert study_state({"driver": None, "search_done": True, "seeds_done": True}) == FINISHED
    assert study_state({"search_done": False, "seeds_done": True}) == INTERRUPTED
