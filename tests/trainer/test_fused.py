"""FusedTrainer: every fused member reproduces its solo Trainer run; save/restore, divergence, refusals."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from rblock_tune.config import TrialConfig, load_config
from rblock_tune.errors import CheckpointError, ConfigError, DivergedError
from rblock_tune.models import member_tensor
from rblock_tune.trainer import TIMING_KEYS, FusedTrainer, Trainer
from rblock_tune.variants import VARIANTS

SEEDS = (3, 5)

REL = 1e-9
"""Tolerance of a fused member against its solo run in float64 on CPU. The fused model computes
every member's values with the same kernels' arithmetic (grouped convolution, per-channel BatchNorm,
batched matmul); observed: bitwise equal, 0.0 relative difference, for every variant."""


def tiny_config(*overrides: str) -> TrialConfig:
    base = [
        "data.name=synthetic",
        "data.synthetic_size=96",
        "data.image_size=16",
        "data.val_size=32",
        "model.name=resnet8",
        "train.epochs=2",
        "train.batch_size=16",
        "train.lr=0.05",
        "train.eval_batch_size=64",
        "train.warmup_epochs=0.5",
        "train.consistency_batch=16",
        "reg.drop_prob=0.2",
        "reg.block_size=3",
        "train.device=cpu",
    ]
    return load_config(None, [*base, *overrides])


@pytest.fixture
def float64() -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def strip_timing(records: list[Any]) -> list[Any]:
    return [None if r is None else {k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def assert_close_records(fused: dict[str, Any], solo: dict[str, Any], rel: float = REL) -> None:
    assert set(fused) == set(solo)
    for key, value in solo.items():
        if key in TIMING_KEYS:
            assert math.isfinite(fused[key]) and fused[key] > 0, key
        elif value is None or isinstance(value, int):
            assert fused[key] == value, key
        else:
            assert fused[key] == pytest.approx(value, rel=rel, abs=1e-12), key


def first_batches(trainer: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(trainer.train_loader.batches(trainer.data_generator)))


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_fused_member_matches_its_solo_run(variant: str, float64: None) -> None:
    configs = [tiny_config(f"reg.variant={variant}", f"seed={s}") for s in SEEDS]
    fused = FusedTrainer(configs)
    batches = [next(iter(fused.train_loader.batches(g))) for g in fused.data_generators]
    loss, ce, kl, correct = fused.train_step([b[0] for b in batches], [b[1] for b in batches])
    fused_epochs = list(fused.epochs())
    solo_epochs, solo_test = [], []
    for i, config in enumerate(configs):  # one after another: a solo run's masks use the global RNG
        solo = Trainer(config)
        x, y = first_batches(solo)
        assert torch.equal(x, batches[i][0]) and torch.equal(y, batches[i][1])
        solo_loss, solo_ce, solo_kl, solo_correct = solo.train_step(x, y)
        assert float(loss[i]) == pytest.approx(float(solo_loss), rel=REL)
        assert float(ce[i]) == pytest.approx(float(solo_ce), rel=REL)
        assert float(kl[i]) == pytest.approx(float(solo_kl), rel=REL, abs=1e-12)
        assert float(correct[i]) == float(solo_correct)
        solo_epochs.append(list(solo.epochs()))
        solo_test.append(solo.test_acc)
    # then two epochs (from that state, on both sides): every metric, test_acc on the last one
    assert len(fused_epochs) == 2
    for e, records in enumerate(fused_epochs):
        assert len(records) == 2
        for i, record in enumerate(records):
            assert record is not None
            assert_close_records(record, solo_epochs[i][e])
    assert "test_acc" in fused_epochs[-1][0]
    assert fused.test_acc == pytest.approx(solo_test, rel=REL)
    # the members are different runs
    assert strip_timing([fused_epochs[-1][0]]) != strip_timing([fused_epochs[-1][1]])
    assert fused.records == [[r for r in (e[i] for e in fused_epochs)] for i in range(2)]


def test_members_differ_by_seed_and_share_everything_else() -> None:
    fused = FusedTrainer([tiny_config("reg.variant=bdrop_dml", f"seed={s}") for s in (1, 2, 1)])
    weight = fused.model.state_dict()["stem.0.weight"]
    a, b, c = (member_tensor(weight, 3, i) for i in range(3))
    assert torch.equal(a, c) and not torch.equal(a, b)
    records = list(fused.epochs(test=False))[-1]
    assert records[0] is not None and "test_acc" not in records[0]
    assert strip_timing([records[0]]) == strip_timing([records[2]])  # same seed, same run
    assert strip_timing([records[0]]) != strip_timing([records[1]])


def test_save_and_restore_mid_run_equals_an_unbroken_run(tmp_path: Path) -> None:
    configs = [tiny_config("reg.variant=sdrop_dml", f"seed={s}") for s in SEEDS]
    unbroken = list(FusedTrainer(configs).epochs())
    first = FusedTrainer(configs)
    head = next(first.epochs())
    first.save(tmp_path / "fused.pt")
    assert not (tmp_path / "fused.pt.tmp").exists()
    resumed = FusedTrainer(configs)
    resumed.restore(tmp_path / "fused.pt")
    assert resumed.epoch == 1 and resumed.records == first.records
    tail = list(resumed.epochs())
    assert [strip_timing(r) for r in [head, *tail]] == [strip_timing(r) for r in unbroken]
    assert resumed.test_acc == [r["test_acc"] for r in unbroken[-1]]


def test_restored_after_the_last_epoch_without_test_acc_measures_it(tmp_path: Path) -> None:
    configs = [tiny_config("reg.variant=dropout", "train.epochs=1", f"seed={s}") for s in SEEDS]
    trainer = FusedTrainer(configs)
    (records,) = list(trainer.epochs(test=False))
    assert all(r is not None and "test_acc" not in r for r in records)
    assert trainer.done and trainer.test_acc == [None, None]
    trainer.save(tmp_path / "fused.pt")
    restored = FusedTrainer(configs)
    restored.restore(tmp_path / "fused.pt")
    (again,) = list(restored.epochs())
    assert [r is not None and r["epoch"] == 1 and 0 <= r["test_acc"] <= 1 for r in again] == [True, True]
    assert list(restored.epochs()) == []


def test_a_member_state_continues_alone_as_its_solo_run(float64: None) -> None:
    configs = [tiny_config("reg.variant=bdrop_dml", f"seed={s}") for s in SEEDS]
    fused = FusedTrainer(configs)
    fused.run_epoch()
    solo = Trainer(configs[1])
    solo.load_state_dict(fused.member_state_dict(1))
    (fused_last,) = [r[1] for r in fused.epochs()]
    (solo_last,) = list(solo.epochs())
    assert fused_last is not None
    assert_close_records(fused_last, solo_last)
    reference = list(Trainer(configs[1]).epochs())
    assert_close_records(fused_last, reference[-1])


def test_a_diverging_member_is_reported_and_leaves_the_others_untouched() -> None:
    configs = [tiny_config("reg.variant=dropblock", f"seed={s}") for s in (1, 2, 3)]
    reference = list(FusedTrainer(configs).epochs())
    trainer = FusedTrainer(configs)
    loop = trainer.epochs()
    first = next(loop)
    with torch.no_grad():  # member 1's weights go NaN between its first and second epochs
        member_tensor(trainer.model.state_dict(keep_vars=True)["stage2.0.conv1.weight"], 3, 1).fill_(math.nan)
    rest = list(loop)
    assert [r is None for r in rest[0]] == [False, True, False]
    error = trainer.diverged[1]
    assert isinstance(error, DivergedError) and error.epoch == 2 and "diverged" in str(error)
    assert trainer.diverged[0] is None and trainer.diverged[2] is None
    assert trainer.test_acc[1] is None and len(trainer.records[1]) == 1
    for i in (0, 2):
        got = [first[i], *(r[i] for r in rest)]
        assert strip_timing(got) == strip_timing([e[i] for e in reference])
    for tensor in trainer.model.state_dict().values():  # the frozen member stays finite
        assert torch.isfinite(tensor).all()


def test_configs_that_differ_beyond_the_seed_are_refused_in_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        FusedTrainer([tiny_config("seed=1"), tiny_config("seed=2", "reg.drop_prob=0.1", "train.lr=0.1")])
    message = str(info.value)
    assert "\n" not in message and "reg.drop_prob" in message and "train.lr" in message
    assert message.split("differ in ")[1].startswith("reg.drop_prob, train.lr:")
    with pytest.raises(ConfigError, match="at least one config"):
        FusedTrainer([])


def test_checkpoints_of_another_kind_are_refused(tmp_path: Path) -> None:
    config = tiny_config("train.epochs=1")
    Trainer(config).save(tmp_path / "solo.pt")
    with pytest.raises(CheckpointError, match="single run"):
        FusedTrainer([config]).restore(tmp_path / "solo.pt")
    FusedTrainer([config, tiny_config("train.epochs=1", "seed=1")]).save(tmp_path / "two.pt")
    with pytest.raises(CheckpointError, match="fuses 2 runs"):
        FusedTrainer([config]).restore(tmp_path / "two.pt")


@pytest.mark.parametrize("model", ["vgg16", "preact_resnet18", "resnet20"])
def test_other_models_fuse_with_the_solo_first_step(model: str) -> None:
    """In float32 (float64 grouped convolutions are slow on CPU): grouped and dense kernels round
    differently, ~1e-7 relative."""
    configs = [
        tiny_config(
            f"model.name={model}",
            "data.image_size=32",
            "reg.variant=dropblock",
            "train.batch_size=4",
            f"seed={s}",
        )
        for s in SEEDS
    ]
    fused = FusedTrainer(configs)
    batches = [next(iter(fused.train_loader.batches(g))) for g in fused.data_generators]
    loss = fused.train_step([b[0] for b in batches], [b[1] for b in batches])[0]
    for i, config in enumerate(configs):
        solo = Trainer(config)
        assert float(loss[i]) == pytest.approx(float(solo.train_step(*first_batches(solo))[0]), rel=1e-5)
