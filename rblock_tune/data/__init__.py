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
"""

from __future__ import annotations

from rblock_tune.data._dataset import Dataset
from rblock_tune.data._device_loader import DeviceLoader
from rblock_tune.data._paths import resolve_cache_dir, resolve_data_root
from rblock_tune.data._prepare import ensure_source, load_dataset
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
