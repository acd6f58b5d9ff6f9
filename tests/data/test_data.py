"""Tests of ``rblock_tune.data``: sources, cache, split/subset, synthetic data, DeviceLoader."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from rblock_tune.config import DataConfig
from rblock_tune.data import (
    Dataset,
    DeviceLoader,
    allocate,
    load_dataset,
    probe_rows,
    resolve_cache_dir,
    resolve_data_root,
    stratified_pick,
)
from rblock_tune.errors import DataError

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# ----------------------------------------------------------------------------- helpers
def _write(path: Path, array: np.ndarray, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path, format=fmt)


def _coded_image(label: int, ident: int, size: tuple[int, int] = (8, 8)) -> np.ndarray:
    """An RGB image whose red channel is 25 * label and green channel a unique id (for PNG)."""
    h, w = size
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[..., 0] = 25 * label
    img[..., 1] = ident
    img[..., 2] = 200
    return img


def make_folder(
    root: Path,
    classes: tuple[str, ...] = ("ant", "bee", "cat"),
    n_train: int | list[int] = 6,
    n_test: int = 2,
    size: tuple[int, int] = (8, 8),
    ext: str = "png",
) -> Path:
    """``root/train/<class>/*`` and ``root/test/<class>/*`` with coded images; returns root."""
    counts = n_train if isinstance(n_train, list) else [n_train] * len(classes)
    ident = 0
    for label, cls in enumerate(classes):
        for split, n in (("train", counts[label]), ("test", n_test)):
            for i in range(n):
                _write(root / split / cls / f"{i:04d}.{ext}", _coded_image(label, ident % 256, size))
                ident += 1
    return root


def make_tiny(base: Path, wnids: tuple[str, ...] = ("n02", "n01", "n03"), per_class: int = 3) -> Path:
    """A small tiny-imagenet-200 layout under ``base``; class k images have red value 10 * rank."""
    rank = {w: i for i, w in enumerate(sorted(wnids))}
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for w in wnids:
        for i in range(per_class):
            img = np.full((64, 64, 3), 10 * rank[w], dtype=np.uint8)
            _write(base / "train" / w / "images" / f"{w}_{i}.JPEG", img, "JPEG")
        (base / "train" / w / f"{w}_boxes.txt").write_text("")
    # one grayscale training image (must become RGB)
    _write(base / "train" / wnids[0] / "images" / f"{wnids[0]}_gray.JPEG", np.full((64, 64), 90), "JPEG")
    lines = []
    for i, w in enumerate(wnids * 2):
        img = np.full((64, 64, 3), 10 * rank[w], dtype=np.uint8)
        _write(base / "val" / "images" / f"val_{i}.JPEG", img, "JPEG")
        lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base


def cfg(tmp_path: Path, **kwargs: Any) -> DataConfig:
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    return DataConfig(**kwargs)


def _labels(x: torch.Tensor) -> torch.Tensor:
    return x[:, 0, 0, 0].long() // 25


def _ids(x: torch.Tensor) -> list[int]:
    return x[:, 1, 0, 0].tolist()


def _one_line(exc: pytest.ExceptionInfo[DataError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every host name lookup fail, as on the project's offline machines."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)


# ----------------------------------------------------------------------------- image folders
def test_imagefolder_loads_images_labels_and_shapes(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    ds = load_dataset(cfg(tmp_path, name="imagefolder", root=str(root), val_size=0))
    assert isinstance(ds, Dataset)
    assert ds.name == "imagefolder"
    assert ds.class_names == ("ant", "bee", "cat")
    assert ds.num_classes == 3
    assert ds.train_x.shape == (18, 3, 8, 8) and ds.test_x.shape == (6, 3, 8, 8)
    assert ds.val_x.shape == (0, 3, 8, 8) and ds.val_y.shape == (0,)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    assert ds.train_x.is_contiguous() and ds.train_x.device.type == "cpu"
    assert ds.in_channels == 3 and ds.image_size == (8, 8)
    # labels agree with the class coded into the pixels
    assert torch.equal(_labels(ds.train_x), ds.train_y)
    assert torch.equal(_labels(ds.test_x), ds.test_y)
    assert torch.bincount(ds.test_y).tolist() == [2, 2, 2]
    assert "train=18" in repr(ds)


def test_imagefolder_mean_std_of_training_images(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    ds = load_dataset(cfg(tmp_path, name="imagefolder", root=str(root), val_size=3))
    x = ds.train_x.double() / 255
    assert ds.mean == pytest.approx(x.mean((0, 2, 3)).tolist(), abs=1e-12)
    assert ds.std[:2] == pytest.approx(x.std((0, 2, 3), unbiased=False).tolist()[:2], abs=1e-12)
    assert ds.std[2] == 1 / 255  # the blue channel is constant: std floored at one level


def test_imagefolder_grayscale_and_resize(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", size=(12, 10))
    _write(root / "train" / "ant" / "gray.png", np.full((20, 30), 77))
    ds = load_dataset(cfg(tmp_path, name="imagefolder", root=str(root), val_size=0, image_size=16))
    assert ds.train_x.shape[1:] == (3, 16, 16)
    gray = ds.train_x[6]  # sorted: 0000..0005.png, then gray.png
    assert torch.all(gray == 77)


def test_imagefolder_mixed_sizes_name_file_and_sizes(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    odd = root / "train" / "bee" / "odd.png"
    _write(odd, np.zeros((9, 7, 3)))
    with pytest.raises(DataError) as exc:
        load_dataset(cfg(tmp_path, name="imagefolder", root=str(root)))
    text = _one_line(exc)
    assert str(odd) in text and "7x9" in text and "8x8" in text and "data.image_size" in text


def test_imagefolder_class_folders_must_match(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    (root / "test" / "dog").mkdir()
    with pytest.raises(DataError) as exc:
        load_dataset(cfg(tmp_path, name="imagefolder", root=str(root)))
    text = _one_line(exc)
    assert str(root / "test") in text and "dog" in text


def test_imagefolder_missing_test_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    for f in (root / "test").rglob("*.png"):
        f.unlink()
    for d in (root / "test").iterdir():
        d.rmdir()
    (root / "test").rmdir()
    with pytest.raises(DataError) as exc:
        load_dataset(cfg(tmp_path, name="imagefolder", root=str(root)))
    assert str(root / "test") in _one_line(exc)


def test_imagefolder_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_dataset(cfg(tmp_path, name="imagefolder", root=str(tmp_path / "nothing")))
    text = _one_line(exc)
    assert str(tmp_path / "nothing" / "train") in text and "RBLOCK_DATA_DIR" in text


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    bad = root / "train" / "cat" / "broken.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(DataError) as exc:
        load_dataset(cfg(tmp_path, name="imagefolder", root=str(root)))
    assert str(bad) in _one_line(exc)


def test_empty_training_class_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    (root / "train" / "dog").mkdir()
    (root / "test" / "dog").mkdir()
    with pytest.raises(DataError) as exc:
        load_dataset(cfg(tmp_path, name="imagefolder", root=str(root)))
    assert str(root / "train" / "dog") in _one_line(exc)


# ----------------------------------------------------------------------------- CIFAR
@pytest.mark.parametrize("subdir", ["", "cifar10-jpeg", "cifar10"])
def test_cifar10_image_folder_layouts(tmp_path: Path, subdir: str) -> None:
    root = tmp_path / "data"
    make_folder(root / subdir if subdir else root, CIFAR10, n_train=2, n_test=1, size=(32, 32), ext="jpg")
    ds = load_dataset(cfg(tmp_path, name="cifar10", root=str(root), val_size=0))
    assert ds.class_names == CIFAR10
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (10, 3, 32, 32)
    assert ds.train_y.tolist() == [k for k in range(10) for _ in range(2)]


def test_cifar10_image_folder_needs_the_ten_classes(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", (*CIFAR10[:9], "lorry"), n_train=1, n_test=1, size=(32, 32))
    with pytest.raises(DataError) as exc:
        load_dataset(cfg(tmp_path, name="cifar10", root=str(root), val_size=0))
    text = _one_line(exc)
    assert str(root / "train") in text and "truck" in text and "lorry" in text


def test_cifar10_image_folder_needs_32x32(tmp_path: Path) -> None:
    make_folder(tmp_path / "data" / "cifar10-jpeg", CIFAR10, n_train=1, n_test=1, size=(16, 16))
    with pytest.raises(DataError) as exc:
        load_dataset(cfg(tmp_path, name="cifar10", root=str(tmp_path / "data"), val_size=0))
    assert "32x32" in _one_line(exc)


def test_cifar10_missing_lists_where_it_looked(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DataError) as exc:
        load_dataset(cfg(tmp_path, name="cifar10", root=str(root), download=False))
    text = _one_line(exc)
    for looked in (root / "train", root / "cifar10-jpeg" / "train", root / "cifar-10-batches-py"):
        assert str(looked) in text
    assert "RBLOCK_DATA_DIR" in text and "data.download=true" in text


def test_cifar100_failed_download_is_one_line(tmp_path: Path, no_network: None) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DataError) as exc:
        load_dataset(cfg(tmp_path, name="cifar100", root=str(root), download=True))
    text = _one_line(exc)
    assert "could not download cifar100" in text and str(root) in text and "RBLOCK_DATA_DIR" in text


class _FakeCifar10:
    """Stands in for ``torchvision.datasets.CIFAR10`` (whose real files are md5-checked)."""

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        n = 30 if train else 10
        rng = np.random.default_rng(0 if train else 1)
        self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        self.targets = [i % 10 for i in range(n)]
        self.classes = list(CIFAR10)


def test_cifar10_torchvision_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _FakeCifar10)
    release = tmp_path / "data" / "cifar-10-batches-py"
    release.mkdir(parents=True)
    (release / "data_batch_1").write_bytes(b"x")
    ds = load_dataset(cfg(tmp_path, name="cifar10", root=str(tmp_path / "data"), val_size=10))
    fake = _FakeCifar10("", train=False)
    assert torch.equal(ds.test_x, torch.from_numpy(fake.data).permute(0, 3, 1, 2))
    assert ds.test_y.tolist() == fake.targets
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.class_names == CIFAR10


def test_cifar10_corrupt_release(tmp_path: Path) -> None:
    release = tmp_path / "data" / "cifar-10-batches-py"
    release.mkdir(parents=True)
    (release / "data_batch_1").write_bytes(b"garbage")
    with pytest.raises(DataError) as exc:
        load_dataset(cfg(tmp_path, name="cifar10", root=str(tmp_path / "data"), download=False))
    assert str(release) in _one_line(exc)


# ----------------------------------------------------------------------------- Tiny ImageNet
@pytest.mark.parametrize("nested", [False, True])
def test_tinyimagenet_layout(tmp_path: Path, nested: bool) -> None:
    root = tmp_path / "data"
    make_tiny(root / "tiny-imagenet-200" if nested else root)
    ds = load_dataset(cfg(tmp_path, name="tinyimagenet", root=str(root), val_size=0))
    assert ds.class_names == ("n01", "n02", "n03")
    assert ds.train_x.shape == (10, 3, 64, 64) and ds.test_x.shape == (6, 3, 64, 64)
    # wnids.txt lists n02, n01, n03; val images alternate in that order
    assert ds.test_y.tolist() == [1, 0, 2, 1, 0, 2]
    red = ds.test_x[:, 0].float().mean((1, 2))
    assert torch.allclose(red, 10 * ds.test_y.float(), atol=3)
    assert torch.bincount(ds.train_y).tolist() == [3, 4, 3]  # n02 has the extra gray image
    gray = ds.train_x[(ds.train_x[:, 0].float().mean((1, 2)) - 90).abs() < 3]
    assert len(gray) == 1 and torch.equal(gray[0, 0], gray[0, 1]) and torch.equal(gray[0, 0], gray[0, 2])


def test_tinyimagenet_bad_annotation(tmp_path: Path) -> None:
    base = make_tiny(tmp_path / "data")
    ann = base / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_99.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(DataError) as exc:
        load_dataset(cfg(tmp_path, name="tinyimagenet", root=str(base)))
    text = _one_line(exc)
    assert str(ann) in text and "line 7" in text


def test_tinyimagenet_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_dataset(cfg(tmp_path, name="tinyimagenet", root=str(tmp_path)))
    text = _one_line(exc)
    assert str(tmp_path / "tiny-imagenet-200" / "wnids.txt") in text and "RBLOCK_DATA_DIR" in text


# ----------------------------------------------------------------------------- cache
def _spoil_images_in_place(root: Path) -> None:
    """Overwrite every image under ``root`` with zeros of the same size and restore its times: the
    cache's fingerprint of the source is unchanged, but decoding it again would fail."""
    for path in root.rglob("*"):
        if path.is_file():
            stat = path.stat()
            path.write_bytes(bytes(stat.st_size))
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _same(a: Dataset, b: Dataset) -> bool:
    pairs = [(a.train_x, b.train_x), (a.train_y, b.train_y), (a.val_x, b.val_x), (a.test_x, b.test_x)]
    return all(torch.equal(x, y) for x, y in pairs) and a.class_names == b.class_names


def test_second_load_hits_the_cache(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_folder(tmp_path / "data")
    config = cfg(tmp_path, name="imagefolder", root=str(root))
    with caplog.at_level(logging.INFO, logger="rblock_tune.data"):
        first = load_dataset(config)
    assert "decoding imagefolder" in caplog.text
    files = list((tmp_path / "cache").glob("*.pt"))
    assert len(files) == 1
    _spoil_images_in_place(root)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rblock_tune.data"):
        second = load_dataset(config)
    assert "from the cache" in caplog.text
    assert _same(first, second)


def test_corrupt_cache_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_folder(tmp_path / "data")
    config = cfg(tmp_path, name="imagefolder", root=str(root))
    first = load_dataset(config)
    (path,) = (tmp_path / "cache").glob("*.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with caplog.at_level(logging.WARNING, logger="rblock_tune.data"):
        second = load_dataset(config)
    assert "unreadable" in caplog.text and str(path) in caplog.text
    assert _same(first, second)
    torch.load(path, weights_only=True)  # rewritten, whole again
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_cache_is_redecoded_when_the_source_changes(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    config = cfg(tmp_path, name="imagefolder", root=str(root), val_size=0)
    assert len(load_dataset(config).train_y) == 18
    _write(root / "train" / "bee" / "new.png", _coded_image(1, 99))
    assert len(load_dataset(config).train_y) == 19
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1  # the stale file is removed


def test_unwritable_cache_dir_only_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_folder(tmp_path / "data")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="rblock_tune.data"):
        ds = load_dataset(DataConfig(name="imagefolder", root=str(root), cache_dir=str(blocker / "c")))
    assert len(ds.train_y) > 0 and "could not write the cache" in caplog.text


# ----------------------------------------------------------------------------- paths
def test_env_vars_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RBLOCK_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("RBLOCK_CACHE_DIR", str(tmp_path / "env-cache"))
    plain = DataConfig(name="imagefolder")
    assert resolve_data_root(plain) == tmp_path / "env-data"
    assert resolve_cache_dir(plain) == tmp_path / "env-cache"
    explicit = DataConfig(name="imagefolder", root=str(tmp_path / "r"), cache_dir=str(tmp_path / "c"))
    assert resolve_data_root(explicit) == tmp_path / "r"
    assert resolve_cache_dir(explicit) == tmp_path / "c"

    make_folder(tmp_path / "env-data")
    ds = load_dataset(plain)
    assert len(ds.train_y) + len(ds.val_y) == 18
    assert len(list((tmp_path / "env-cache").glob("*.pt"))) == 1

    monkeypatch.delenv("RBLOCK_DATA_DIR")
    monkeypatch.delenv("RBLOCK_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root(plain) == tmp_path / "data"
    assert resolve_cache_dir(plain) == tmp_path / "home" / ".cache" / "rblock-tune"
    monkeypatch.setenv("RBLOCK_DATA_DIR", "~/mydata")
    assert resolve_data_root(plain) == tmp_path / "home" / "mydata"


# ----------------------------------------------------------------------------- split and subset
@pytest.fixture
def split_root(tmp_path: Path) -> Path:
    # 3 classes with 30, 20 and 10 training images; every image has a unique id
    return make_folder(tmp_path / "data", n_train=[30, 20, 10], n_test=1)


def test_split_is_stratified_disjoint_and_complete(tmp_path: Path, split_root: Path) -> None:
    ds = load_dataset(cfg(tmp_path, name="imagefolder", root=str(split_root), val_size=12))
    assert torch.bincount(ds.val_y, minlength=3).tolist() == [6, 4, 2]
    assert torch.bincount(ds.train_y, minlength=3).tolist() == [24, 16, 8]
    train_ids, val_ids = set(_ids(ds.train_x)), set(_ids(ds.val_x))
    assert not train_ids & val_ids
    assert len(train_ids | val_ids) == 60
    assert torch.equal(_labels(ds.val_x), ds.val_y)


def test_split_depends_on_split_seed_only(tmp_path: Path, split_root: Path) -> None:
    config = cfg(tmp_path, name="imagefolder", root=str(split_root), val_size=12, split_seed=3)
    torch.manual_seed(1)
    a = load_dataset(config)
    torch.manual_seed(2)
    b = load_dataset(config)
    assert _ids(a.val_x) == _ids(b.val_x) and _ids(a.train_x) == _ids(b.train_x)
    c = load_dataset(cfg(tmp_path, name="imagefolder", root=str(split_root), val_size=12, split_seed=4))
    assert _ids(c.val_x) != _ids(a.val_x)
    assert torch.bincount(c.val_y, minlength=3).tolist() == [6, 4, 2]


def test_default_val_size_is_ten_percent(tmp_path: Path, split_root: Path) -> None:
    ds = load_dataset(cfg(tmp_path, name="imagefolder", root=str(split_root)))
    assert len(ds.val_y) == 6 and len(ds.train_y) == 54


@pytest.mark.parametrize(("subset", "expected"), [(24, [12, 8, 4]), (0.25, [6, 4, 2])])
def test_subset_is_stratified(tmp_path: Path, split_root: Path, subset: float, expected: list[int]) -> None:
    base = cfg(tmp_path, name="imagefolder", root=str(split_root), val_size=12)
    full = load_dataset(base)
    ds = load_dataset(cfg(tmp_path, name="imagefolder", root=str(split_root), val_size=12, subset=subset))
    assert torch.bincount(ds.train_y, minlength=3).tolist() == expected
    assert set(_ids(ds.train_x)) <= set(_ids(full.train_x))
    assert _ids(ds.val_x) == _ids(full.val_x)  # the subset never changes the validation set
    x = ds.train_x.double() / 255
    assert ds.mean == pytest.approx(x.mean((0, 2, 3)).tolist(), abs=1e-12)


def test_val_size_and_subset_too_large(tmp_path: Path, split_root: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_dataset(cfg(tmp_path, name="imagefolder", root=str(split_root), val_size=60))
    text = _one_line(exc)
    assert "data.val_size=60" in text and "60 training images" in text
    with pytest.raises(DataError) as exc:
        load_dataset(cfg(tmp_path, name="imagefolder", root=str(split_root), val_size=10, subset=51))
    text = _one_line(exc)
    assert "data.subset=51" in text and "50" in text


def test_allocate_and_stratified_pick() -> None:
    assert allocate([5, 3, 2], 5) == [3, 1, 1]  # 2.5, 1.5, 1.0: ties to the lower class
    assert sum(allocate([7, 7, 7], 10)) == 10
    assert allocate([1, 1], 2) == [1, 1]
    labels = torch.tensor([0, 1, 0, 1, 2, 2, 0, 1, 2, 0])
    picked, rest = stratified_pick(labels, 3, 4, torch.Generator().manual_seed(0))
    assert sorted(picked.tolist() + rest.tolist()) == list(range(10))
    assert torch.bincount(labels[picked], minlength=3).tolist() == [2, 1, 1]


# ----------------------------------------------------------------------------- synthetic
def test_probe_rows_are_a_seeded_stratified_sample_of_class_ordered_labels() -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)  # class-ordered, as image folders are read
    torch.manual_seed(1)
    rows = probe_rows(labels, 3, 10, split_seed=0)
    assert torch.bincount(labels[rows], minlength=3).tolist() == [5, 3, 2]
    assert torch.equal(rows, rows.sort().values) and rows.unique().numel() == 10
    torch.manual_seed(2)  # the global RNG plays no part: only the split seed
    assert torch.equal(rows, probe_rows(labels, 3, 10, split_seed=0))
    assert not torch.equal(rows, probe_rows(labels, 3, 10, split_seed=1))
    assert torch.equal(probe_rows(labels, 3, 500, split_seed=0), torch.arange(100))  # all rows, at most


def test_synthetic_is_deterministic_and_balanced(tmp_path: Path) -> None:
    config = cfg(tmp_path, name="synthetic", synthetic_size=200, synthetic_classes=7, val_size=0)
    torch.manual_seed(1)
    a = load_dataset(config)
    torch.manual_seed(2)
    b = load_dataset(config)
    assert _same(a, b)
    assert a.train_x.shape == (200, 3, 32, 32) and a.test_x.shape == (50, 3, 32, 32)
    counts = torch.bincount(a.train_y, minlength=7)
    assert counts.max() - counts.min() <= 1
    assert a.class_names == tuple(f"class_{k}" for k in range(7))
    assert not (tmp_path / "cache").exists()  # never cached
    small = load_dataset(cfg(tmp_path, name="synthetic", synthetic_size=64, image_size=16))
    assert small.image_size == (16, 16) and len(small.val_y) == 6 and len(small.train_y) == 58


def test_synthetic_has_learnable_structure(tmp_path: Path) -> None:
    ds = load_dataset(cfg(tmp_path, name="synthetic", synthetic_size=1024, val_size=0))
    x = ds.train_x.float() / 255
    tx = ds.test_x.float().flatten(1) / 255
    centroids = torch.stack([x[ds.train_y == k].flatten(1).mean(0) for k in range(10)])
    acc = (torch.cdist(tx, centroids).argmin(1) == ds.test_y).float().mean().item()
    assert acc > 0.5  # nearest class mean on raw pixels: chance is 0.1
    # but images of one class differ a lot (shifts, distractor pattern, noise)
    within = torch.stack([x[ds.train_y == k].std(0).mean() for k in range(10)])
    assert within.min() > 0.15


# ----------------------------------------------------------------------------- DeviceLoader
def _data(n: int = 10, c: int = 3, h: int = 6, w: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (n, c, h, w), generator=g, dtype=torch.uint8)  # no zeros
    return x, torch.arange(n)


MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)


def _loader(x: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> DeviceLoader:
    kwargs.setdefault("batch_size", 4)
    kwargs.setdefault("device", "cpu")
    return DeviceLoader(x, y, mean=MEAN, std=STD, **kwargs)


def _unnormalise(xb: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(1, -1, 1, 1)
    std = torch.tensor(STD).view(1, -1, 1, 1)
    return ((xb * std + mean) * 255).round().to(torch.uint8)


def test_eval_batches_in_order_complete_and_normalised() -> None:
    x, y = _data()
    loader = _loader(x, y, train=False)
    assert len(loader) == 3 and loader.num_samples == 10
    batches = list(loader.batches())
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    xs = torch.cat([b[0] for b in batches])
    assert xs.dtype == torch.float32 and xs.shape == (10, 3, 6, 5)
    assert torch.cat([b[1] for b in batches]).tolist() == list(range(10))
    expected = (x.float() / 255 - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1)
    assert torch.allclose(xs, expected, atol=1e-5)
    assert batches[0][1].dtype == torch.int64


def test_train_drops_the_last_partial_batch() -> None:
    x, y = _data(10)
    loader = _loader(x, y, train=True)
    assert len(loader) == 2 and loader.num_samples == 8
    batches = list(loader.batches(torch.Generator().manual_seed(0)))
    assert [len(b[1]) for b in batches] == [4, 4]
    labels = torch.cat([b[1] for b in batches]).tolist()
    assert len(set(labels)) == 8
    small = _loader(x[:3], y[:3], train=True, batch_size=8)
    assert len(small) == 1 and small.num_samples == 3
    (only,) = list(small.batches())
    assert sorted(only[1].tolist()) == [0, 1, 2]


def test_same_generator_state_gives_identical_batches() -> None:
    x, y = _data(20)
    loader = _loader(x, y, train=True, crop_padding=2)
    g = torch.Generator().manual_seed(123)
    state = g.get_state()
    first = list(loader.batches(g))
    g.set_state(state)
    second = list(loader.batches(g))
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second, strict=True)
    )
    third = list(loader.batches(torch.Generator().manual_seed(124)))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(first, third, strict=True))
    torch.manual_seed(5)
    g1 = list(loader.batches())
    torch.manual_seed(5)
    g2 = list(loader.batches())
    assert all(torch.equal(a[0], b[0]) for a, b in zip(g1, g2, strict=True))


def _match_shift(img: torch.Tensor, src: torch.Tensor, pad: int) -> set[tuple[int, int]]:
    """Shifts (dy, dx) for which ``img`` is ``src`` moved by (dy, dx) with zero fill."""
    _, h, w = src.shape
    padded = torch.nn.functional.pad(src, (pad, pad, pad, pad))
    found = set()
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            if torch.equal(padded[:, dy : dy + h, dx : dx + w], img):
                found.add((dy - pad, dx - pad))
    return found


def test_crop_shifts_by_at_most_the_padding_and_fills_zeros() -> None:
    x, y = _data(64, h=8, w=8)
    pad = 3
    loader = _loader(x, y, train=True, crop_padding=pad, flip=False, batch_size=16)
    shifts = set()
    for xb, yb in loader.batches(torch.Generator().manual_seed(0)):
        raw = _unnormalise(xb)
        for img, label in zip(raw, yb, strict=True):
            found = _match_shift(img, x[label], pad)
            assert len(found) == 1, "every crop is the source shifted by at most the padding"
            shifts |= found
    assert len(shifts) > 10  # the offsets really vary
    assert any(abs(dy) == pad or abs(dx) == pad for dy, dx in shifts)  # zero borders occur


def test_crop_on_a_known_image() -> None:
    x = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4).repeat(1, 3, 1, 1)
    loader = DeviceLoader(
        x,
        torch.zeros(1, dtype=torch.int64),
        batch_size=1,
        device="cpu",
        mean=(0, 0, 0),
        std=(1 / 255,) * 3,
        train=True,
        crop_padding=1,
        flip=False,
    )
    seen = set()
    for seed in range(100):
        ((xb, _),) = list(loader.batches(torch.Generator().manual_seed(seed)))
        img = xb[0, 0].round().to(torch.int64)
        (shift,) = _match_shift(img[None].to(torch.uint8), x[0, :1], 1)
        seen.add(shift)
        dy, dx = shift
        if dy == 1:  # moved up: the last row is zero padding
            assert img[-1].tolist() == [0, 0, 0, 0]
        if dx == -1:  # moved right: the first column is zero padding
            assert img[:, 0].tolist() == [0, 0, 0, 0]
    assert len(seen) == 9


def test_flip_mirrors_about_half_the_images() -> None:
    x, y = _data(200, h=4, w=7)
    loader = _loader(x, y, train=True, crop_padding=0, flip=True, batch_size=50)
    flipped = 0
    for xb, yb in loader.batches(torch.Generator().manual_seed(0)):
        for img, label in zip(_unnormalise(xb), yb, strict=True):
            if torch.equal(img, x[label]):
                continue
            assert torch.equal(img, x[label].flip(-1))
            flipped += 1
    assert 70 <= flipped <= 130  # Binomial(200, 0.5): mean 100, sd 7


def test_no_augmentation_when_disabled() -> None:
    x, y = _data(12)
    loader = _loader(x, y, train=True, crop_padding=0, flip=False)
    for xb, yb in loader.batches(torch.Generator().manual_seed(0)):
        assert torch.equal(_unnormalise(xb), x[yb])


@pytest.mark.parametrize("train", [True, False])
def test_channels_last(train: bool) -> None:
    x, y = _data(12)
    plain = _loader(x, y, train=train)
    cl = _loader(x, y, train=train, channels_last=True)
    for (a, la), (b, lb) in zip(
        plain.batches(torch.Generator().manual_seed(0)),
        cl.batches(torch.Generator().manual_seed(0)),
        strict=True,
    ):
        assert b.is_contiguous(memory_format=torch.channels_last)
        assert a.is_contiguous()
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_loader_rejects_bad_arguments() -> None:
    x, y = _data()
    with pytest.raises(ValueError, match="uint8"):
        DeviceLoader(x.float(), y, batch_size=2, device="cpu", mean=MEAN, std=STD, train=False)
    with pytest.raises(ValueError, match="one per channel"):
        DeviceLoader(x, y, batch_size=2, device="cpu", mean=(0.5,), std=(0.2,), train=False)
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(x, y, batch_size=0, device="cpu", mean=MEAN, std=STD, train=False)
    empty = DeviceLoader(x[:0], y[:0], batch_size=2, device="cpu", mean=MEAN, std=STD, train=False)
    assert len(empty) == 0 and empty.num_samples == 0 and list(empty.batches()) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batches_identical_on_cpu_and_cuda() -> None:
    x, y = _data(40)
    cpu = _loader(x, y, train=True, batch_size=8)
    cuda = _loader(x, y, train=True, batch_size=8, device="cuda")
    for (a, la), (b, lb) in zip(
        cpu.batches(torch.Generator().manual_seed(0)),
        cuda.batches(torch.Generator().manual_seed(0)),
        strict=True,
    ):
        assert torch.equal(la, lb.cpu())
        assert torch.allclose(a, b.cpu(), atol=1e-6)


# ----------------------------------------------------------------------------- real data
def _real_cifar_dir() -> Path | None:
    value = os.environ.get("RBLOCK_CIFAR10_DIR")
    return Path(value) if value else None


@pytest.mark.realdata
@pytest.mark.slow
def test_real_cifar10() -> None:
    root = _real_cifar_dir()
    if root is None:
        if os.environ.get("RBLOCK_REQUIRE_REAL_DATA") == "1":
            pytest.fail("RBLOCK_REQUIRE_REAL_DATA=1 but RBLOCK_CIFAR10_DIR is not set")
        pytest.skip("set RBLOCK_CIFAR10_DIR to the unpacked cifar10-jpeg copy")
    # the default cache folder ($RBLOCK_CACHE_DIR or ~/.cache/rblock-tune), shared with other runs
    ds = load_dataset(DataConfig(name="cifar10", root=str(root), val_size=0, download=False))
    assert ds.train_x.shape == (50000, 3, 32, 32) and ds.test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(ds.train_y).tolist() == [5000] * 10
    assert ds.mean == pytest.approx((0.4913, 0.4821, 0.4465), abs=2e-3)
