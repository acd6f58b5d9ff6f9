"""Decode a dataset found under the data root (:mod:`rblock_tune.data._locate`), through the cache.

Every problem ends in a one-line :class:`~rblock_tune.errors.DataError` that names the
paths that were looked at and how to fix it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from rblock_tune.data._cache import dir_stamp, file_stamp, load_or_build
from rblock_tune.data._dataset import RawSplits
from rblock_tune.data._decode import IMAGE_EXTENSIONS, decode_images
from rblock_tune.data._locate import (
    _CIFAR,
    _FIX,
    CIFAR10_CLASSES,
    _check_folder_layout,
    _one_line,
    _tiny_layout,
    fetch_cifar,
    locate_cifar,
    locate_imagefolder,
    locate_tinyimagenet,
)
from rblock_tune.errors import DataError

__all__ = ["load_cifar", "load_imagefolder", "load_tinyimagenet"]

logger = logging.getLogger("rblock_tune.data")


def _image_files(path: Path) -> list[Path]:
    """Sorted image files of a folder (by extension; hidden files skipped); no per-file stat."""
    with os.scandir(path) as entries:
        names = sorted(
            e.name
            for e in entries
            if not e.name.startswith(".")
            and "." + e.name.rpartition(".")[2].lower() in IMAGE_EXTENSIONS
            and e.is_file()
        )
    return [path / n for n in names]


# ----------------------------------------------------------------------------- image folders
def _folder_fingerprint(base: Path, classes: list[str]) -> list[Any]:
    stamps: list[Any] = []
    for split in ("train", "test"):
        stamps.append([split, dir_stamp(base / split)])
        stamps.extend([split, c, dir_stamp(base / split / c)] for c in classes)
    return stamps


def _decode_folder(
    name: str, base: Path, classes: list[str], size: int | None, expect: tuple[int, int] | None
) -> RawSplits:
    tensors: list[torch.Tensor] = []
    for split in ("train", "test"):
        files: list[Path] = []
        labels: list[int] = []
        for label, cls in enumerate(classes):
            found = _image_files(base / split / cls)
            if not found and split == "train":
                raise DataError(
                    f"{name}: {base / split / cls} holds no images "
                    f"({', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the class folder"
                )
            files.extend(found)
            labels.extend([label] * len(found))
        if not files:
            raise DataError(f"{name}: {base / split} holds no images in its class folders")
        logger.info("decoding %d %s images of %s", len(files), split, base / split)
        x = decode_images(files, size=size, expect=expect)
        if tensors and x.shape[1:] != tensors[0].shape[1:]:
            raise DataError(
                f"{name}: test images are {x.shape[3]}x{x.shape[2]} pixels but training images "
                f"are {tensors[0].shape[3]}x{tensors[0].shape[2]} (under {base}); "
                "set data.image_size to resize them"
            )
        tensors += [x, torch.tensor(labels, dtype=torch.int64)]
    return RawSplits(tensors[0], tensors[1], tensors[2], tensors[3], tuple(classes))


def _load_folder(
    name: str,
    base: Path,
    cache_dir: Path,
    *,
    expected: tuple[str, ...] | None = None,
    n_classes: int | None = None,
    size: int | None = None,
    expect: tuple[int, int] | None = None,
) -> RawSplits:
    classes = _check_folder_layout(name, base, expected, n_classes)
    fingerprint = {"layout": "imagefolder", "dirs": _folder_fingerprint(base, classes)}
    return load_or_build(
        cache_dir,
        name,
        base,
        fingerprint,
        lambda: _decode_folder(name, base, classes, size, expect),
        variant=f"size={size}" if size is not None else "",
    )


def load_imagefolder(root: Path, cache_dir: Path, image_size: int | None) -> RawSplits:
    """Load ``root/train/<class>/*`` and ``root/test/<class>/*``.

    Classes are the folder names in alphabetical order; images are converted to RGB and,
    if ``image_size`` is set, resized to ``image_size x image_size``; otherwise every image
    must have the same size.

    Args:
        root: the folder holding ``train/`` and ``test/``.
        cache_dir: the decoded-tensor cache folder.
        image_size: square size to resize to, or ``None``.

    Raises:
        DataError: missing folders, different class folders in train and test, an
            unreadable image or mixed image sizes.
    """
    locate_imagefolder(root)
    return _load_folder("imagefolder", root, cache_dir, size=image_size)


# ----------------------------------------------------------------------------- CIFAR
def _load_release(name: str, root: Path, release: Path, cache_dir: Path) -> RawSplits:
    import torchvision.datasets

    cls = getattr(torchvision.datasets, _CIFAR[name][3])

    def build() -> RawSplits:
        parts: list[torch.Tensor] = []
        classes: list[str] = []
        for train in (True, False):
            try:
                ds = cls(str(root), train=train, download=False)
            except Exception as exc:  # noqa: BLE001  (torchvision raises RuntimeError, OSError, pickle errors)
                raise DataError(
                    f"{name}: {release} is incomplete or corrupted ({_one_line(exc)}); delete it and "
                    f"set data.download=true, or {_FIX}"
                ) from None
            parts.append(torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous())
            parts.append(torch.as_tensor(ds.targets, dtype=torch.int64))
            classes = list(ds.classes)
        return RawSplits(parts[0], parts[1], parts[2], parts[3], tuple(classes))

    fingerprint = {
        "layout": "torchvision",
        "files": sorted([p.name, *file_stamp(p)] for p in release.iterdir() if p.is_file()),
    }
    return load_or_build(cache_dir, name, release, fingerprint, build)


def load_cifar(name: str, root: Path, cache_dir: Path, download: bool) -> RawSplits:
    """Load CIFAR-10 or CIFAR-100 from the first layout found under ``root``.

    Search order:

    1. an image-folder copy ``train/<class>/*`` and ``test/<class>/*`` at ``root`` itself,
       then at ``root/cifar10-jpeg``, then at ``root/cifar10`` (for CIFAR-100:
       ``root/cifar100-jpeg``, ``root/cifar100``). The first of these with a ``train/``
       folder is used and must hold exactly the ten CIFAR-10 class folders (airplane
       automobile bird cat deer dog frog horse ship truck), or 100 class folders for
       CIFAR-100, in ``train/`` and ``test/``; labels follow the alphabetical folder order,
       which is torchvision's order. Images must be 32x32.
    2. torchvision's python release, ``root/cifar-10-batches-py`` or ``root/cifar-100-python``,
       read through ``torchvision.datasets.CIFAR10/100(download=False)``.
    3. if ``download`` is true, torchvision downloads the python release into ``root``.

    Args:
        name: ``cifar10`` or ``cifar100``.
        root: the data root.
        cache_dir: the decoded-tensor cache folder.
        download: allow step 3.

    Raises:
        DataError: nothing found, a wrong layout, an unreadable image, or a failed download.
    """
    kind, base = locate_cifar(name, root, download)
    if kind == "folder":
        expected = CIFAR10_CLASSES if name == "cifar10" else None
        n_classes = _CIFAR[name][2]
        return _load_folder(name, base, cache_dir, expected=expected, n_classes=n_classes, expect=(32, 32))
    if kind == "download":
        fetch_cifar(name, root)
    return _load_release(name, root, base, cache_dir)


# ----------------------------------------------------------------------------- TinyImageNet
def _decode_tiny(base: Path, wnids: list[str], val: list[tuple[str, str]]) -> RawSplits:
    files: list[Path] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        found = _image_files(base / "train" / wnid / "images")
        if not found:
            raise DataError(f"tinyimagenet: {base / 'train' / wnid / 'images'} holds no images")
        files.extend(found)
        labels.extend([label] * len(found))
    logger.info("decoding %d train images of %s", len(files), base / "train")
    train_x = decode_images(files, expect=(64, 64))
    index = {w: i for i, w in enumerate(wnids)}
    val_files = [base / "val" / "images" / f for f, _ in val]
    for f in val_files:
        if not f.is_file():
            raise DataError(
                f"tinyimagenet: {f} is listed in {base / 'val' / 'val_annotations.txt'} but missing"
            )
    logger.info("decoding %d val (= test) images of %s", len(val_files), base / "val" / "images")
    test_x = decode_images(val_files, expect=(64, 64))
    return RawSplits(
        train_x,
        torch.tensor(labels, dtype=torch.int64),
        test_x,
        torch.tensor([index[w] for _, w in val], dtype=torch.int64),
        tuple(wnids),
    )


def load_tinyimagenet(root: Path, cache_dir: Path) -> RawSplits:
    """Load Tiny ImageNet (``tiny-imagenet-200`` layout) from ``root`` or ``root/tiny-imagenet-200``.

    Expects ``wnids.txt``, ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG`` and
    ``val/val_annotations.txt`` (tab separated: file name, wnid, bounding box). The
    official validation set serves as the test set. Classes are the wnids in sorted order;
    images are 64x64, converted to RGB.

    Args:
        root: the data root.
        cache_dir: the decoded-tensor cache folder.

    Raises:
        DataError: nothing found, a wrong layout or an unreadable image.
    """
    base = locate_tinyimagenet(root)
    wnids, val = _tiny_layout(base)
    fingerprint = {
        "layout": "tiny-imagenet-200",
        "wnids": file_stamp(base / "wnids.txt"),
        "annotations": file_stamp(base / "val" / "val_annotations.txt"),
        "val": dir_stamp(base / "val" / "images"),
        "train": [[w, *dir_stamp(base / "train" / w / "images")] for w in wnids],
    }
    return load_or_build(cache_dir, "tinyimagenet", base, fingerprint, lambda: _decode_tiny(base, wnids, val))
