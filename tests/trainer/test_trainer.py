"""Trainer on synthetic data: records, reproducibility, exact resume, divergence."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from rblock_tune import __version__
from rblock_tune.config import PAIRED_VARIANTS, VARIANTS, TrialConfig, load_config
from rblock_tune.errors import CheckpointError, ConfigError, DivergedError
from rblock_tune.layout import CHECKPOINT_FILE, METRICS_FILE
from rblock_tune.regularizers import _layers
from rblock_tune.trainer import TIMING_KEYS, Trainer, checkpoint_due, describe_draws, run_training

RECORD_KEYS = {
    "epoch",
    "train_loss",
    "train_ce",
    "train_kl",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "scheduled_drop_prob",
    "consistency_kl_own",
    "consistency_kl_probe",
    "epoch_seconds",
    "images_per_second",
}


def rate_keys(variant: str) -> set[str]:
    return {"drop_rate_a", "drop_rate_b"} if variant in PAIRED_VARIANTS else {"drop_rate"}


def small_config(*overrides: str) -> TrialConfig:
    base = [
        "data.name=synthetic",
        "data.synthetic_size=256",
        "data.val_size=64",
        "model.name=resnet8",
        "train.epochs=2",
        "train.batch_size=32",
        "train.lr=0.05",
        "train.eval_batch_size=64",
        "train.warmup_epochs=0.5",
        "reg.drop_prob=0.2",
        "reg.block_size=3",
        "train.device=cpu",
        "train.consistency_batch=32",
    ]
    return load_config(None, [*base, *overrides])


def strip_timing(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_and_reports_a_full_record(variant: str) -> None:
    trainer = Trainer(small_config(f"reg.variant={variant}", "train.epochs=1"))
    records = list(trainer.epochs())
    assert len(records) == 1
    record = records[0]
    expected = RECORD_KEYS | rate_keys(variant) | {"test_acc"}
    if variant == "none":  # no masks of its own: no own-mask consistency
        expected -= {"consistency_kl_own"}
    assert expected == set(record)
    for key, value in record.items():
        assert math.isfinite(value), key
    for key in ("train_acc", "val_acc", "test_acc"):
        assert 0.0 <= record[key] <= 1.0
    if variant in ("random_dml", "bdrop_dml", "sdrop_dml"):
        assert record["train_kl"] > 0.0
        assert record["train_loss"] == pytest.approx(record["train_ce"] + 1.0 * record["train_kl"], rel=1e-6)
    else:
        assert record["train_kl"] == 0.0
        assert record["train_loss"] == pytest.approx(record["train_ce"])
    if variant == "none":
        assert record["drop_rate"] == 0.0
    else:
        assert record["consistency_kl_own"] > 0.0
        # the ramp runs over this one epoch: about half the target on average (dropblock's overlaps less)
        for key in rate_keys(variant):
            assert 0.05 < record[key] < 0.13, (key, record[key])
    assert record["consistency_kl_probe"] > 0.0  # every variant, none included, under one probe
    assert record["scheduled_drop_prob"] == pytest.approx(
        0.2
    )  # linear ramp reaches the target on the last step


@pytest.mark.slow
def test_the_test_set_is_measured_after_the_last_epoch_or_every_epoch_as_asked() -> None:
    final = [r.get("test_acc") for r in Trainer(small_config("train.epochs=3")).epochs()]
    assert final[:2] == [None, None] and final[2] is not None
    assert [r.get("test_acc") for r in Trainer(small_config("train.epochs=3")).epochs(test=False)] == [
        None
    ] * 3
    every = Trainer(small_config("train.epochs=3"))
    accs = [r.get("test_acc") for r in every.epochs(every_epoch=True)]
    assert all(a is not None for a in accs) and accs[-1] == every.test_acc == final[2]  # same seed, same run


def test_training_learns_synthetic_data() -> None:
    cfg = small_config("reg.variant=bdrop_dml", "train.epochs=6", "data.synthetic_size=512")
    records = list(Trainer(cfg).epochs())
    assert records[-1]["val_acc"] > 0.5  # 10 classes: chance is 0.1
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert records[-1]["lr"] < 1e-3  # cosine decays to ~0 at the end
    drop = [r["scheduled_drop_prob"] for r in records]
    assert drop == sorted(drop) and drop[0] == pytest.approx(0.2 / 6, rel=0.05)


def test_same_seed_same_metrics_and_different_seed_differs() -> None:
    a = list(Trainer(small_config("seed=1")).epochs())
    b = list(Trainer(small_config("seed=1")).epochs())
    c = list(Trainer(small_config("seed=2")).epochs())
    assert strip_timing(a) == strip_timing(b)
    assert strip_timing(a) != strip_timing(c)


def test_arms_with_the_same_seed_share_init_and_data_order() -> None:
    none = Trainer(small_config("reg.variant=none", "seed=4"))
    rblock = Trainer(small_config("reg.variant=sdrop_dml", "seed=4"))
    for (ka, va), (kb, vb) in zip(
        none.model.state_dict().items(), rblock.model.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)
    xa, ya = next(iter(none.train_loader.batches(none.data_generator)))
    xb, yb = next(iter(rblock.train_loader.batches(rblock.data_generator)))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_run_training_writes_metrics_and_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_training(small_config(), out)
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert metrics == json.loads(json.dumps(result))
    assert metrics["status"] == "completed"
    assert metrics["seed"] == 0
    assert metrics["version"] == __version__
    assert metrics["config"]["reg"]["variant"] == "bdrop_dml"
    assert len(metrics["epochs"]) == 2
    assert metrics["val_acc"] == metrics["epochs"][-1]["val_acc"]
    assert metrics["test_acc"] == metrics["epochs"][-1]["test_acc"]
    state = torch.load(out / CHECKPOINT_FILE, weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "rng", "config"} <= set(state)
    assert state["epoch"] == 2 and {"torch", "data"} <= set(state["rng"])
    with pytest.raises(CheckpointError, match="already holds a run"):
        run_training(small_config(), out)


def test_checkpoint_every_checkpoints_every_n_epochs_and_the_last(tmp_path: Path) -> None:
    cfg = small_config("train.epochs=5", "train.checkpoint_every=2")
    assert [checkpoint_due(epoch, cfg) for epoch in range(1, 6)] == [False, True, False, True, True]
    out = tmp_path / "run"
    saved: list[int | None] = []

    def look(record: dict[str, Any]) -> None:  # called after the epoch's checkpoint, if any
        ckpt = out / CHECKPOINT_FILE
        saved.append(int(torch.load(ckpt, weights_only=True)["epoch"]) if ckpt.exists() else None)

    result = run_training(cfg, out, on_epoch=look)
    assert saved == [None, 2, 2, 4, 5]
    assert len(result["epochs"]) == 5  # metrics.json still has every epoch


def test_a_run_resumed_from_a_sparse_checkpoint_repeats_the_epochs_after_it(tmp_path: Path) -> None:
    cfg = small_config("train.epochs=4", "train.checkpoint_every=2")
    full = run_training(cfg, tmp_path / "full")

    def stop_after_third(record: dict[str, Any]) -> None:
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, tmp_path / "cut", on_epoch=stop_after_third)
    assert torch.load(tmp_path / "cut" / CHECKPOINT_FILE, weights_only=True)["epoch"] == 2
    # the cadence is no part of the run: it may change on resume
    every_epoch = small_config("train.epochs=4", "train.checkpoint_every=1")
    resumed = run_training(every_epoch, tmp_path / "cut", resume=True)
    assert strip_timing(resumed["epochs"]) == strip_timing(full["epochs"])  # epoch 3 again, the same
    assert resumed["test_acc"] == full["test_acc"]


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path: Path) -> None:
    cfg = small_config("train.epochs=3", "reg.variant=sdrop_dml")
    full = run_training(cfg, tmp_path / "full")

    def stop_after_first(record: dict[str, Any]) -> None:
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, tmp_path / "cut", on_epoch=stop_after_first)
    partial = json.loads((tmp_path / "cut" / METRICS_FILE).read_text())
    assert partial["status"] == "running" and len(partial["epochs"]) == 1
    resumed = run_training(cfg, tmp_path / "cut", resume=True)
    assert strip_timing(resumed["epochs"]) == strip_timing(full["epochs"])
    assert resumed["test_acc"] == full["test_acc"]


def test_resume_refuses_missing_or_changed_runs(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nothing to resume"):
        run_training(small_config(), tmp_path / "none", resume=True)
    run_training(small_config("train.epochs=1"), tmp_path / "run")
    with pytest.raises(CheckpointError, match=r"reg.alpha=2.0 differs from the checkpoint's 1.0"):
        run_training(small_config("train.epochs=1", "reg.alpha=2"), tmp_path / "run", resume=True)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        run_training(small_config(), tmp_path / "bad", resume=True)


def test_diverged_run_raises_and_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Trainer.train_step
    calls = {"n": 0}

    def exploding(self: Trainer, *args: Any) -> Any:
        calls["n"] += 1
        loss, ce, kl, correct = real(self, *args)
        if calls["n"] >= 10:  # in the second epoch (6 steps per epoch)
            return loss * float("nan"), ce, kl, correct
        return loss, ce, kl, correct

    monkeypatch.setattr(Trainer, "train_step", exploding)
    with pytest.raises(DivergedError) as info:
        run_training(small_config(), tmp_path / "run")
    assert info.value.epoch == 2 and info.value.step == 10
    assert "diverged" in str(info.value)
    metrics = json.loads((tmp_path / "run" / METRICS_FILE).read_text())
    assert metrics["status"] == "diverged"
    assert "diverged" in metrics["error"]
    assert len(metrics["epochs"]) == 1  # the finished epoch is kept
    assert torch.load(tmp_path / "run" / CHECKPOINT_FILE, weights_only=True)["epoch"] == 1


def test_cuda_request_without_gpu_is_a_config_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="no CUDA device"):
        Trainer(small_config("train.device=cuda"))


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_via_cli(tmp_path: Path) -> None:
    """A crash (SIGKILL) loses at most the epoch in progress; --resume finishes the run
    with exactly the metrics of an uninterrupted one."""
    args = [
        "--set",
        "data.name=synthetic",
        "--set",
        "data.synthetic_size=512",
        "--set",
        "model.name=resnet8",
        "--set",
        "train.epochs=4",
        "--set",
        "train.batch_size=32",
        "--set",
        "train.device=cpu",
        "--set",
        "train.lr=0.05",
        "--set",
        "data.val_size=64",
    ]
    cmd = [sys.executable, "-m", "rblock_tune.cli", "-q", "train", *args]
    env = {**os.environ, "RBLOCK_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run([*cmd, "--out", str(tmp_path / "full")], check=True, env=env, capture_output=True)
    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "cut")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpt = tmp_path / "cut" / CHECKPOINT_FILE
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = json.loads((tmp_path / "cut" / METRICS_FILE).read_text())
    assert partial["status"] == "running" and len(partial["epochs"]) < 4
    subprocess.run(
        [*cmd[:4], "train", "--out", str(tmp_path / "cut"), "--resume"],
        check=True,
        env=env,
        capture_output=True,
    )
    full = json.loads((tmp_path / "full" / METRICS_FILE).read_text())
    resumed = json.loads((tmp_path / "cut" / METRICS_FILE).read_text())
    assert resumed["status"] == "completed"
    assert strip_timing(resumed["epochs"]) == strip_timing(full["epochs"])
    assert resumed["test_acc"] == full["test_acc"]


def test_progress_bar_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = Trainer(small_config("train.epochs=1"))
    trainer.run_epoch(progress=True)
    assert "epoch 1/1" in capsys.readouterr().err


@pytest.mark.slow
def test_torch_compile_trains() -> None:
    """``train.compile=true`` runs the compiled model (about a minute of compilation on CPU)."""
    trainer = Trainer(small_config("train.compile=true", "train.epochs=1", "data.synthetic_size=128"))
    assert trainer.forward is not trainer.model
    # the drop layers' mask step is held out of the compiled graph (wrapped on the first compile)
    assert _layers._masks_fn is not _layers._apply_masks
    assert getattr(_layers._masks_fn, "__wrapped__", None) is _layers._apply_masks
    (record,) = list(trainer.epochs())
    assert all(math.isfinite(v) for v in record.values())
    assert record["train_kl"] > 0.0


def test_no_validation_split(tmp_path: Path) -> None:
    """data.val_size=0 trains on every training image; val metrics are null."""
    result = run_training(small_config("data.val_size=0", "train.epochs=1"), tmp_path / "run")
    (record,) = result["epochs"]
    assert record["val_acc"] is None and record["val_loss"] is None and result["val_acc"] is None
    # no consistency metric is computed on test images: without a validation split there is none
    assert "consistency_kl_own" not in record and "consistency_kl_probe" not in record
    assert 0.0 <= result["test_acc"] <= 1.0


# ------------------------------------------------------------------ fair instruments
def folder_config(root: Path, tmp_path: Path, *overrides: str) -> TrialConfig:
    return load_config(
        None,
        [
            "data.name=imagefolder",
            f"data.root={root}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.val_size=80",
            "model.name=resnet8",
            "train.epochs=1",
            "train.batch_size=40",
            "train.lr=0.05",
            "train.device=cpu",
            "train.consistency_batch=20",
            *overrides,
        ],
    )


def test_probe_batch_is_a_stratified_sample_of_a_class_ordered_split(
    class_ordered_folder: Path, tmp_path: Path
) -> None:
    """On class-ordered data the first rows of the validation split are one class; the fixed probe
    batch is a seeded, class-stratified sample instead, the same for every trial of the split."""
    from rblock_tune.data import probe_rows

    a = Trainer(folder_config(class_ordered_folder, tmp_path, "seed=1", "reg.variant=dropblock"))
    assert a.data.val_y[:20].unique().tolist() == [0]  # what the first 20 rows would have measured
    rows = probe_rows(a.data.val_y, a.data.num_classes, 20, split_seed=0)
    assert torch.bincount(a.data.val_y[rows], minlength=4).tolist() == [5, 5, 5, 5]
    # the trainer's batch itself: de-normalise it and read each image's class from pixel (0, 0)
    assert a._consistency_batch is not None
    mean, std = a.data.mean[1], a.data.std[1]
    green = ((a._consistency_batch[:, 1, 0, 0] * std + mean) * 255).round().long()
    assert torch.bincount(green // 40, minlength=4).tolist() == [5, 5, 5, 5]
    assert torch.equal(green // 40, a.data.val_y[rows])
    b = Trainer(folder_config(class_ordered_folder, tmp_path, "seed=7", "reg.variant=sdrop_dml"))
    assert b._consistency_batch is not None and torch.equal(a._consistency_batch, b._consistency_batch)
    c = Trainer(folder_config(class_ordered_folder, tmp_path, "data.split_seed=1"))
    rows_c = probe_rows(c.data.val_y, c.data.num_classes, 20, split_seed=1)
    assert torch.bincount(c.data.val_y[rows_c], minlength=4).tolist() == [5, 5, 5, 5]
    assert c._consistency_batch is not None and not torch.equal(a._consistency_batch, c._consistency_batch)


def test_probe_metric_is_the_same_for_the_same_weights_whatever_the_variant(
    class_ordered_folder: Path, tmp_path: Path
) -> None:
    """consistency_kl_probe measures every variant with the same DropBlock masks; the own-mask
    metric differs by construction (each variant's own masks)."""
    trainers = {
        v: Trainer(folder_config(class_ordered_folder, tmp_path, f"reg.variant={v}", "seed=3"))
        for v in ("none", "dropblock", "bdrop_dml", "sdrop_dml")
    }
    probes = {v: t.consistency_kl_probe() for v, t in trainers.items()}
    assert len(set(probes.values())) == 1 and probes["none"] > 0.0, probes
    own = {v: t.consistency_kl_own() for v, t in trainers.items()}
    assert own.pop("none") is None and len(set(own.values())) == 3, own
    # measuring through the own masks is not a training step: it adds nothing to the realised rates
    assert all(layer.realised_rates() is None for layer in trainers["bdrop_dml"].drop_layers)
    trainers["dropblock"].run_epoch()  # trained weights, copied into a model of another variant
    trained = trainers["dropblock"].model.state_dict()
    trainers["sdrop_dml"].model.load_state_dict(trained)
    assert trainers["sdrop_dml"].consistency_kl_probe() == trainers["dropblock"].consistency_kl_probe()
    other = Trainer(folder_config(class_ordered_folder, tmp_path, "train.probe_drop_prob=0.3"))
    other.model.load_state_dict(trained)
    assert other.consistency_kl_probe() != trainers["dropblock"].consistency_kl_probe()  # configurable


def test_recorded_lr_is_the_rate_of_the_epochs_last_step() -> None:
    trainer = Trainer(small_config("train.epochs=3", "train.warmup_epochs=1"))
    seen: list[float] = []
    trainer.optimizer.register_step_pre_hook(lambda opt, *_: seen.append(opt.param_groups[0]["lr"]))
    records = list(trainer.epochs())
    per_epoch = trainer.steps_per_epoch
    assert [r["lr"] for r in records] == [seen[(e + 1) * per_epoch - 1] for e in range(3)]
    assert records[0]["lr"] == pytest.approx(0.05)  # the last warm-up step runs at the peak rate
    assert records[-1]["lr"] > 0.0  # the last step's rate, not the 0 that would follow it


@pytest.mark.slow
def test_ramp_epochs_is_an_absolute_ramp() -> None:
    for epochs in (4, 6):
        records = list(Trainer(small_config(f"train.epochs={epochs}", "reg.ramp_epochs=2")).epochs())
        assert [r["scheduled_drop_prob"] for r in records[:3]] == pytest.approx([0.1, 0.2, 0.2])
    fraction = list(Trainer(small_config("train.epochs=4", "reg.ramp_fraction=0.5")).epochs())
    assert [r["scheduled_drop_prob"] for r in fraction[:3]] == pytest.approx([0.1, 0.2, 0.2])
    with pytest.raises(ConfigError, match=r"longer than train\.epochs=2"):
        small_config("reg.ramp_epochs=3")
    with pytest.raises(ConfigError, match="set one of them"):
        small_config("reg.ramp_epochs=1", "reg.ramp_fraction=0.5")


def test_checkpoint_of_an_older_format_is_refused_in_one_line(tmp_path: Path) -> None:
    run_training(small_config("train.epochs=1"), tmp_path / "run")
    state = torch.load(tmp_path / "run" / CHECKPOINT_FILE, weights_only=True)
    state["format"] = 1
    torch.save(state, tmp_path / "run" / CHECKPOINT_FILE)
    with pytest.raises(CheckpointError, match="checkpoint format 1") as info:
        run_training(small_config("train.epochs=2"), tmp_path / "run", resume=True)
    assert "\n" not in str(info.value) and "start a new run" in str(info.value)


@pytest.mark.parametrize(("sampler", "warned"), [("auto", True), ("sparse", True), ("dense", False)])
def test_a_checkpoint_from_before_mask_sampler_resumes_and_says_when_its_draws_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sampler: str, warned: bool
) -> None:
    """A checkpoint whose config has no reg.mask_sampler was drawn dense (earlier versions): it resumes
    (the key takes the current value), with a warning when the rest of the run will draw sparse."""
    cfg = small_config("train.epochs=1", "reg.variant=bdrop_dml", f"reg.mask_sampler={sampler}")
    trainer = Trainer(cfg)
    state = trainer.state_dict()
    del state["config"]["reg"]["mask_sampler"]  # as an earlier rblock-tune wrote it
    torch.save(state, tmp_path / CHECKPOINT_FILE)
    with caplog.at_level("WARNING", logger="rblock_tune"):
        Trainer(cfg).restore(tmp_path / CHECKPOINT_FILE)
    assert ("written before reg.mask_sampler existed" in caplog.text) == warned
    caplog.clear()
    Trainer(cfg).restore(_save(Trainer(cfg), tmp_path / "now.pt"))  # a checkpoint of this version
    assert "mask_sampler" not in caplog.text


