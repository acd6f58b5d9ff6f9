"""A run directory: a trainer driven through its epochs into ``metrics.json`` and ``checkpoint.pt``,
as ``rblock-tune train`` does."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rblock_tune import __version__
from rblock_tune.config import TrialConfig, config_from_dict, config_to_dict
from rblock_tune.errors import CheckpointError, DivergedError, RBlockError
from rblock_tune.layout import CHECKPOINT_FILE, COMPLETED, DIVERGED, METRICS_FILE, RUNNING
from rblock_tune.trainer._checkpoint import (
    check_compatible,
    checkpoint_due,
    differing_keys,
    read_checkpoint,
    saved_config,
)
from rblock_tune.trainer._trainer import Trainer

__all__ = ["load_run_config", "run_training"]

log = logging.getLogger(__name__)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    tmp.replace(path)


def _metrics_payload(trainer: Trainer, status: str, error: str | None = None) -> dict[str, Any]:
    records = trainer.records
    last = records[-1] if records else {}
    payload: dict[str, Any] = {
        "version": __version__,
        "seed": trainer.config.seed,
        "status": status,
        "device": str(trainer.device),
        "config": config_to_dict(trainer.config),
        "model": {
            "shortcut": trainer.config.model.resolved_shortcut,
            "parameters": sum(p.numel() for p in trainer.model.parameters()),
        },
        "epochs": records,
        "val_acc": last.get("val_acc"),
        "test_acc": trainer.test_acc,
    }
    if error is not None:
        payload["error"] = error
    return payload


def _check_metrics_belong(metrics: Path, saved: TrialConfig) -> None:
    """A run directory's ``metrics.json`` must be the record of its checkpoint's run: resuming
    rewrites it, which must not wipe another run's results."""
    if not metrics.exists():
        return
    try:
        recorded = json.loads(metrics.read_text())
        differ = differing_keys(saved, saved_config(recorded["config"], saved))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RBlockError):
        differ = ["(it cannot be read as a run's record)"]
    if differ:
        raise CheckpointError(
            f"cannot resume: {metrics} records another run than {metrics.parent / CHECKPOINT_FILE} "
            f"(differing: {', '.join(differ[:6])}), and resuming would overwrite it; move {METRICS_FILE} "
            "away, or start a new --out"
        )


def load_run_config(out_dir: str | Path) -> TrialConfig:
    """The config stored in a run directory's checkpoint."""
    return config_from_dict(read_checkpoint(Path(out_dir) / CHECKPOINT_FILE)["config"])


def run_training(
    config: TrialConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``out_dir``: ``metrics.json`` after every epoch, ``checkpoint.pt`` after
    every ``train.checkpoint_every`` epochs and the last.

    Args:
        config: the trial config (with ``resume``, it must match the checkpoint's apart
            from :data:`RESUMABLE_KEYS`).
        out_dir: the run directory.
        resume: continue from ``out_dir/checkpoint.pt``.
        progress: show a progress bar per epoch.
        on_epoch: called with each epoch record.

    Returns:
        The final contents of ``metrics.json``.

    Raises:
        CheckpointError: ``out_dir`` already holds a run and ``resume`` is false, or
            ``resume`` is true and there is nothing to resume.
        DivergedError: the loss became non-finite (``metrics.json`` records it first).
    """
    out = Path(out_dir)
    ckpt, metrics = out / CHECKPOINT_FILE, out / METRICS_FILE
    if resume and not ckpt.is_file():
        raise CheckpointError(f"nothing to resume: no {CHECKPOINT_FILE} in {out}")
    if not resume and (ckpt.exists() or metrics.exists()):
        raise CheckpointError(
            f"{out} already holds a run: continue it with --resume, or choose another --out"
        )
    state = read_checkpoint(ckpt) if resume else None
    if state is not None:
        saved = saved_config(state["config"], config)
        check_compatible(saved, config)
        _check_metrics_belong(metrics, saved)
    trainer = Trainer(config)  # loads the data first: a data error leaves no directory behind
    out.mkdir(parents=True, exist_ok=True)
    if state is not None:
        trainer.load_state_dict(state)
        log.info("resuming %s after epoch %d of %d", out, trainer.epoch, config.train.epochs)
    _write_json(metrics, _metrics_payload(trainer, RUNNING))
    try:
        for record in trainer.epochs(progress):
            if checkpoint_due(int(record["epoch"]), trainer.config):
                trainer.save(ckpt)
            _write_json(metrics, _metrics_payload(trainer, RUNNING))
            if on_epoch is not None:
                on_epoch(record)
    except DivergedError as exc:
        _write_json(metrics, _metrics_payload(trainer, DIVERGED, str(exc)))
        raise
    payload = _metrics_payload(trainer, COMPLETED)
    _write_json(metrics, payload)
    return payload
