"""The Ray Tune trainable: a thin shim around :class:`rblock_tune.trainer.Trainer`.

Each epoch: train, log the record to the trial's MLflow run, ``tune.report``; every
``train.checkpoint_every`` epochs (before the last one) the report carries a checkpoint
(``tune.Checkpoint``). After the last epoch the trial's own copy (below) is written but Ray gets no
checkpoint: nothing resumes a finished trial, and each checkpoint Ray receives costs a copy into its
storage, a forced save of the experiment state in the driver (with ``num_to_keep=1``; it grows with
the trials) and disk that stays after the trial (about 0.6 MiB per ``resnet8`` trial). The last epoch
of the budget is logged together with the run's final status (``completed``) before it is reported,
and its result says so (``run_ended``): Ray may end the trial inside that report (ASHA at its
budget), and the driver then has nothing to write to MLflow for it. A retried or resumed trial
restores its last checkpoint, the newer of Ray's and its own copy, and continues (it repeats at most
``train.checkpoint_every - 1`` epochs). A non-finite loss ends the trial with one result carrying
``diverged=1``.

A trial trains on ``resources.threads`` threads (``auto``: its share of its node's CPUs,
:func:`~rblock_tune.tuning._spec.trial_threads`), not the ``floor(resources.cpus)`` Ray's
``OMP_NUM_THREADS`` would hold it to. A worker Ray reuses for the next trial of its phase keeps
the last dataset it loaded, so trials of one data config load it once per worker.

Besides the checkpoint it reports to Ray, a trial keeps its own copy of its latest checkpoint
under ``<storage>/<phase>/rblock_state/<trial id>/``. With ``num_to_keep=1`` Ray deletes a
trial's previous checkpoint as soon as it has the new one, but saves the experiment state that
names the new one only later; a crash in between leaves a state naming a deleted checkpoint,
and Ray's own restore would then fail the trial for good. Here the trial starts without Ray's
checkpoint instead (:class:`rblock_tune.tuning._entry._RestoreFallback`) and continues from its own
copy. Ray calls :func:`train_trial` through :func:`rblock_tune.tuning._entry.run_trial`, so that a
study's driver never imports this module (torch, the trainer).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from rblock_tune.config import DataConfig, TrialConfig, config_from_dict, describe_config, with_overrides
from rblock_tune.data import Dataset, load_dataset
from rblock_tune.errors import DivergedError
from rblock_tune.layout import (
    CHECKPOINT_FILE,
    COMPLETED,
    CONFIG_NUMBER_KEY,
    DIVERGED,
    ERROR_TAG,
    PHASE_SEARCH,
    RESULT_RUN_ENDED,
    RESULT_RUN_ID,
    SEARCH_ARM,
    seed_run_name,
    trial_run_name,
)
from rblock_tune.trainer import FusedTrainer, Trainer, checkpoint_due, describe_draws
from rblock_tune.tuning._entry import TrialContext
from rblock_tune.tuning._profile import TrialProfile
from rblock_tune.tuning._tracking import RunLogHandler, TrialRun

__all__ = ["OwnCheckpoints", "open_run", "train_trial", "trial_config"]

log = logging.getLogger(__name__)


def trial_config(config: dict[str, Any], context: TrialContext) -> tuple[Any, str, list[str]]:
    """The resolved trial config of a Ray config, its arm label (``search`` for search trials) and
    the dotted keys the arm or the searcher set (besides the seed and the epochs)."""
    base = config_from_dict(context.base)
    if context.phase == PHASE_SEARCH:
        overrides = dict(config.get("overrides", {}))
        arm = SEARCH_ARM
    else:
        arm = str(config["arm"])
        overrides = {**context.arms[arm], "seed": int(config["seed"])}
    keys = list(overrides)
    overrides["train.epochs"] = context.epochs
    return with_overrides(base, overrides), arm, keys


def _run_name(
    config: dict[str, Any], context: TrialContext, cfg: Any, arm: str, keys: list[str], trial_id: str
) -> str:
    if context.phase == PHASE_SEARCH:
        number = config.get(CONFIG_NUMBER_KEY)
        return trial_run_name(None if number is None else int(number), describe_config(cfg, keys), trial_id)
    return seed_run_name(arm, cfg.seed)


def _result(record: dict[str, Any], context: TrialContext, run_id: str) -> dict[str, Any]:
    """What a trial reports to Ray for one epoch record: its epoch, the study's metric (nan while not
    measured), the other metrics the driver reads (``context.reported``, those the record has), the
    MLflow run and ``diverged`` 0."""
    metric = context.metric
    result: dict[str, Any] = {"epoch": record["epoch"]}
    for key in dict.fromkeys((metric, *context.reported)):
        value = record.get(key)
        if isinstance(value, (int, float)):
            result[key] = value
    result[RESULT_RUN_ID] = run_id
    result["diverged"] = 0
    if result.get(metric) is None:
        result[metric] = float("nan")
    return result


class OwnCheckpoints:
    """A trial's own copy of its latest checkpoint, on the Ray storage (a path every node sees,
    or cloud storage), as ``epoch-NNNN.pt``; written whole under a temporary name, then moved."""

    _NAME = re.compile(r"^epoch-(\d+)\.pt$")

    def __init__(self, state_uri: str, trial_id: str) -> None:
        from pyarrow import fs as pafs

        self._pafs = pafs
        self.fs, root = pafs.FileSystem.from_uri(state_uri)
        self.folder = f"{root.rstrip('/')}/{trial_id}"

    def _epochs(self) -> list[int]:
        selector = self._pafs.FileSelector(self.folder, allow_not_found=True)
        found = (self._NAME.match(info.base_name) for info in self.fs.get_file_info(selector))
        return sorted(int(m.group(1)) for m in found if m)

    def save(self, local_file: Path, epoch: int) -> None:
        """Copy ``local_file`` in as the latest checkpoint, then drop the older copies."""
        self.fs.create_dir(self.folder, recursive=True)
        final = f"{self.folder}/epoch-{epoch:04d}.pt"
        tmp = final + ".tmp"
        with local_file.open("rb") as src, self.fs.open_output_stream(tmp) as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
        self.fs.move(tmp, final)
        for older in self._epochs():
            if older < epoch:
                self.fs.delete_file(f"{self.folder}/epoch-{older:04d}.pt")

    def latest(self) -> int | None:
        """The epoch of the latest checkpoint copy, or None when there is none."""
        epochs = self._epochs()
        return epochs[-1] if epochs else None

    def fetch(self, local_file: Path) -> int | None:
        """Copy the latest checkpoint to ``local_file``; its epoch, or None when there is none."""
        epochs = self._epochs()
        if not epochs:
            return None
        with self.fs.open_input_stream(f"{self.folder}/epoch-{epochs[-1]:04d}.pt") as src:
            local_file.write_bytes(src.read())
        return epochs[-1]


def _restore(trainer: Trainer | FusedTrainer, own: OwnCheckpoints) -> bool:
    """Restore the newer of Ray's checkpoint (when it gave one) and the trial's own copy (if any); True
    when the trial continues from its own copy. The own copy is the newer one after a crash between
    writing it and reporting its epoch, and after the last epoch, whose report carries no checkpoint."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.restore(Path(directory) / CHECKPOINT_FILE)
        newest = own.latest()
        if newest is None or newest <= trainer.epoch:
            return False
        log.warning("the trial's own copy (epoch %d) is newer than Ray's checkpoint", newest)
    with tempfile.TemporaryDirectory() as directory:
        local = Path(directory) / CHECKPOINT_FILE
        epoch = own.fetch(local)
        if epoch is None:
            return False
        log.warning("restoring epoch %d from the trial's own checkpoint copy", epoch)
        trainer.restore(local)
        return True


