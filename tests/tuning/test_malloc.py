"""The study driver's malloc arena limit (rblock_tune.tuning._malloc), seen in glibc's own count."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rblock_tune.tuning._malloc import ARENA_ENV

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc arenas")

THREADS = 8
PROGRAM = f"""
import ctypes, sys, threading
from rblock_tune.tuning._malloc import limit_arenas
print(limit_arenas(int(sys.argv[1])) if sys.argv[1] != "none" else None, flush=True)
both = threading.Barrier({THREADS})
def work():
    both.wait()  # all alive at once: none takes over the arena of one that ended
    kept = [bytearray(100_000) for _ in range(10)]  # from the C heap (not Python's small objects)
    both.wait()
threads = [threading.Thread(target=work) for _ in range({THREADS})]
for t in threads:
    t.start()
for t in threads:
    t.join()
ctypes.CDLL(None).malloc_stats()  # to stderr: one "Arena N:" block per arena
"""


def _arenas(limit: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if k != ARENA_ENV}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, limit],
        capture_output=True,
        text=True,
        env={**environ, **(env or {})},
        timeout=120,
        check=True,
    )
    return done.stdout.strip(), sum(line.startswith("Arena ") for line in done.stderr.splitlines())


def test_threads_share_the_limited_arenas_and_without_the_limit_each_gets_one() -> None:
    said, limited = _arenas("2")
    assert said == "True" and limited <= 2
    said, unlimited = _arenas("none")  # glibc's default: a new thread makes a new arena (up to 8 per core)
    assert said == "None" and unlimited >= min(THREADS, 8 * (os.cpu_count() or 1)) > 2


def test_an_operators_malloc_arena_max_is_left_alone() -> None:
    said, arenas = _arenas("2", {ARENA_ENV: "4"})
    assert said == "False" and 2 < arenas <= 4
