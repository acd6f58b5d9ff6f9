"""Checkpoint files of a training run: their format, and which config keys may change on resume."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rblock_tune import __version__
from rblock_tune.config import TrialConfig, config_from_dict, flatten_config
from rblock_tune.errors import CheckpointError
from rblock_tune.regularizers import seed_sampler
from rblock_tune.variants import get_variant

__all__ = [
    "CHECKPOINT_FORMAT",
    "RESUMABLE_KEYS",
    "check_compatible",
    "check_saved_config",
    "saved_config",
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

logger = logging.getLogger(__name__)


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


def saved_config(saved: Mapping[str, Any], current: TrialConfig) -> TrialConfig:
    """A checkpoint's config as stored, read as this version reads configs. A checkpoint written
    before ``reg.mask_sampler`` existed takes the current config's value: any sampler may continue
    such a run (``dense`` keeps its draws)."""
    stored_reg = dict(saved.get("reg") or {})
    if "mask_sampler" not in stored_reg:
        saved = {**saved, "reg": {**stored_reg, "mask_sampler": current.reg.mask_sampler}}
    return config_from_dict(saved)


def check_saved_config(saved: Mapping[str, Any], current: TrialConfig, device: torch.device) -> None:
    """:func:`check_compatible` on a checkpoint's config as stored (:func:`saved_config`); and a warning
    when the checkpoint predates ``reg.mask_sampler`` (its masks were drawn ``dense``) while the run, on
    ``device``, goes on drawing DropBlock seeds ``sparse``: the rest of the run then gets other masks than
    an uninterrupted run of that version would have (the same distribution)."""
    check_compatible(saved_config(saved, current), current)
    reg = current.reg
    predates = "mask_sampler" not in dict(saved.get("reg") or {})
    if (
        predates
        and get_variant(reg.variant).block_seeds
        and seed_sampler(reg.mask_sampler, device) == "sparse"
    ):
        logger.warning(
            "this checkpoint was written before reg.mask_sampler existed (its masks were drawn dense); "
            "the run goes on drawing them sparse, so its later masks differ from what that version "
            "would have drawn (set reg.mask_sampler=dense to keep them)"
        )
