"""Checkpoint files of a training run: their format, and which config keys may change on resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rblock_tune import __version__
from rblock_tune.config import TrialConfig, flatten_config
from rblock_tune.errors import CheckpointError

__all__ = [
    "CHECKPOINT_FORMAT",
    "RESUMABLE_KEYS",
    "check_compatible",
    "checkpoint_due",
    "differing_keys",
    "read_checkpoint",
]

CHECKPOINT_FORMAT = 2
"""Version of the checkpoint layout; 2 since models of every variant hold identity drop layers and
CIFAR ResNets default to option-A shortcuts (format-1 weights do not load into these models)."""

RESUMABLE_KEYS = frozenset(
    {"train.device", "train.compile", "train.checkpoint_every", "data.root", "data.cache_dir"}
)
"""Keys that may differ between a checkpoint's config and the config of ``--resume``."""


def checkpoint_due(epoch: int, config: TrialConfig) -> bool:
    """Whether the run checkpoints after epoch ``epoch`` (1-based): every ``train.checkpoint_every``
    epochs and after the last one, so a restart repeats fewer than ``checkpoint_every`` epochs."""
    return epoch >= config.train.epochs or epoch % config.train.checkpoint_every == 0


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file, with one-line errors for a missing or unreadable one."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}); it may be truncated"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("format"), int):
        raise CheckpointError(f"{path} is not an rblock-tune checkpoint")
    if state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} was written by rblock-tune {state.get('version', '?')} in checkpoint format "
            f"{state['format']}, which this version ({__version__}, format {CHECKPOINT_FORMAT}) cannot "
            "continue: start a new run"
        )
    return state


def differing_keys(saved: TrialConfig, current: TrialConfig) -> list[str]:
    """The keys, apart from :data:`RESUMABLE_KEYS`, whose values differ between two configs."""
    old, new = flatten_config(saved), flatten_config(current)
    return [key for key, value in old.items() if key not in RESUMABLE_KEYS and new[key] != value]


def check_compatible(saved: TrialConfig, current: TrialConfig) -> None:
    """Refuse to continue a run under a config that differs from its checkpoint's (apart from
    :data:`RESUMABLE_KEYS`); the message names every key that differs."""
    differ = differing_keys(saved, current)
    if differ:
        old, new = flatten_config(saved), flatten_config(current)
        shown = ", ".join(
            f"{key}={new[key]!r} differs from the checkpoint's {old[key]!r}" for key in differ[:6]
        )
        more = f" (and {len(differ) - 6} more keys)" if len(differ) > 6 else ""
        raise CheckpointError(
            f"cannot resume: {shown}{more}, so this directory holds another run; resume with the run's "
            "own config (omit --config/--set) or start a new --out"
        )
