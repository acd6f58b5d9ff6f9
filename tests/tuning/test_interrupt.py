"""A Ctrl-C that a finalizer swallowed is raised again where it cannot be."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from typing import Any

import pytest

from rblock_tune.tuning._interrupt import catch_interrupts, raise_if_interrupted


class _Finalized:
    """Receives SIGINT while Python runs its finalizer (as a weakref callback in Ray's start-up did)."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the handler runs here, inside the finalizer
            time.sleep(0.01)


class _Failing:
    """A finalizer that fails otherwise: still reported."""

    def __del__(self) -> None:
        raise ValueError("a finalizer's own error")


def test_a_ctrl_c_a_finalizer_swallowed_is_raised_again_and_not_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    printed: list[Any] = []  # what Python's hook would print as "Exception ignored in ..."
    monkeypatch.setattr(sys, "unraisablehook", printed.append)
    before = signal.getsignal(signal.SIGINT)  # another test's (Ray's) handler may be the one in place
    with catch_interrupts():
        _Finalized()
        gc.collect()  # Python went on past the swallowed KeyboardInterrupt
        _Failing()
        gc.collect()
        assert [u.exc_type for u in printed] == [ValueError]  # no traceback for the Ctrl-C
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()
        raise_if_interrupted()  # once
    assert signal.getsignal(signal.SIGINT) is before
    assert sys.unraisablehook == printed.append


def test_without_a_ctrl_c_nothing_is_raised() -> None:
    with catch_interrupts():
        raise_if_interrupted()
