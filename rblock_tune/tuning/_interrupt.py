"""A Ctrl-C that Python swallowed is not forgotten.

Python's SIGINT handler raises ``KeyboardInterrupt`` wherever the main thread is; when that is inside a
finalizer (a weakref callback, a ``__del__``, of which Ray's and MLflow's start-up run many), Python
prints "Exception ignored in ..." and goes on, and a Ctrl-C pressed while a study starts was lost: the
study ran to its end. :func:`catch_interrupts` (the CLI, around a study) installs a handler that also
remembers the signal, and :func:`raise_if_interrupted` raises it again where it cannot be swallowed:
before and after each phase's Ray Tune run (during which Ray Tune's own handler takes SIGINT). Within
the block, a swallowed ``KeyboardInterrupt`` is not printed either (``sys.unraisablehook``): it is not
lost, and a traceback would only alarm the user. Any other exception a finalizer swallows is reported
as before.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = ["catch_interrupts", "raise_if_interrupted"]

_requested = threading.Event()


def _handler(signum: int, frame: FrameType | None) -> None:
    _requested.set()
    raise KeyboardInterrupt


@contextmanager
def catch_interrupts() -> Iterator[None]:
    """Within the block (in the main thread), SIGINT raises ``KeyboardInterrupt`` and is remembered."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested.clear()
    previous_hook = sys.unraisablehook

    def quiet_hook(unraisable: Any) -> None:
        if issubclass(unraisable.exc_type, KeyboardInterrupt) and _requested.is_set():
            return  # remembered: raise_if_interrupted raises it where it counts
        previous_hook(unraisable)

    previous = signal.signal(signal.SIGINT, _handler)
    sys.unraisablehook = quiet_hook
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook
        _requested.clear()


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if a SIGINT came within :func:`catch_interrupts` (once)."""
    if _requested.is_set():
        _requested.clear()
        raise KeyboardInterrupt
