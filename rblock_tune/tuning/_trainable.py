"""The Ray Tune trainable: a thin shim around :class:`rblock_tune.trainer.Trainer`.

Each epoch: train, log the record to the trial's MLflow run, ``tune.report``; every
``train.checkpoint_every`` epochs and after the last one, the report carries a checkpoint
(``tune.Checkpoint``). A retried or resumed trial restores its last checkpoint and continues (it
repeats at most ``train.checkpoint_every - 1`` epochs). A non-finite loss ends the trial with one
result carrying ``diverged=1``.

A trial trains on ``resources.threads`` threads (``auto``: its share of its node's CPUs,
:func:`~rblock_tune.tuning._spec.trial_threads`), not the ``floor(resources.cpus)`` Ray's
``OMP_NUM_THREADS`` would hold it to. A worker Ray reuses for the next trial of its phase keeps
the last dataset it loaded, so trials of one data config load it once per worker.

Besides the checkpoint it reports to Ray, a trial keeps its own copy of its latest checkpoint
under ``<storage>/<phase>/rblock_state/<trial id>/``. With ``num_to_keep=1`` Ray deletes a
trial's previous checkpoint as soon as it has the new one, but saves the experiment state that
names the new one only later; a crash in between leaves a state naming a deleted checkpoint,
and Ray's own restore would then fail the trial for good. Here the trial starts without Ray's
checkpoint instead (:class:`_RestoreFallback`) and continues from its own copy.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from rblock_tune.config import DataConfig, config_from_dict, describe_config, with_overrides
from rblock_tune.data import Dataset, load_dataset
from rblock_tune.errors import DivergedError
from rblock_tune.layout import (
    CHECKPOINT_FILE,
    COMPLETED,
    CONFIG_NUMBER_KEY,
    DIVERGED,
    ERROR_TAG,
    PHASE_SEARCH,
    RESULT_RUN_ID,
    SEARCH_ARM,
    seed_run_name,
    trial_run_name,
)
from rblock_tune.trainer import FusedTrainer, Trainer, checkpoint_due
from rblock_tune.tuning._profile import TrialProfile
from rblock_tune.tuning._spec import ResourceSpec
from rblock_tune.tuning._tracking import RunLogHandler, TrialRun

__all__ = ["STATE_DIR", "OwnCheckpoints", "TrialContext", "run_trial", "trial_config"]

log = logging.getLogger(__name__)

STATE_DIR = "rblock_state"
"""Folder, in a phase's Ray experiment folder, of the trials' own checkpoint copies."""


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its own config; picklable, shipped to workers.

    Attributes:
        study: study name.
        phase: ``search`` or ``seeds``.
        base: nested base trial config.
        epochs: epochs of every trial of this phase.
        metric: the metric the study optimises.
        mode: ``max`` or ``min``.
        tracking_uri: MLflow tracking URI.
        experiment_id: MLflow experiment id.
        parent_run_id: MLflow parent run of this phase.
        state_uri: folder (path or URI on the Ray storage) of the trials' own checkpoint copies.
        arms: seed phase: arm label -> dotted overrides of the base config.
        measure_test: whether the trials measure and log ``test_acc``.
        test_every_epoch: with ``measure_test``, after every epoch rather than after the last only.
        resources: the spec's ``resources`` (a trial's threads).
        max_concurrent: trials of this phase that run at once at most (``search.max_concurrent``).
        reported: the epoch record's metrics each result carries to Ray besides ``epoch``: those the
            driver reads from results (the searcher's and scheduler's ``metric``, a race's metric).
            Every metric goes to MLflow; Ray keeps summaries of each key of every result of every
            trial in the driver, so a result carries no more than is read.
    """

    study: str
    phase: str
    base: dict[str, Any]
    epochs: int
    metric: str
    mode: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    state_uri: str
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)
    measure_test: bool = True
    test_every_epoch: bool = False
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    max_concurrent: int = 1
    reported: tuple[str, ...] = ()


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

    def fetch(self, local_file: Path) -> int | None:
        """Copy the latest checkpoint to ``local_file``; its epoch, or None when there is none."""
        epochs = self._epochs()
        if not epochs:
            return None
        with self.fs.open_input_stream(f"{self.folder}/epoch-{epochs[-1]:04d}.pt") as src:
            local_file.write_bytes(src.read())
        return epochs[-1]


def delete_own_checkpoints(state_uri: str) -> None:
    """Remove a finished phase's own checkpoint copies (no trial of it will restore again)."""
    from pyarrow import fs as pafs

    filesystem, root = pafs.FileSystem.from_uri(state_uri)
    if filesystem.get_file_info(root).type != pafs.FileType.NotFound:
        filesystem.delete_dir(root)


