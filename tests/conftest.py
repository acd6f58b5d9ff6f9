"""Shared fixtures: a real tiny study (search, seed phase, report) made once per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

TINY_STUDY = {
    "name": "tiny",
    "base": {
        "data": {"name": "synthetic", "synthetic_size": 256, "val_size": 64},
        "model": {"name": "resnet8"},
        "reg": {"variant": "bdrop_dml", "alpha": 1.0, "drop_prob": 0.1, "block_size": 3},
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "device": "cpu", "eval_batch_size": 128},
    },
    "space": {
        "reg.variant": ["bdrop_dml", "sdrop_dml"],
        "reg.alpha": {"type": "loguniform", "low": 0.1, "high": 10},
        "reg.drop_prob": {"type": "uniform", "low": 0.05, "high": 0.3},
    },
    "search": {"algorithm": "tpe", "num_samples": 6, "max_concurrent": 2, "seed": 0},
    "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
    "resources": {"cpus": 1},
    "seeds": {
        "top_k": 1,
        "n_seeds": 3,
        "arms": [
            {"label": "dropblock", "set": {"reg.variant": "dropblock"}},
            {"label": "none", "set": {"reg.variant": "none"}},
        ],
    },
    "report": True,
}


@dataclass(frozen=True)
class TinyStudy:
    """A finished tiny study: 6 search trials (TPE + ASHA), a 3-seed phase of top1 against
    dropblock and none, and its report."""

    name: str
    workdir: Path
    tracking_uri: str
    report: Path
    stdout: str


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyStudy]:
    """Run the tiny study once, through the command line, in its own process (and its own Ray, in a
    short private temp dir: Ray's socket paths must fit in 107 bytes)."""
    folder = tmp_path_factory.mktemp("tiny_study")
    spec = folder / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY_STUDY, sort_keys=False))
    workdir = folder / "work"
    ray_tmp = tempfile.mkdtemp(prefix="rbt-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR")}
    env["RAY_TMPDIR"] = ray_tmp
    command = [sys.executable, "-m", "rblock_tune.cli", "-q", "study", "run", str(spec)]
    try:
        done = subprocess.run(
            [*command, "--workdir", str(workdir)],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            check=False,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    yield TinyStudy(
        name="tiny",
        workdir=workdir,
        tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
        report=workdir / "tiny" / "report",
        stdout=done.stdout,
    )


def write_class_ordered_folder(
    root: Path, n_classes: int = 4, n_train: int = 40, n_test: int = 8, size: int = 32
) -> Path:
    """An image folder shaped like the shared CIFAR-10 copy: ``root/{train,test}/<class>/NNNN.png``,
    read class by class, so the training set (and the validation split carved from it) is in class
    order. Each class has its own mean colour and a little noise; the green channel of pixel (0, 0)
    is the class index times 40, so a test can read a decoded image's class back."""
    rng = np.random.default_rng(0)
    for label in range(n_classes):
        colour = rng.integers(30, 220, size=3)
        for split, n in (("train", n_train), ("test", n_test)):
            folder = root / split / f"class{label:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = np.clip(colour + rng.normal(0, 20, size=(size, size, 3)), 0, 255).astype(np.uint8)
                img[0, 0, 1] = 40 * label
                Image.fromarray(img).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="session")
def class_ordered_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-class image folder in class order (see :func:`write_class_ordered_folder`)."""
    return write_class_ordered_folder(tmp_path_factory.mktemp("class_ordered") / "data")
