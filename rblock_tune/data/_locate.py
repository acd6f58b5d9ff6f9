"""Where a dataset is and whether its layout is right, without decoding anything (no torch).

``ensure_source`` runs in a study's driver before any trial starts, so that a missing dataset is one
line then and not a failure in every trial; the loaders (:mod:`rblock_tune.data._sources`) look the
same way. Every problem ends in a one-line :class:`~rblock_tune.errors.DataError` that names the paths
that were looked at and how to fix it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from rblock_tune.config import DataConfig
from rblock_tune.data._paths import resolve_data_root
from rblock_tune.errors import DataError

__all__ = [
    "CIFAR10_CLASSES",
    "ensure_source",
    "fetch_cifar",
    "locate_cifar",
    "locate_imagefolder",
    "locate_tinyimagenet",
]

logger = logging.getLogger("rblock_tune.data")

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""The ten CIFAR-10 classes in label order (alphabetical, as torchvision numbers them)."""

_FIX = "set data.root or RBLOCK_DATA_DIR to the folder that holds it"

_CIFAR = {
    # name: (image-folder subfolders tried after the root itself, torchvision release folder,
    #        number of classes, torchvision class name)
    "cifar10": (("cifar10-jpeg", "cifar10"), "cifar-10-batches-py", 10, "CIFAR10"),
    "cifar100": (("cifar100-jpeg", "cifar100"), "cifar-100-python", 100, "CIFAR100"),
}


def _set_difference(wanted: Sequence[str], found: Sequence[str], missing_label: str, extra_label: str) -> str:
    """``"missing a, b; unexpected c"``: what ``found`` lacks and adds, at most 5 names each."""

    def names(items: list[str]) -> str:
        return ", ".join(items[:5]) + (", ..." if len(items) > 5 else "")

    missing = sorted(set(wanted) - set(found))
    extra = sorted(set(found) - set(wanted))
    parts = [
        f"{missing_label} {names(missing)}" if missing else "",
        f"{extra_label} {names(extra)}" if extra else "",
    ]
    return "; ".join(p for p in parts if p)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _visible_dirs(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _check_folder_layout(
    name: str, base: Path, expected: tuple[str, ...] | None, n_classes: int | None
) -> list[str]:
    """Check ``base/train/<class>`` and ``base/test/<class>``; return the sorted class names."""
    train, test = base / "train", base / "test"
    if not test.is_dir():
        raise DataError(
            f"{name}: {test} is missing: an image-folder copy needs {train}/<class>/* and "
            f"{test}/<class>/* with the same class folders; {_FIX}"
        )
    classes = _visible_dirs(train)
    if not classes:
        raise DataError(
            f"{name}: {train} has no class folders: expected {train}/<class>/<image> files; {_FIX}"
        )
    if expected is not None and tuple(classes) != tuple(sorted(expected)):
        detail = _set_difference(expected, classes, "missing", "unexpected")
        raise DataError(
            f"{name}: {train} does not hold the {len(expected)} {name} class folders ({detail}); "
            f"expected exactly {' '.join(expected)}; {_FIX}"
        )
    if n_classes is not None and len(classes) != n_classes:
        raise DataError(f"{name}: {train} has {len(classes)} class folders, expected {n_classes}; {_FIX}")
    test_classes = _visible_dirs(test)
    if test_classes != classes:
        detail = _set_difference(classes, test_classes, "missing in test:", "only in test:")
        raise DataError(f"{name}: {test} and {train} must hold the same class folders ({detail})")
    return classes


def locate_imagefolder(root: Path) -> Path:
    """The image folder at ``root`` (its ``train/`` must exist; the layout is checked on loading).

    Raises:
        DataError: ``root/train`` is missing.
    """
    if not (root / "train").is_dir():
        raise DataError(
            f"imagefolder not found under {root} (looked for {root / 'train'} and {root / 'test'}); "
            "set data.root or RBLOCK_DATA_DIR to a folder with train/<class>/* and test/<class>/*"
        )
    return root


def _download(name: str, root: Path, looked: str) -> None:
    import torchvision.datasets

    cls = getattr(torchvision.datasets, _CIFAR[name][3])
    logger.info("downloading %s into %s", name, root)
    try:
        cls(str(root), train=True, download=True)
    except Exception as exc:  # noqa: BLE001  (URLError, OSError, RuntimeError on a bad checksum, ...)
        raise DataError(
            f"could not download {name} into {root} ({_one_line(exc)}) and found no copy there "
            f"(looked for {looked}); download it where there is network access and {_FIX}"
        ) from None


def _cifar_candidates(name: str, root: Path) -> tuple[list[Path], Path]:
    subdirs, release_name, _, _ = _CIFAR[name]
    return [root, *(root / s for s in subdirs)], root / release_name


def locate_cifar(name: str, root: Path, download: bool) -> tuple[str, Path]:
    """Where :func:`load_cifar` finds CIFAR under ``root``, in its search order, without reading it.

    Returns:
        ``("folder", base)`` for an image-folder copy, ``("release", folder)`` for torchvision's
        python release, or ``("download", folder)`` when neither is there and ``download`` allows
        fetching the release into that folder (:func:`fetch_cifar`).

    Raises:
        DataError: nothing found and ``download`` is false.
    """
    candidates, release = _cifar_candidates(name, root)
    for base in candidates:
        if (base / "train").is_dir():
            return "folder", base
    if release.is_dir():
        return "release", release
    if download:
        return "download", release
    looked = ", ".join(str(c / "train") for c in candidates) + f", {release}"
    raise DataError(f"{name} not found under {root} (looked for {looked}); {_FIX}, or data.download=true")


def fetch_cifar(name: str, root: Path) -> None:
    """Download torchvision's python release of CIFAR into ``root``.

    Raises:
        DataError: the download failed (no network, a bad checksum, ...).
    """
    candidates, release = _cifar_candidates(name, root)
    looked = ", ".join(str(c / "train") for c in candidates) + f", {release}"
    _download(name, root, looked)


def _read_lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"tinyimagenet: cannot read {path}: {_one_line(exc)}") from None


