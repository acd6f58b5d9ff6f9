"""Where datasets and the decoded-tensor cache live."""

from __future__ import annotations

import os
from pathlib import Path

from rblock_tune.config import DataConfig

__all__ = ["DATA_DIR_ENV", "CACHE_DIR_ENV", "resolve_cache_dir", "resolve_data_root"]

DATA_DIR_ENV = "RBLOCK_DATA_DIR"
"""Environment variable naming the data root when ``data.root`` is not set."""

CACHE_DIR_ENV = "RBLOCK_CACHE_DIR"
"""Environment variable naming the cache folder when ``data.cache_dir`` is not set."""


def _absolute(path: str | Path) -> Path:
    return Path(os.path.normpath(Path(path).expanduser().absolute()))


def resolve_data_root(config: DataConfig) -> Path:
    """The folder that holds the dataset, as an absolute path.

    Args:
        config: the data section of a trial config.

    Returns:
        ``config.root`` if set, else ``$RBLOCK_DATA_DIR`` if set and non-empty,
        else ``./data`` (relative to the current working directory). ``~`` is expanded.
    """
    if config.root:
        return _absolute(config.root)
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    if env:
        return _absolute(env)
    return _absolute("data")


def resolve_cache_dir(config: DataConfig) -> Path:
    """The folder where decoded uint8 tensors are cached, as an absolute path.

    Args:
        config: the data section of a trial config.

    Returns:
        ``config.cache_dir`` if set, else ``$RBLOCK_CACHE_DIR`` if set and non-empty,
        else ``~/.cache/rblock-tune``. The folder is not created here.
    """
    if config.cache_dir:
        return _absolute(config.cache_dir)
    env = os.environ.get(CACHE_DIR_ENV, "").strip()
    if env:
        return _absolute(env)
    return _absolute(Path.home() / ".cache" / "rblock-tune")
