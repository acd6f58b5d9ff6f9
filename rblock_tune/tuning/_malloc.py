"""The study driver's C heap: how many glibc malloc arenas its threads share.

glibc gives each new thread of a process its own malloc arena, up to eight per core, and memory a
thread frees stays in its arena. A study's driver runs many short-lived threads (Ray's, MLflow's,
SQLAlchemy's) beside Ray's long-lived ones, so with glibc's default the freed memory scatters over
up to 16 arenas (on 2 cores) and the driver's RSS grows with every trial faster than what it holds.
Measured on the 60-trial sweep of ``tests/tuning/test_many_trials.py`` (5 interleaved pairs, see
docs/benchmarks.md): with the default, RSS grew by a median 185 KiB per trial, of which the arenas'
free space 137 KiB and the C heap in use 41 KiB; with two arenas, RSS 128 KiB, free space 20 KiB,
in use 40 KiB. The study's wall time did not change beyond the machine's noise (medians 53.2 s and
51.0 s, each run 49-66 s).

Linux with glibc only; ``MALLOC_ARENA_MAX`` in the environment (glibc reads it at start) is the
operator's choice and is left alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["ARENA_ENV", "DRIVER_ARENAS", "limit_arenas"]

DRIVER_ARENAS = 2
"""Malloc arenas a study's driver keeps (its main thread's and one more)."""

ARENA_ENV = "MALLOC_ARENA_MAX"
"""glibc's own setting of the same limit; when set, the driver keeps it."""

_M_ARENA_MAX = -8  # mallopt parameter, <malloc.h>


def limit_arenas(arenas: int = DRIVER_ARENAS) -> bool:
    """Let this process's threads create no more than ``arenas`` glibc malloc arenas from now on
    (arenas made before stay); whether the limit was set (False: not glibc, or ``MALLOC_ARENA_MAX``
    set)."""
    if sys.platform != "linux" or os.environ.get(ARENA_ENV):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl has mallopt as a no-op)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))