def _report(trainer: Trainer, result: dict[str, Any]) -> None:
    """Checkpoint the trainer and report one result to Ray with it."""
    with tempfile.TemporaryDirectory() as directory:
        trainer.save(Path(directory) / CHECKPOINT_FILE)
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))


def quiet_exit_in_teardown() -> None:
    """In a trial's worker: an exit requested where it cannot propagate is not printed as a traceback.

    When Tune lets go of a trial's actor, the worker starts its exit and tells its raylet, which
    answers with SIGTERM (then SIGKILL 200 ms later). Ray's SIGTERM handler raises ``SystemExit(1)``
    wherever the worker's Python is at that moment, often a weakref or ``__del__`` callback of the
    interpreter's teardown; Python cannot raise it there and prints ``Exception ignored in: ...
    Traceback ... SystemExit: 1`` on the worker's stderr, which Ray forwards to the study's terminal
    although the trial and the study succeeded. The exit goes on either way; only that report is
    dropped. Other unraisable exceptions are reported as before."""
    if getattr(sys.unraisablehook, "_rblock_quiet_exit", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, SystemExit):
            return
        previous(unraisable)

    hook._rblock_quiet_exit = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


@functools.cache
def _node_cpus() -> float:
    """The CPUs Ray counts on this worker's node (the machine's, when Ray does not say)."""
    node_id = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        if node.get("NodeID") == node_id and node.get("Resources", {}).get("CPU"):
            return float(node["Resources"]["CPU"])
    return float(os.cpu_count() or 1)


