"""Training one trial config: epochs of SGD, one metrics record per epoch.

It knows nothing of Ray, Optuna or MLflow. :class:`Trainer` holds the whole state of a run and can
save and restore it exactly; its :meth:`Trainer.epochs` is the one epoch loop (callers checkpoint
and report in its body); :class:`FusedTrainer` trains k seeds of one arm as one fused model, each
member reproducing its solo run; :func:`run_training` drives a trainer into a run directory
(``metrics.json`` + ``checkpoint.pt``), as ``rblock-tune train`` does.
"""

from __future__ import annotations

from rblock_tune.layout import CHECKPOINT_FILE, METRICS_FILE
from rblock_tune.trainer._checkpoint import CHECKPOINT_FORMAT, RESUMABLE_KEYS, checkpoint_due, read_checkpoint
from rblock_tune.trainer._fused import FusedTrainer
from rblock_tune.trainer._run_dir import load_run_config, run_training
from rblock_tune.trainer._setup import describe_draws, resolve_device
from rblock_tune.trainer._trainer import TIMING_KEYS, Trainer

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_FORMAT",
    "FusedTrainer",
    "METRICS_FILE",
    "RESUMABLE_KEYS",
    "TIMING_KEYS",
    "Trainer",
    "checkpoint_due",
    "describe_draws",
    "load_run_config",
    "read_checkpoint",
    "resolve_device",
    "run_training",
]
