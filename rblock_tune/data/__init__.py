"""Datasets as uint8 tensors, decoded once and cached, and batches made on the device.

Public API:

* :func:`ensure_source` checks that a dataset is there (or fetches it) before any work needs it.
* :func:`load_dataset` turns a :class:`~rblock_tune.config.DataConfig` into a
  :class:`Dataset`: CIFAR-10/100, Tiny ImageNet, any image folder, or synthetic data,
  with a validation split and subset fixed by ``data.split_seed``.
* :class:`DeviceLoader` cuts, augments (random crop with zero padding, horizontal flip)
  and normalises batches with tensor ops on the training device.
* :func:`probe_rows` picks the fixed, class-stratified probe batch of the consistency metrics.
* :func:`resolve_data_root` and :func:`resolve_cache_dir` say where data and the cache live
  (``data.root`` / ``$RBLOCK_DATA_DIR`` / ``./data`` and ``data.cache_dir`` /
  ``$RBLOCK_CACHE_DIR`` / ``~/.cache/rblock-tune``).

:func:`ensure_source` and the two resolvers import no torch: a study's driver checks its data with them
and never imports torch (it only hands trials to Ray). The other names are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rblock_tune.data._locate import ensure_source
from rblock_tune.data._paths import resolve_cache_dir, resolve_data_root

if TYPE_CHECKING:
    from rblock_tune.data._dataset import Dataset
    from rblock_tune.data._device_loader import DeviceLoader
    from rblock_tune.data._prepare import load_dataset
    from rblock_tune.data._split import allocate, probe_rows, stratified_pick

__all__ = [
    "Dataset",
    "DeviceLoader",
    "allocate",
    "ensure_source",
    "load_dataset",
    "probe_rows",
    "resolve_cache_dir",
    "resolve_data_root",
    "stratified_pick",
]

_LAZY = {
    "Dataset": "rblock_tune.data._dataset",
    "DeviceLoader": "rblock_tune.data._device_loader",
    "load_dataset": "rblock_tune.data._prepare",
    "allocate": "rblock_tune.data._split",
    "probe_rows": "rblock_tune.data._split",
    "stratified_pick": "rblock_tune.data._split",
}
"""The names that need torch, and the module of each: imported when first asked for."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