def _set_threads(context: TrialContext) -> int:
    """Give this trial its ``resources.threads`` (intra-op threads: the inter-op pool is left as is,
    torch fixes it once per process)."""
    threads = context.resources.threads_for(_node_cpus(), context.max_concurrent)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


_loaded: tuple[DataConfig, Dataset] | None = None
"""The last dataset this worker loaded, for the next trial of the same data config."""


def _dataset(config: DataConfig) -> tuple[Dataset, bool]:
    """The dataset of ``config``: the one this worker loaded last when it is the same config (the
    trainer only reads it), else a fresh load that replaces it; and whether it was the former."""
    global _loaded
    if _loaded is not None and _loaded[0] == config:
        return _loaded[1], True
    _loaded = None  # the old one is freed before the new one is loaded
    dataset = load_dataset(config)
    _loaded = (config, dataset)
    return dataset, False


def open_run(
    context: TrialContext,
    trial_id: str,
    config: TrialConfig,
    arm: str,
    run_name: str,
    shown_keys: list[str],
    *,
    optuna_trial: int | None = None,
    member: bool = False,
) -> TrialRun:
    """The MLflow run of one trial of this phase (or, with ``member``, of one member of a fused
    trial), found again after a retry or resume (:class:`~rblock_tune.tuning._tracking.TrialRun`)."""
    return TrialRun(
        context.tracking_uri,
        context.experiment_id,
        context.parent_run_id,
        study=context.study,
        phase=context.phase,
        trial_id=trial_id,
        config=config,
        arm=arm,
        run_name=run_name,
        shown_keys=shown_keys,
        optuna_trial=optuna_trial,
        member=member,
    )


