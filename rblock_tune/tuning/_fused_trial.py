"""The Ray Tune trainable of a fused seed-phase trial (``seeds.fuse`` > 1).

One Ray trial trains several seeds of one arm as one horizontally fused model
(:class:`rblock_tune.trainer.FusedTrainer`) in one process. Each member is still its own MLflow run,
with exactly the tags, params, name, metrics and log of the run it would have been alone; each epoch
the trial reports one result per member to Ray (its ``seed`` and run id in it), the checkpoint of the
whole fused state with the last of them. A member whose loss becomes non-finite ends as ``diverged``
while the others go on. Checkpoints, the trial's own copy and restores work as for a solo trial
(:mod:`rblock_tune.tuning._trainable`), and so do ``resources.threads``, ``train.checkpoint_every`` and
the worker's kept dataset.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray import tune

from rblock_tune.config import TrialConfig, describe_config
from rblock_tune.errors import DivergedError
from rblock_tune.layout import (
    CHECKPOINT_FILE,
    COMPLETED,
    DIVERGED,
    ERROR_TAG,
    RESULT_MEMBERS_DIVERGED,
    RESULT_RUN_ENDED,
    RESULT_RUN_ID,
    seed_run_name,
)
from rblock_tune.trainer import FusedTrainer, checkpoint_due, describe_draws
from rblock_tune.tuning._entry import FUSED_SEEDS_KEY, TrialContext
from rblock_tune.tuning._tracking import RunLogHandler, TrialRun
from rblock_tune.tuning._trainable import (
    OwnCheckpoints,
    _dataset,
    _restore,
    _result,
    _set_threads,
    open_run,
    quiet_exit_in_teardown,
    trial_config,
)

__all__ = ["end_diverged", "fused_configs", "train_fused_trial"]

log = logging.getLogger(__name__)


def fused_configs(config: dict[str, Any], context: TrialContext) -> tuple[list[TrialConfig], str, list[str]]:
    """The resolved configs of a fused trial's members (one per seed, in order), its arm and the keys
    the arm sets."""
    arm = str(config["arm"])
    configs: list[TrialConfig] = []
    keys: list[str] = []
    for seed in config[FUSED_SEEDS_KEY]:
        cfg, _, keys = trial_config({"arm": arm, "seed": int(seed)}, context)
        configs.append(cfg)
    return configs, arm, keys


def train_fused_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Train one fused trial under Ray Tune (see the module docstring); Ray calls it through
    :func:`rblock_tune.tuning._entry.run_fused_trial`."""
    quiet_exit_in_teardown()
    _set_threads(context)
    configs, arm, keys = fused_configs(config, context)
    trial_id = tune.get_context().get_trial_id()
    runs = [  # first, so that a trial failing at start still has its runs
        open_run(context, trial_id, cfg, arm, seed_run_name(arm, cfg.seed), keys, member=True)
        for cfg in configs
    ]
    handlers = [RunLogHandler(run) for run in runs]
    package_log = logging.getLogger("rblock_tune")
    for handler in handlers:
        package_log.addHandler(handler)
    try:
        _train(runs, configs, trial_id, context)
    finally:
        for handler in handlers:
            package_log.removeHandler(handler)


def _train(runs: list[TrialRun], configs: list[TrialConfig], trial_id: str, context: TrialContext) -> None:
    seeds = ", ".join(str(cfg.seed) for cfg in configs)
    for i, (run, cfg) in enumerate(zip(runs, configs, strict=True)):
        run.note(
            f"trial {trial_id}, fused member {i + 1} of {len(configs)} (seeds {seeds}): "
            f"{describe_config(cfg)}, seed {cfg.seed}, {context.epochs} epochs"
        )
    try:
        _train_epochs(runs, configs, trial_id, context)
    except Exception as exc:  # in every member's log too (Ray records it, and retries the trial)
        for run in runs:
            run.note(f"error: {type(exc).__name__}: {exc}")
            try:
                run.upload_log()
            except Exception:  # noqa: BLE001 - the trial's own error is the one to raise
                log.warning("the log of run %s could not be written", run.run_id)
        raise


def _member_result(
    record: dict[str, Any], run: TrialRun, seed: int, context: TrialContext, diverged: int
) -> dict[str, Any]:
    result = _result(record, context, run.run_id)
    result["seed"] = seed
    result[RESULT_MEMBERS_DIVERGED] = diverged
    return result


def _report_all(results: list[dict[str, Any]], directory: str | None) -> None:
    """Report each member's result; the checkpoint (when given) goes with the last one."""
    for i, result in enumerate(results):
        last = i == len(results) - 1
        if last and directory is not None:
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(result)


