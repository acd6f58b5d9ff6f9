"""The project's error hierarchy.

Every error a user can cause derives from :class:`RBlockError`; the CLI turns
it into one line on stderr and exit code 2 (``DivergedError``: exit code 3).
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DivergedError",
    "RBlockError",
]


class RBlockError(Exception):
    """Root of every error raised on purpose by rblock-tune."""


class ConfigError(RBlockError, ValueError):
    """A configuration key, value or file is invalid."""


class DataError(RBlockError):
    """A dataset is missing, has the wrong layout, or could not be downloaded."""


class CheckpointError(RBlockError):
    """A checkpoint or run directory cannot be used as asked."""


class DivergedError(RBlockError):
    """The training loss became non-finite (NaN or inf).

    Attributes:
        epoch: 1-based epoch in which the loss diverged.
        step: global optimisation step at which it was detected.
    """

    def __init__(self, epoch: int, step: int, loss: float) -> None:
        self.epoch = epoch
        self.step = step
        self.loss = loss
        super().__init__(
            f"diverged: training loss became {loss} at epoch {epoch}, step {step}; "
            "lower train.lr or reg.alpha, or check the data"
        )