def train_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Train one trial under Ray Tune (see the module docstring); Ray calls it through
    :func:`rblock_tune.tuning._entry.run_trial`."""
    quiet_exit_in_teardown()
    profile = TrialProfile()
    try:
        profile.facts["threads_set"] = _set_threads(context)
        with profile.phase("mlflow_run"):
            cfg, arm, keys = trial_config(config, context)
            trial_id = tune.get_context().get_trial_id()
            number = config.get(CONFIG_NUMBER_KEY) if context.phase == PHASE_SEARCH else None
            run = open_run(  # first, so that a trial failing at start still has its run
                context,
                trial_id,
                cfg,
                arm,
                _run_name(config, context, cfg, arm, keys, trial_id),
                keys,
                optuna_trial=None if number is None else int(number),
            )
        handler = RunLogHandler(run)
        package_log = logging.getLogger("rblock_tune")
        package_log.addHandler(handler)
        try:
            _train(run, cfg, trial_id, context, profile)
        finally:
            package_log.removeHandler(handler)
    finally:
        profile.write()


def _train(run: TrialRun, cfg: Any, trial_id: str, context: TrialContext, profile: TrialProfile) -> None:
    run.note(f"trial {trial_id}: {describe_config(cfg)}, seed {cfg.seed}, {context.epochs} epochs")
    try:
        _train_epochs(run, cfg, trial_id, context, profile)
    except Exception as exc:  # in its log too (Ray records it, and retries the trial)
        run.note(f"error: {type(exc).__name__}: {exc}")
        try:
            run.upload_log()
        except Exception:  # noqa: BLE001 - the trial's own error is the one to raise
            log.warning("the log of run %s could not be written", run.run_id)
        raise


def _train_epochs(
    run: TrialRun, cfg: Any, trial_id: str, context: TrialContext, profile: TrialProfile
) -> None:
    with profile.phase("data"):
        dataset, profile.facts["data_reused"] = _dataset(cfg.data)
    with profile.phase("build"):
        trainer = Trainer(cfg, dataset)
    run.note(describe_draws(cfg, trainer.device))
    own = OwnCheckpoints(context.state_uri, trial_id)
    with profile.phase("restore"):
        from_own_copy = _restore(trainer, own)
    for record in trainer.records:  # epochs a crash may have kept out of MLflow
        run.log_epoch(record)
    if from_own_copy and trainer.records:
        # The copy is written before its epoch is reported, so it can be one epoch ahead of what Ray
        # last received (a crash in between): report that epoch again, or a trial restored after its
        # last epoch would end without its final result. A repeat is ignored by ASHA, the searcher
        # and MLflow.
        result = _result(trainer.records[-1], context, run.run_id)
        if int(trainer.records[-1]["epoch"]) >= context.epochs:
            _end_run(run, None, result, profile)
        _report(trainer, result)
    try:
        records = trainer.epochs(test=context.measure_test, every_epoch=context.test_every_epoch)
        for record in profile.timed(records, "train"):
            epoch = int(record["epoch"])
            profile.add("epochs")
            profile.add("epoch_seconds", record["epoch_seconds"])
            result = _result(record, context, run.run_id)
            last = epoch >= context.epochs
            if not checkpoint_due(epoch, cfg):
                _log_epoch(run, record, last, result, profile)
                with profile.phase("report"):
                    tune.report(result)
                continue
            with tempfile.TemporaryDirectory() as directory:  # checkpointed before MLflow has the epoch
                profile.add("checkpoints")
                with profile.phase("checkpoint"):
                    trainer.save(Path(directory) / CHECKPOINT_FILE)
                    own.save(Path(directory) / CHECKPOINT_FILE, epoch)
                _log_epoch(run, record, last, result, profile)
                if last:  # the own copy only: see the module's docstring
                    with profile.phase("report"):
                        tune.report(result)
                    continue
                with profile.phase("report_checkpoint"):
                    tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))
    except DivergedError as exc:
        run.client.set_tag(run.run_id, ERROR_TAG, str(exc))
        run.note(f"diverged: {exc}")
        run.finish(DIVERGED)
        last_record = trainer.records[-1] if trainer.records else {}
        worst = -math.inf if context.mode == "max" else math.inf
        tune.report(
            {
                "epoch": exc.epoch,
                "diverged": 1,
                context.metric: last_record.get(context.metric, worst),
                RESULT_RUN_ID: run.run_id,
                RESULT_RUN_ENDED: 1,
            }
        )
        return
    if not run.ended:  # restored after its last epoch: nothing left to train
        with profile.phase("finish"):
            run.finish(COMPLETED)


def _log_epoch(
    run: TrialRun, record: dict[str, Any], last: bool, result: dict[str, Any], profile: TrialProfile
) -> None:
    """Log one epoch to the trial's run; the last epoch of the budget ends the run (see :func:`_end_run`)."""
    if last:
        _end_run(run, record, result, profile)
        return
    with profile.phase("mlflow_epoch"):
        run.log_epoch(record)


def _end_run(
    run: TrialRun, record: dict[str, Any] | None, result: dict[str, Any], profile: TrialProfile
) -> None:
    """End the trial's run as completed (logging ``record`` first) before its last result goes to Ray,
    and mark that result (:data:`~rblock_tune.layout.RESULT_RUN_ENDED`): Ray may end the trial inside
    that report (ASHA at its budget), and the driver then need not write to MLflow for it. Should the
    report fail, Ray retries the trial, which reopens the run, or the driver marks it failed."""
    with profile.phase("finish"):
        run.finish(COMPLETED, record)
    result[RESULT_RUN_ENDED] = 1
