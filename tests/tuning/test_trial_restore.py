"""Which checkpoint a retried or resumed trial continues from: the newer of Ray's and its own copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ray import tune

from rblock_tune.config import config_from_dict
from rblock_tune.layout import CHECKPOINT_FILE
from rblock_tune.trainer import Trainer
from rblock_tune.tuning import _trainable
from rblock_tune.tuning._trainable import OwnCheckpoints, _restore

CONFIG = {
    "data": {"name": "synthetic", "synthetic_size": 64, "val_size": 32},
    "model": {"name": "resnet8"},
    "reg": {"variant": "dropblock", "drop_prob": 0.1, "block_size": 3},
    "train": {"epochs": 3, "batch_size": 32, "device": "cpu"},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Checkpoints of one run after epochs 1, 2 and 3."""
    folder = tmp_path_factory.mktemp("epochs")
    trainer = Trainer(config_from_dict(CONFIG))
    saved = {}
    for epoch in (1, 2, 3):
        trainer.run_epoch()
        saved[epoch] = folder / f"{epoch}" / CHECKPOINT_FILE
        saved[epoch].parent.mkdir()
        trainer.save(saved[epoch])
    return saved


def _setup(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trained: dict[int, Path],
    ray: int | None,
    own: int | None,
) -> tuple[Trainer, OwnCheckpoints]:
    """A fresh trainer, Ray handing it the checkpoint of epoch ``ray`` and its own copy at ``own``."""
    checkpoint: Any = None
    if ray is not None:
        checkpoint = tune.Checkpoint.from_directory(str(trained[ray].parent))
    monkeypatch.setattr(_trainable.tune, "get_checkpoint", lambda: checkpoint)
    copies = OwnCheckpoints(str(tmp_path / "rblock_state"), "trial_1")
    if own is not None:
        copies.save(trained[own], own)
    return Trainer(config_from_dict(CONFIG)), copies


@pytest.mark.parametrize(
    ("ray", "own", "epoch", "from_own_copy"),
    [
        (2, 3, 3, True),  # the last epoch: its report carried no checkpoint, its own copy has it
        (1, 2, 2, True),  # a crash after the copy was written, before its epoch was reported
        (2, 2, 2, False),
        (2, None, 2, False),
        (None, 3, 3, True),  # Ray's checkpoint is gone (or there was none)
        (None, None, 0, False),
    ],
)
def test_a_trial_continues_from_the_newer_of_rays_checkpoint_and_its_own_copy(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trained: dict[int, Path],
    ray: int | None,
    own: int | None,
    epoch: int,
    from_own_copy: bool,
) -> None:
    trainer, copies = _setup(tmp_path, monkeypatch, trained, ray, own)
    assert _restore(trainer, copies) is from_own_copy
    assert trainer.epoch == epoch and len(trainer.records) == epoch
    if epoch:
        reference = Trainer(config_from_dict(CONFIG))
        reference.restore(trained[epoch])
        assert trainer.records == reference.records
