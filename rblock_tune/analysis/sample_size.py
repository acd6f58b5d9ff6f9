"""Power and sample size of the two-sided t-test: the achieved power of a comparison and the
number of seeds a target power needs."""

from __future__ import annotations

import math

from scipy import stats

from rblock_tune.analysis._numeric import NAN, check_prob, quiet
from rblock_tune.errors import ConfigError

__all__ = ["power", "seeds_needed"]


def _validate_power_args(effect: float, sd: float, alpha: float) -> None:
    """Shared argument checks of :func:`power` and :func:`seeds_needed`.

    Raises:
        ConfigError: on a negative ``sd`` or ``alpha`` outside (0, 1).
    """
    check_prob(alpha, "alpha")
    if sd < 0:
        raise ConfigError(f"sd must be a non-negative standard deviation, got {sd!r}")


def _power(n: int, effect: float, sd: float, alpha: float, paired: bool) -> float:
    """Power of the two-sided t-test (arguments already validated; see :func:`power`)."""
    if n < 2 or math.isnan(effect) or math.isnan(sd):
        return NAN
    if sd == 0.0:
        return NAN if effect == 0.0 else 1.0
    if paired:
        df = n - 1
        nc = effect / sd * math.sqrt(n)
    else:
        df = 2 * n - 2
        nc = effect / sd * math.sqrt(n / 2.0)
    with quiet():
        t_crit = float(stats.t.ppf(1.0 - alpha / 2.0, df))
        p = float(stats.nct.sf(t_crit, df, nc)) + float(stats.nct.cdf(-t_crit, df, nc))
    if math.isnan(p):
        return NAN
    return min(max(p, 0.0), 1.0)


def power(n: int, effect: float, sd: float, *, alpha: float = 0.05, paired: bool = True) -> float:
    """Power of the two-sided t-test to detect a mean difference ``effect``.

    Paired (one-sample on differences): ``n`` pairs, ``df = n - 1``,
    noncentrality ``effect / sd * sqrt(n)``, ``sd`` the standard deviation of
    the differences. Unpaired: two independent groups of ``n`` each,
    ``df = 2n - 2``, noncentrality ``effect / sd * sqrt(n / 2)``, ``sd`` the
    pooled standard deviation. Computed from the noncentral t distribution.

    Args:
        n: number of pairs (paired) or runs per group (unpaired).
        effect: true mean difference, in metric units.
        sd: standard deviation, in metric units (see above).
        alpha: two-sided significance level.
        paired: paired/one-sample test if True, two-sample test if False.

    Returns:
        The probability of rejecting H0 at level ``alpha``. NaN if ``n < 2``,
        ``effect`` or ``sd`` is NaN, or ``sd == 0`` with ``effect == 0``;
        1.0 if ``sd == 0`` and ``effect != 0``.

    Raises:
        ConfigError: on a negative ``sd`` or ``alpha`` outside (0, 1).
    """
    _validate_power_args(effect, sd, alpha)
    return _power(int(n), float(effect), float(sd), alpha, paired)


def seeds_needed(
    effect: float,
    sd: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    paired: bool = True,
    max_n: int = 100000,
) -> int | None:
    """Smallest number of seeds for which :func:`power` reaches ``power``.

    Reproduces the textbook values, e.g. 10 pairs for a paired effect
    ``dz = 1`` and 17 (``d = 1``) or 64 (``d = 0.5``) runs per group for two
    independent groups, at ``alpha = 0.05`` and power 0.8.

    Args:
        effect: mean difference to detect, in metric units.
        sd: standard deviation (of differences when paired, pooled otherwise).
        alpha: two-sided significance level.
        power: target power, strictly between 0 and 1.
        paired: paired test (``n`` = pairs) or two groups (``n`` per group).
        max_n: largest ``n`` considered.

    Returns:
        The smallest ``n >= 2`` reaching the target, 2 when ``sd == 0`` and
        ``effect != 0``, or None when ``effect`` is 0 or NaN, ``sd`` is NaN,
        or the target is not reached by ``max_n``.

    Raises:
        ConfigError: on a negative ``sd``, ``alpha`` or ``power`` outside
            (0, 1), or ``max_n < 2``.
    """
    target = power
    _validate_power_args(effect, sd, alpha)
    check_prob(target, "power")
    if max_n < 2:
        raise ConfigError(f"max_n must be at least 2, got {max_n!r}")
    effect, sd = float(effect), float(sd)
    if math.isnan(effect) or math.isnan(sd) or effect == 0.0:
        return None
    if sd == 0.0:
        return 2

    def reached(n: int) -> bool:
        p = _power(n, effect, sd, alpha, paired)
        return not math.isnan(p) and p >= target

    if reached(2):
        return 2
    # Exponential search for an n that reaches the target, then bisection on (lo, hi].
    lo, hi = 2, 4
    while hi < max_n and not reached(hi):
        lo, hi = hi, hi * 2
    if hi >= max_n:
        hi = max_n
        if not reached(hi):
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reached(mid):
            hi = mid
        else:
            lo = mid
    return hi
