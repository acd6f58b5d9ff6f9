"""The shared CIFAR-10 copy for the real-data tests: ``RBLOCK_CIFAR10_DIR`` (CI sets it); without it
they are skipped, unless ``RBLOCK_REQUIRE_REAL_DATA=1``, which makes a missing copy a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    root = os.environ.get("RBLOCK_CIFAR10_DIR", "")
    if root and (Path(root) / "train").is_dir() and (Path(root) / "test").is_dir():
        return Path(root)
    message = f"RBLOCK_CIFAR10_DIR={root!r} is not an unpacked CIFAR-10 image folder (train/, test/)"
    if os.environ.get("RBLOCK_REQUIRE_REAL_DATA") == "1":
        pytest.fail(message)
    pytest.skip(message)