class _RestoreFallback:
    """Mixed into Ray's function trainable: when the checkpoint Ray restores a trial from no
    longer exists, start the trial without it (instead of failing it for good); :func:`run_trial`
    then continues from the trial's own copy. Ray's iteration counters still continue from the
    result that checkpoint was reported with.

    Ray has no public hook for this: the mixin rides on ``wrap_function``'s ``__mixins__`` and sets
    the trainable's iteration counters, internals of the Ray minor version pinned in pyproject."""

    def restore(self, checkpoint_path: Any) -> Any:
        from pyarrow import fs as pafs

        checkpoint = getattr(checkpoint_path, "checkpoint", None)
        if checkpoint is not None:
            info = checkpoint.filesystem.get_file_info(checkpoint.path)
            if info.type == pafs.FileType.NotFound:
                log.warning("checkpoint %s is gone; the trial continues from its own copy", checkpoint.path)
                metrics = dict(getattr(checkpoint_path, "metrics", None) or {})
                self._iteration = int(metrics.get("training_iteration", 0))
                self._time_total = float(metrics.get("time_total_s", 0.0))
                self._time_since_restore = 0.0
                self._iterations_since_restore = 0
                return None
        return super().restore(checkpoint_path)  # type: ignore[misc]


def _restore(trainer: Trainer | FusedTrainer, own: OwnCheckpoints) -> bool:
    """Restore Ray's checkpoint when it gave one, else the trial's own copy, if any; True when the
    trial continues from its own copy."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            trainer.restore(Path(directory) / CHECKPOINT_FILE)
        return False
    with tempfile.TemporaryDirectory() as directory:
        local = Path(directory) / CHECKPOINT_FILE
        epoch = own.fetch(local)
        if epoch is None:
            return False
        log.warning("restoring epoch %d from the trial's own checkpoint copy", epoch)
        trainer.restore(local)
        return True


def _report(trainer: Trainer, record: dict[str, Any], context: TrialContext, run_id: str) -> None:
    """Checkpoint the trainer and report one epoch's record to Ray with it."""
    with tempfile.TemporaryDirectory() as directory:
        trainer.save(Path(directory) / CHECKPOINT_FILE)
        tune.report(_result(record, context, run_id), checkpoint=tune.Checkpoint.from_directory(directory))


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


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Train one trial under Ray Tune (see the module docstring)."""
    quiet_exit_in_teardown()
    profile = TrialProfile()
    try:
        profile.facts["threads_set"] = _set_threads(context)
        with profile.phase("mlflow_run"):
            cfg, arm, keys = trial_config(config, context)
            trial_id = tune.get_context().get_trial_id()
            number = config.get(CONFIG_NUMBER_KEY) if context.phase == PHASE_SEARCH else None
            run = TrialRun(  # first, so that a trial failing at start still has its run
                context.tracking_uri,
                context.experiment_id,
                context.parent_run_id,
                study=context.study,
                phase=context.phase,
                trial_id=trial_id,
                config=cfg,
                arm=arm,
                run_name=_run_name(config, context, cfg, arm, keys, trial_id),
                shown_keys=keys,
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
        _report(trainer, trainer.records[-1], context, run.run_id)
    try:
        records = trainer.epochs(test=context.measure_test, every_epoch=context.test_every_epoch)
        for record in profile.timed(records, "train"):
            epoch = int(record["epoch"])
            profile.add("epochs")
            profile.add("epoch_seconds", record["epoch_seconds"])
            result = _result(record, context, run.run_id)
            if not checkpoint_due(epoch, cfg):
                with profile.phase("mlflow_epoch"):
                    run.log_epoch(record)
                with profile.phase("report"):
                    tune.report(result)
                continue
            with tempfile.TemporaryDirectory() as directory:  # checkpointed before MLflow has the epoch
                profile.add("checkpoints")
                with profile.phase("checkpoint"):
                    trainer.save(Path(directory) / CHECKPOINT_FILE)
                    own.save(Path(directory) / CHECKPOINT_FILE, epoch)
                with profile.phase("mlflow_epoch"):
                    run.log_epoch(record)
                with profile.phase("report_checkpoint"):
                    tune.report(result, checkpoint=tune.Checkpoint.from_directory(directory))
    except DivergedError as exc:
        run.client.set_tag(run.run_id, ERROR_TAG, str(exc))
        run.note(f"diverged: {exc}")
        run.finish(DIVERGED)
        last = trainer.records[-1] if trainer.records else {}
        worst = -math.inf if context.mode == "max" else math.inf
        tune.report(
            {
                "epoch": exc.epoch,
                "diverged": 1,
                context.metric: last.get(context.metric, worst),
                RESULT_RUN_ID: run.run_id,
            }
        )
        return
    # Ray may end a trial inside its last report (ASHA at its budget); then the driver's status
    # callback ends the run and its log
    with profile.phase("finish"):
        run.finish(COMPLETED)


run_trial.__mixins__ = (_RestoreFallback,)  # type: ignore[attr-defined]  # read by Ray's wrap_function
