"""The Ray Tune trainable: a thin shim around :class:`rblock_tune.trainer.Trainer`.

Each epoch: train, checkpoint through ``tune.Checkpoint``, log the record to the trial's
MLflow run, ``tune.report``. A retried or resumed trial restores its last checkpoint and
continues. A non-finite loss ends the trial with one result carrying ``diverged=1``.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from rblock_tune.config import config_from_dict, flatten_config, with_overrides
from rblock_tune.errors import DivergedError
from rblock_tune.trainer import CHECKPOINT_FILE, Trainer
from rblock_tune.tuning._tracking import TrialRun

__all__ = ["TrialContext", "run_trial", "trial_config"]


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its own config; picklable, shipped to workers.

    Attributes:
        study: study name.
        role: ``trial`` (search phase) or ``seed_run`` (seed phase).
        base: nested base trial config.
        epochs: epochs of every trial of this phase.
        metric: the metric the study optimises.
        mode: ``max`` or ``min``.
        tracking_uri: MLflow tracking URI.
        experiment_id: MLflow experiment id.
        parent_run_id: MLflow parent run of this phase.
        arms: seed phase: arm label -> dotted overrides of the base config.
    """

    study: str
    role: str
    base: dict[str, Any]
    epochs: int
    metric: str
    mode: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)


def trial_config(config: dict[str, Any], context: TrialContext) -> tuple[Any, str | None]:
    """The resolved trial config of a Ray config, and the arm label (seed phase)."""
    base = config_from_dict(context.base)
    if context.role == "trial":
        overrides = dict(config.get("overrides", {}))
        arm = None
    else:
        arm = str(config["arm"])
        overrides = {**context.arms[arm], "seed": int(config["seed"])}
    overrides["train.epochs"] = context.epochs
    return with_overrides(base, overrides), arm


def _result(record: dict[str, Any], metric: str) -> dict[str, Any]:
    result = {k: v for k, v in record.items() if isinstance(v, (int, float)) and v is not None}
    result["diverged"] = 0
    if result.get(metric) is None:
        result[metric] = float("nan")
    return result


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Train one trial under Ray Tune (see the module docstring)."""
    cfg, arm = trial_config(config, context)
    trial_id = tune.get_context().get_trial_id()
    run = TrialRun(  # first, so that a trial failing at start still has its run
        context.tracking_uri,
        context.experiment_id,
        context.parent_run_id,
        study=context.study,
        role=context.role,
        trial_id=trial_id,
        params=flatten_config(cfg),
        seed=cfg.seed,
        arm=arm,
    )
    trainer = Trainer(cfg)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.restore(Path(directory) / CHECKPOINT_FILE)
    for record in trainer.records:  # epochs a crash may have kept out of MLflow
        run.log_epoch(record)
    try:
        while not trainer.done:
            record = trainer.run_epoch()
            if trainer.done:
                record["test_acc"] = trainer.evaluate_test()
            with tempfile.TemporaryDirectory() as directory:
                trainer.save(Path(directory) / CHECKPOINT_FILE)
                run.log_epoch(record)
                tune.report(
                    _result(record, context.metric), checkpoint=tune.Checkpoint.from_directory(directory)
                )
    except DivergedError as exc:
        run.client.set_tag(run.run_id, "rblock.error", str(exc))
        run.finish("diverged")
        last = trainer.records[-1] if trainer.records else {}
        worst = -math.inf if context.mode == "max" else math.inf
        tune.report({"epoch": exc.epoch, "diverged": 1, context.metric: last.get(context.metric, worst)})
        return
    run.finish("completed")
