"""Drop-rate schedules: linear ramp (DropBlock's default) or constant."""

from __future__ import annotations

from rblock_tune.config import SCHEDULES
from rblock_tune.errors import ConfigError
from rblock_tune.variants import check_drop_prob

__all__ = ["DropSchedule"]


class DropSchedule:
    """Drop probability as a function of the 0-based optimisation step.

    ``linear``: ``p(step) = target * min(1, (step + 1) / ramp_steps)`` with ``ramp_steps``
    given, else ``max(1, round(ramp_fraction * total_steps))``, so the ramp starts just above 0
    and reaches the target on the last ramp step. ``constant``: the target.
    """

    def __init__(
        self,
        target: float,
        total_steps: int,
        kind: str = "linear",
        ramp_fraction: float = 1.0,
        ramp_steps: int | None = None,
    ) -> None:
        if kind not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, but got {kind=}")
        check_drop_prob(target, key="target")
        if total_steps < 1:
            raise ConfigError(f"total_steps must be >= 1, but got {total_steps=}")
        if not 0.0 < ramp_fraction <= 1.0:
            raise ConfigError(f"ramp_fraction must be in (0, 1], but got {ramp_fraction=}")
        if ramp_steps is not None and ramp_steps < 1:
            raise ConfigError(f"ramp_steps must be >= 1, but got {ramp_steps=}")
        self.target = target
        self.kind = kind
        self.total_steps = total_steps
        self.ramp_steps = ramp_steps if ramp_steps is not None else max(1, round(ramp_fraction * total_steps))

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return self.target
        return self.target * min(1.0, (step + 1) / self.ramp_steps)
