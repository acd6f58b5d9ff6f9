"""What a training run is built from, shared by :class:`~rblock_tune.trainer.Trainer` and
:class:`~rblock_tune.trainer.FusedTrainer`: the device, the seeded model, the loaders, the probe
batch of the consistency metrics, the optimiser and the two schedules."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from rblock_tune.config import TrialConfig
from rblock_tune.data import Dataset, DeviceLoader, probe_rows
from rblock_tune.errors import ConfigError
from rblock_tune.models import build_model
from rblock_tune.regularizers import DropSchedule, drop_factory, realised_drop_rates, seed_sampler
from rblock_tune.variants import get_variant

__all__ = [
    "CONSISTENCY_SEED",
    "build_drop_schedule",
    "build_loaders",
    "build_optimizer",
    "build_probe_batch",
    "build_seeded_model",
    "describe_draws",
    "drop_rate_record",
    "resolve_device",
]

CONSISTENCY_SEED = 20230728
"""Seed of the masks of both consistency metrics: the same masks every epoch, for every trial."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device='cuda' but no CUDA device is available: use train.device=cpu or auto")
    return torch.device(name)


def describe_draws(config: TrialConfig, device: torch.device) -> str:
    """Where a run trains and, for a variant that grows DropBlock seeds, how they are drawn: what its
    config does not say when ``train.device`` or ``reg.mask_sampler`` is ``auto`` (a run's log line)."""
    text = f"device {device}"
    if get_variant(config.reg.variant).block_seeds:
        drawn = seed_sampler(config.reg.mask_sampler, device)
        text += f", DropBlock seeds drawn {drawn} (reg.mask_sampler {config.reg.mask_sampler})"
    return text


def _lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))


def build_seeded_model(config: TrialConfig, data: Dataset) -> nn.Module:
    """The run's model (on the CPU), initialised from the global torch RNG seeded with ``config.seed``
    just before it is built; the masks then draw from that RNG where initialisation left it."""
    torch.manual_seed(config.seed)
    return build_model(config.model, data.num_classes, drop_factory(config.reg), in_channels=data.in_channels)


def build_loaders(
    config: TrialConfig, data: Dataset, device: torch.device, channels_last: bool
) -> tuple[DeviceLoader, DeviceLoader, DeviceLoader]:
    """The training, validation and test loaders of a run."""
    cfg = config.train
    loader_args: dict[str, Any] = {
        "device": device,
        "mean": data.mean,
        "std": data.std,
        "channels_last": channels_last,
    }
    train = DeviceLoader(
        data.train_x,
        data.train_y,
        batch_size=cfg.batch_size,
        train=True,
        crop_padding=config.data.crop_padding,
        flip=config.data.flip,
        **loader_args,
    )
    val = DeviceLoader(data.val_x, data.val_y, batch_size=cfg.eval_batch_size, train=False, **loader_args)
    test = DeviceLoader(data.test_x, data.test_y, batch_size=cfg.eval_batch_size, train=False, **loader_args)
    return train, val, test


def build_optimizer(
    params: Iterable[nn.Parameter], config: TrialConfig, steps_per_epoch: int
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """SGD with Nesterov momentum and its learning-rate schedule (linear warm-up, cosine decay)."""
    cfg = config.train
    optimizer = torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay
    )
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
    total_steps = cfg.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, warmup_steps, total_steps)
    )
    return optimizer, scheduler


def build_drop_schedule(config: TrialConfig, steps_per_epoch: int) -> DropSchedule:
    """The drop probability by step of a run."""
    reg = config.reg
    ramp_steps = None if reg.ramp_epochs is None else max(1, round(reg.ramp_epochs * steps_per_epoch))
    total_steps = config.train.epochs * steps_per_epoch
    return DropSchedule(reg.drop_prob, total_steps, reg.schedule, reg.ramp_fraction or 1.0, ramp_steps)


def build_probe_batch(
    config: TrialConfig, data: Dataset, device: torch.device, channels_last: bool
) -> torch.Tensor | None:
    """The fixed probe batch of the consistency metrics: ``train.consistency_batch`` validation
    images, a class-stratified sample fixed by ``data.split_seed`` (:func:`rblock_tune.data.probe_rows`);
    None without a validation split (test images are never used)."""
    if not len(data.val_y):
        return None
    rows = probe_rows(data.val_y, data.num_classes, config.train.consistency_batch, config.data.split_seed)
    x = data.val_x[rows].to(device)
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
    batch = (x.float() / 255.0 - mean) / std
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def drop_rate_record(config: TrialConfig, module: nn.Module) -> dict[str, float]:
    """Realised drop rates of the drop layers in ``module`` since they were last reset, measured from
    the masks actually applied: share of units dropped, per sub-model, averaged over steps and drop
    layers. ``drop_rate`` for single-model variants (0 for ``none``), ``drop_rate_a`` and
    ``drop_rate_b`` for the two sub-models of paired ones."""
    rates = None if config.reg.variant == "none" else realised_drop_rates(module)
    if config.reg.paired:
        a, b = rates if rates is not None else (0.0, 0.0)
        return {"drop_rate_a": a, "drop_rate_b": b}
    return {"drop_rate": rates[0] if rates is not None else 0.0}
