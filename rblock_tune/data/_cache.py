"""On-disk cache of decoded datasets: one ``.pt`` file per (dataset, source folder, fingerprint).

A cache file holds the full train and test tensors and the class names, saved with
``torch.save`` and read back with ``torch.load(weights_only=True)`` (CIFAR-10: about 0.2 s).
The file name is a hash of the dataset name, the resolved source path and a cheap
fingerprint of the source (modification times and entry counts of its folders), so a
changed source is decoded again. Files are written to a temporary name and moved into
place with :func:`os.replace`, so a crash never leaves a half-written cache; an
unreadable or inconsistent file is decoded again (with a warning) and replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rblock_tune.data._dataset import RawSplits

__all__ = ["FORMAT_VERSION", "cache_path", "dir_stamp", "file_stamp", "load_or_build"]

logger = logging.getLogger("rblock_tune.data")

FORMAT_VERSION = 1
"""Bump to invalidate every existing cache file."""


def dir_stamp(path: Path) -> list[int]:
    """``[mtime_ns, number of entries]`` of a folder: a cheap change detector."""
    with os.scandir(path) as entries:
        count = sum(1 for _ in entries)
    return [path.stat().st_mtime_ns, count]


def file_stamp(path: Path) -> list[int]:
    """``[mtime_ns, size]`` of a file."""
    st = path.stat()
    return [st.st_mtime_ns, st.st_size]


def _key(name: str, source: Path, variant: str, fingerprint: Any) -> tuple[str, str]:
    material = json.dumps(
        {
            "format": FORMAT_VERSION,
            "name": name,
            "source": str(source),
            "variant": variant,
            "fingerprint": fingerprint,
        },
        sort_keys=True,
    )
    return material, hashlib.sha256(material.encode()).hexdigest()


def _source_tag(name: str, source: Path, variant: str) -> str:
    return hashlib.sha256(f"{name}\0{source}\0{variant}".encode()).hexdigest()[:12]


def cache_path(cache_dir: Path, name: str, source: Path, fingerprint: Any, variant: str = "") -> Path:
    """The cache file for ``name`` decoded from ``source`` with the given fingerprint.

    Args:
        cache_dir: the cache folder.
        name: dataset name.
        source: the folder the dataset is read from (resolved here).
        fingerprint: JSON-serialisable summary of the source's state.
        variant: decoding options (such as a resize) that give different tensors.
    """
    source = source.resolve()
    _, digest = _key(name, source, variant, fingerprint)
    return cache_dir / f"{name}-{_source_tag(name, source, variant)}-{digest[:16]}.pt"


def _validate(payload: Any, material: str) -> RawSplits:
    """Check a loaded payload's structure; raise ValueError when anything is off."""
    if not isinstance(payload, dict):
        raise ValueError("not a dict")
    if payload.get("format") != FORMAT_VERSION or payload.get("meta") != material:
        raise ValueError("written for another source or format")
    names = payload.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError("bad class names")
    keys = ("train_x", "train_y", "test_x", "test_y")
    if not all(isinstance(payload.get(k), torch.Tensor) for k in keys):
        raise ValueError("missing tensors")
    train_x, train_y, test_x, test_y = (payload[k] for k in keys)
    for x, y in ((train_x, train_y), (test_x, test_y)):
        if x.dtype != torch.uint8 or x.dim() != 4 or y.dtype != torch.int64 or y.dim() != 1:
            raise ValueError("bad dtypes or shapes")
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError("image and label counts differ")
        if int(y.min()) < 0 or int(y.max()) >= len(names):
            raise ValueError("labels out of range")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise ValueError("train and test image shapes differ")
    return RawSplits(train_x.contiguous(), train_y, test_x.contiguous(), test_y, tuple(names))


def _try_load(path: Path, material: str) -> RawSplits | None:
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return _validate(payload, material)
    except Exception as exc:  # noqa: BLE001  (a damaged file fails in many ways: zip, pickle, ...)
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        logger.warning("cache file %s is unreadable (%s); decoding the dataset again", path, reason)
        return None


def _save(path: Path, material: str, raw: RawSplits) -> None:
    payload = {
        "format": FORMAT_VERSION,
        "meta": material,
        "train_x": raw.train_x.contiguous(),
        "train_y": raw.train_y,
        "test_x": raw.test_x.contiguous(),
        "test_y": raw.test_y,
        "class_names": list(raw.class_names),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)  # atomic: readers see the old file or the whole new one
    except OSError as exc:
        logger.warning(
            "could not write the cache file %s (%s); the dataset will be decoded again next time "
            "(set data.cache_dir or RBLOCK_CACHE_DIR to a writable folder)",
            path,
            " ".join(str(exc).split()),
        )
        return
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # left only when writing failed or was interrupted
    # Remove files of the same dataset, source and variant with an older fingerprint.
    prefix = path.name.rsplit("-", 1)[0] + "-"
    for old in path.parent.glob(f"{prefix}*.pt"):
        if old != path:
            with contextlib.suppress(OSError):
                old.unlink(missing_ok=True)


def load_or_build(
    cache_dir: Path,
    name: str,
    source: Path,
    fingerprint: Any,
    build: Callable[[], RawSplits],
    variant: str = "",
) -> RawSplits:
    """Return the cached decode of ``source``, or decode it with ``build`` and cache it.

    Args:
        cache_dir: the cache folder (created when needed).
        name: dataset name.
        source: the folder the dataset is read from.
        fingerprint: JSON-serialisable summary of the source's state; any change to it
            decodes the dataset again.
        build: decodes the dataset (called on a cache miss).
        variant: decoding options (such as a resize) that give different tensors; each
            variant has its own cache file.

    Returns:
        The train and test tensors and class names.
    """
    source = source.resolve()
    material, _ = _key(name, source, variant, fingerprint)
    path = cache_path(cache_dir, name, source, fingerprint, variant)
    start = time.perf_counter()
    raw = _try_load(path, material)
    if raw is not None:
        logger.info("loaded %s from the cache %s (%.2f s)", name, path, time.perf_counter() - start)
        return raw
    logger.info("decoding %s from %s (once; the result is cached in %s)", name, source, path)
    start = time.perf_counter()
    raw = build()
    logger.info(
        "decoded %s: %d train and %d test images in %.1f s",
        name,
        len(raw.train_y),
        len(raw.test_y),
        time.perf_counter() - start,
    )
    _save(path, material, raw)
    return raw