def _diverged(
    run: TrialRun, seed: int, exc: DivergedError, last: dict[str, Any], context: TrialContext, diverged: int
) -> dict[str, Any]:
    """End a member's run as diverged; the result that says so to Ray."""
    run.client.set_tag(run.run_id, ERROR_TAG, str(exc))
    run.note(f"diverged: {exc}")
    run.finish(DIVERGED)
    worst = -math.inf if context.mode == "max" else math.inf
    return {
        "epoch": exc.epoch,
        "diverged": 1,
        context.metric: last.get(context.metric, worst),
        RESULT_RUN_ID: run.run_id,
        RESULT_RUN_ENDED: 1,
        RESULT_MEMBERS_DIVERGED: diverged,
        "seed": seed,
    }


def end_diverged(runs: Sequence[Any], diverged: Sequence[DivergedError | None]) -> None:
    """End as ``diverged`` the runs of members a restored state holds as diverged. Their runs were
    found again and reopened as running, and a crash may even have come between the checkpoint that
    records a divergence and the end of the member's run; left open, the driver's status callback would
    give them the trial's own outcome (``completed``) when it ends."""
    for run, exc in zip(runs, diverged, strict=True):
        if exc is not None:
            run.client.set_tag(run.run_id, ERROR_TAG, str(exc))
            run.note(f"diverged (restored): {exc}")
            run.finish(DIVERGED)


def _train_epochs(
    runs: list[TrialRun], configs: list[TrialConfig], trial_id: str, context: TrialContext
) -> None:
    dataset, _ = _dataset(configs[0].data)
    trainer = FusedTrainer(configs, dataset)
    for run, cfg in zip(runs, configs, strict=True):
        run.note(describe_draws(cfg, trainer.device))
    own = OwnCheckpoints(context.state_uri, trial_id)
    from_own_copy = _restore(trainer, own)
    for run, done in zip(runs, trainer.records, strict=True):
        for record in done:  # epochs a crash may have kept out of MLflow
            run.log_epoch(record)
    end_diverged(runs, trainer.diverged)
    live = [i for i in range(trainer.k) if trainer.diverged[i] is None]
    if from_own_copy and any(trainer.records):
        # as for a solo trial: the copy can be one epoch ahead of what Ray last received
        again: list[dict[str, Any]] = []
        diverged = trainer.k - len(live)
        for i in live:
            if trainer.records[i]:
                again.append(
                    _member_result(trainer.records[i][-1], runs[i], configs[i].seed, context, diverged)
                )
                if trainer.epoch >= context.epochs:  # restored after its last epoch: the runs end first
                    runs[i].finish(COMPLETED)
                    again[-1][RESULT_RUN_ENDED] = 1
        with tempfile.TemporaryDirectory() as directory:
            trainer.save(Path(directory) / CHECKPOINT_FILE)
            _report_all(again, directory)
    for records in trainer.epochs(test=context.measure_test):
        with tempfile.TemporaryDirectory() as directory:
            epoch = trainer.epoch
            checkpoint = checkpoint_due(epoch, configs[0])
            if checkpoint:  # before MLflow has the epoch, as for a solo trial
                trainer.save(Path(directory) / CHECKPOINT_FILE)
                own.save(Path(directory) / CHECKPOINT_FILE, epoch)
            results: list[dict[str, Any]] = []
            diverged = sum(exc is not None for exc in trainer.diverged)  # this epoch's included
            for i in list(live):
                exc = trainer.diverged[i]
                if exc is not None:  # diverged in this epoch: its run ends, the others go on
                    live.remove(i)
                    last = trainer.records[i][-1] if trainer.records[i] else {}
                    results.insert(0, _diverged(runs[i], configs[i].seed, exc, last, context, diverged))
                    continue
                member = records[i]
                assert member is not None  # alive: it has this epoch's record
                results.append(_member_result(member, runs[i], configs[i].seed, context, diverged))
                if epoch >= context.epochs:  # the last epoch ends each run before it is reported
                    runs[i].finish(COMPLETED, member)
                    results[-1][RESULT_RUN_ENDED] = 1
                else:
                    runs[i].log_epoch(member)
            # the last epoch's report carries no checkpoint, as for a solo trial: the own copy has it
            _report_all(results, directory if checkpoint and epoch < context.epochs else None)
        if not live:
            return
    for i in live:
        if not runs[i].ended:  # restored after its last epoch
            runs[i].finish(COMPLETED)