def _tiny_layout(base: Path) -> tuple[list[str], list[tuple[str, str]]]:
    wnids = sorted(set(_read_lines(base / "wnids.txt")))
    if not wnids:
        raise DataError(f"tinyimagenet: {base / 'wnids.txt'} lists no classes")
    train = base / "train"
    val_images = base / "val" / "images"
    annotations = base / "val" / "val_annotations.txt"
    for need in (train, val_images):
        if not need.is_dir():
            raise DataError(
                f"tinyimagenet: {need} is missing: expected the tiny-imagenet-200 layout "
                f"({train}/<wnid>/images/*.JPEG, {val_images}/*.JPEG, {annotations}); {_FIX}"
            )
    missing = [w for w in wnids if not (train / w / "images").is_dir()]
    if missing:
        raise DataError(
            f"tinyimagenet: {len(missing)} classes of {base / 'wnids.txt'} have no folder "
            f"{train}/<wnid>/images (first: {train / missing[0] / 'images'}); {_FIX}"
        )
    if not annotations.is_file():
        raise DataError(f"tinyimagenet: {annotations} is missing; {_FIX}")
    known = set(wnids)
    val: list[tuple[str, str]] = []
    for lineno, line in enumerate(_read_lines(annotations), start=1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in known:
            raise DataError(
                f"tinyimagenet: line {lineno} of {annotations} is not 'file<TAB>wnid<TAB>...' with a "
                f"wnid from wnids.txt: {line[:80]!r}"
            )
        val.append((fields[0], fields[1]))
    if not val:
        raise DataError(f"tinyimagenet: {annotations} lists no images")
    return wnids, val


def locate_tinyimagenet(root: Path) -> Path:
    """The ``tiny-imagenet-200`` folder under ``root`` (``root`` itself or ``root/tiny-imagenet-200``).

    Raises:
        DataError: neither holds ``wnids.txt``.
    """
    candidates = [root, root / "tiny-imagenet-200"]
    base = next((c for c in candidates if (c / "wnids.txt").is_file()), None)
    if base is None:
        looked = ", ".join(str(c / "wnids.txt") for c in candidates)
        raise DataError(
            f"tinyimagenet not found under {root} (looked for {looked}); {_FIX} "
            "(unpack tiny-imagenet-200.zip there; it is not downloaded automatically)"
        )
    return base


def ensure_source(config: DataConfig, *, fetch: bool = True) -> None:
    """Make sure ``config``'s dataset is there before any work needs it: found where
    :func:`load_raw` looks (nothing is decoded), or, when it is missing and ``data.download`` allows
    it, downloaded now (``fetch``; without it, only the lookup), so that a study's trials neither
    each fail on it nor race to fetch it.

    Raises:
        DataError: the message :func:`load_raw` would give (not found, or the download failed).
    """
    name = config.name
    root = resolve_data_root(config)
    if name in ("cifar10", "cifar100"):
        if locate_cifar(name, root, config.download)[0] == "download" and fetch:
            fetch_cifar(name, root)
    elif name == "tinyimagenet":
        locate_tinyimagenet(root)
    elif name == "imagefolder":
        locate_imagefolder(root)
