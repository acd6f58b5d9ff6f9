"""``load_dataset``: source -> cached uint8 tensors -> validation split -> subset -> statistics."""

from __future__ import annotations

import logging
import time

import torch

from rblock_tune.config import DataConfig
from rblock_tune.data._dataset import Dataset, RawSplits
from rblock_tune.data._paths import resolve_cache_dir, resolve_data_root
from rblock_tune.data._sources import load_cifar, load_imagefolder, load_tinyimagenet
from rblock_tune.data._split import channel_stats, stratified_pick
from rblock_tune.data._synthetic import make_synthetic
from rblock_tune.errors import DataError

__all__ = ["DEFAULT_VAL_SIZE", "default_val_size", "load_dataset", "load_raw"]

logger = logging.getLogger("rblock_tune.data")

DEFAULT_VAL_SIZE: dict[str, int] = {"cifar10": 5000, "cifar100": 5000, "tinyimagenet": 10000}
"""Validation images held out by default; other datasets hold out 10% of the training set."""


def default_val_size(name: str, n_train: int) -> int:
    """The validation-set size used when ``data.val_size`` is not set.

    Args:
        name: dataset name.
        n_train: images in the full training set.

    Returns:
        5000 for CIFAR-10/100, 10000 for Tiny ImageNet, else 10% of ``n_train``
        (rounded, at least 1).
    """
    if name in DEFAULT_VAL_SIZE:
        return DEFAULT_VAL_SIZE[name]
    return max(1, round(0.1 * n_train))


def load_raw(config: DataConfig) -> RawSplits:
    """The full train and test sets of ``config.name``, decoded (or read from the cache).

    Synthetic data are generated (never cached); every other dataset is looked up under
    :func:`~rblock_tune.data.resolve_data_root` and cached under
    :func:`~rblock_tune.data.resolve_cache_dir`.

    Args:
        config: the data section of a trial config.

    Raises:
        DataError: the dataset is missing, has the wrong layout or cannot be read.
    """
    name = config.name
    if name == "synthetic":
        return make_synthetic(config.synthetic_size, config.synthetic_classes, config.image_size or 32)
    if config.image_size is not None and name != "imagefolder":
        logger.warning("data.image_size=%d is ignored for %s", config.image_size, name)
    root = resolve_data_root(config)
    cache_dir = resolve_cache_dir(config)
    if name in ("cifar10", "cifar100"):
        return load_cifar(name, root, cache_dir, config.download)
    if name == "tinyimagenet":
        return load_tinyimagenet(root, cache_dir)
    if name == "imagefolder":
        return load_imagefolder(root, cache_dir, config.image_size)
    raise DataError(f"unknown dataset {name!r}")


def load_dataset(config: DataConfig) -> Dataset:
    """Load a dataset, hold out a validation set, take a subset and compute statistics.

    Steps:

    1. the full train and test sets come from :func:`load_raw` (decoded once, then read
       from the on-disk cache);
    2. ``data.val_size`` training images (default: :func:`default_val_size`; 0 gives empty
       validation tensors) are held out, stratified by class;
    3. ``data.subset`` (an image count or a fraction) of the remaining training images is
       kept, stratified by class;
    4. the per-channel mean and std of the resulting training images are computed.

    Steps 2 and 3 draw from one generator seeded with ``data.split_seed`` only, so every
    trial sees the same split whatever its seed. Row order within each split follows the
    source order.

    Args:
        config: the data section of a trial config.

    Returns:
        The :class:`Dataset`, uint8 images and int64 labels on the CPU.

    Raises:
        DataError: a missing or malformed dataset, or a ``val_size`` / ``subset`` that does
            not fit the number of training images.
    """
    start = time.perf_counter()
    raw = load_raw(config)
    name = config.name
    num_classes = len(raw.class_names)
    n_train = int(raw.train_y.shape[0])

    val_size = config.val_size if config.val_size is not None else default_val_size(name, n_train)
    if val_size >= n_train:
        what = "data.val_size" if config.val_size is not None else "the default data.val_size"
        raise DataError(
            f"{what}={val_size} is too large: {name} has {n_train} training images, so at most "
            f"{n_train - 1} can be held out for validation; set data.val_size lower (0 for none)"
        )
    generator = torch.Generator().manual_seed(config.split_seed)
    val_idx, train_idx = stratified_pick(raw.train_y, num_classes, val_size, generator)

    if config.subset is not None:
        available = int(train_idx.shape[0])
        if isinstance(config.subset, float):
            count = max(1, round(config.subset * available))
        else:
            count = config.subset
            if count > available:
                raise DataError(
                    f"data.subset={count} is larger than the {available} training images left "
                    f"after holding out data.val_size={val_size} of {n_train}; "
                    f"set data.subset to at most {available}, or lower data.val_size"
                )
        picked, _ = stratified_pick(raw.train_y[train_idx], num_classes, count, generator)
        train_idx = train_idx[picked]

    train_x = raw.train_x[train_idx]
    mean, std = channel_stats(train_x)
    dataset = Dataset(
        name=name,
        train_x=train_x,
        train_y=raw.train_y[train_idx],
        val_x=raw.train_x[val_idx],
        val_y=raw.train_y[val_idx],
        test_x=raw.test_x.contiguous(),
        test_y=raw.test_y.contiguous(),
        num_classes=num_classes,
        class_names=raw.class_names,
        mean=mean,
        std=std,
    )
    logger.info("%r ready in %.2f s", dataset, time.perf_counter() - start)
    return dataset