def _save(trainer: Trainer, path: Path) -> Path:
    trainer.save(path)
    return path


@pytest.mark.parametrize(
    ("variant", "sampler", "device", "expected"),
    [
        ("none", "auto", "cpu", "device cpu"),
        ("sdrop_dml", "dense", "cpu", "device cpu"),  # grid cells, no seeds: the sampler says nothing
        ("dropblock", "auto", "cpu", "device cpu, DropBlock seeds drawn sparse (reg.mask_sampler auto)"),
        ("bdrop_dml", "auto", "cuda:0", "device cuda:0, DropBlock seeds drawn dense (reg.mask_sampler auto)"),
        ("random_dml", "dense", "cpu", "device cpu, DropBlock seeds drawn dense (reg.mask_sampler dense)"),
    ],
)
def test_a_runs_log_line_says_where_it_trained_and_how_its_seeds_were_drawn(
    variant: str, sampler: str, device: str, expected: str
) -> None:
    """``auto`` in the config does not say which draws a run had: the line its log gets does."""
    cfg = load_config(None, [f"reg.variant={variant}", f"reg.mask_sampler={sampler}"])
    assert describe_draws(cfg, torch.device(device)) == expected


def test_a_run_dir_from_before_mask_sampler_resumes_dense_from_the_cli(tmp_path: Path) -> None:
    """``rblock-tune train --resume`` of a run an earlier version wrote (no reg.mask_sampler in its
    checkpoint or metrics.json) continues it with ``--set reg.mask_sampler=dense``."""
    cfg = small_config("train.epochs=2", "reg.variant=bdrop_dml", "reg.mask_sampler=dense")

    def stop_after_first(record: dict[str, Any]) -> None:
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, out, on_epoch=stop_after_first)
    state = torch.load(out / CHECKPOINT_FILE, weights_only=True)
    del state["config"]["reg"]["mask_sampler"]
    torch.save(state, out / CHECKPOINT_FILE)
    metrics = json.loads((out / "metrics.json").read_text())
    del metrics["config"]["reg"]["mask_sampler"]
    (out / "metrics.json").write_text(json.dumps(metrics))
    resumed = run_training(cfg, out, resume=True)
    whole = run_training(cfg, tmp_path / "whole")  # dense throughout: the resumed run's draws
    assert [r["epoch"] for r in resumed["epochs"]] == [1, 2]
    for key in ("train_loss", "val_acc"):
        assert [r[key] for r in resumed["epochs"]] == [w[key] for w in whole["epochs"]]
