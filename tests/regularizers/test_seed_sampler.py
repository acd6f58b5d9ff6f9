"""How DropBlock's seeds are drawn (``reg.mask_sampler``): ``dense``, one uniform per seed position (the
draws of rblock-tune before ``sparse``), and ``sparse``, the gaps between seeds.

``sparse`` must be the same random object as ``dense``: an independent Bernoulli(gamma) draw at every
valid seed position, placed in the map where ``dense`` would place it. Checked by seeded simulation with
stated tolerances (chi-square tests at level 0.001), and each check is shown to reject a deliberately
wrong sampler, so it can fail.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import stats

from rblock_tune.errors import ConfigError
from rblock_tune.regularizers import _masks, sample_dropped, seed_sampler
from rblock_tune.regularizers._masks import _seed_positions, dropblock_gamma

Positions = Callable[[int, float, torch.Generator], torch.Tensor]


def _sparse(n: int, gamma: float, g: torch.Generator) -> torch.Tensor:
    return _seed_positions(n, gamma, g, None)


def _ceil_gaps(n: int, gamma: float, g: torch.Generator) -> torch.Tensor:
    """Wrong: gaps rounded up (a gap of 0, two seeds side by side, never happens)."""
    u = torch.rand(int(n * gamma * 1.2) + 50, generator=g, dtype=torch.float64)
    gaps = torch.ceil(torch.log1p(-u) / math.log1p(-gamma)).long()
    at = torch.cumsum(gaps + 1, 0) - 1
    return at[at < n]


def _never_first(n: int, gamma: float, g: torch.Generator) -> torch.Tensor:
    """Wrong: the first gap counted from position 0, so position 0 is never a seed."""
    at = _seed_positions(n, gamma, g, None) + 1
    return at[at < n]


def _binomial_then_uniform(n: int, gamma: float, g: torch.Generator) -> torch.Tensor:
    """Wrong: a Binomial(n, gamma) count of positions drawn with replacement (repeats merge)."""
    k = int(torch.binomial(torch.tensor(float(n)), torch.tensor(gamma), generator=g))
    return torch.unique(torch.randint(0, n, (k,), generator=g))


def _gap_pvalue(positions: Positions, n: int = 2_000_000, gamma: float = 0.03) -> float:
    """Chi-square test of the gaps between successive seeds (and before the first) against the
    geometric law P(gap = k) = (1 - gamma)^k gamma, bins with >= 5 expected, the tail pooled."""
    at = positions(n, gamma, torch.Generator().manual_seed(1)).numpy()
    gaps = np.diff(np.concatenate([[-1], at])) - 1
    top = int(math.log(5 / (len(gaps) * gamma)) / math.log1p(-gamma))  # last bin with >= 5 expected
    observed = np.bincount(np.minimum(gaps, top), minlength=top + 1)
    pmf = (1 - gamma) ** np.arange(top) * gamma
    expected = len(gaps) * np.append(pmf, 1 - pmf.sum())
    return float(stats.chisquare(observed, expected).pvalue)


def _position_pvalue(positions: Positions, n: int = 40, gamma: float = 0.1, draws: int = 5000) -> float:
    """Chi-square test that every one of ``n`` positions is a seed with probability gamma, over
    ``draws`` independent draws (the first and the last positions included)."""
    g = torch.Generator().manual_seed(2)
    counts = np.zeros(n)
    for _ in range(draws):
        counts[positions(n, gamma, g).numpy()] += 1
    hits = np.concatenate([counts, draws - counts])
    expected = np.concatenate([np.full(n, draws * gamma), np.full(n, draws * (1 - gamma))])
    return float(stats.chisquare(hits, expected, ddof=0).pvalue)


def test_sparse_gaps_are_geometric_and_rejected_when_they_are_not() -> None:
    assert _gap_pvalue(_sparse) > 1e-3
    assert _gap_pvalue(_ceil_gaps) < 1e-10


def test_every_position_is_a_seed_at_rate_gamma_and_a_missed_first_position_is_caught() -> None:
    assert _position_pvalue(_sparse) > 1e-3
    assert _position_pvalue(_never_first) < 1e-10


def test_seed_count_is_binomial_and_merged_repeats_are_caught() -> None:
    """The seeds of one draw number Binomial(n, gamma): over 400 draws, their mean within 5 standard
    errors of n * gamma and their variance within 25% of n * gamma * (1 - gamma)."""
    n, gamma = 20_000, 0.05

    def counts(positions: Positions) -> np.ndarray:
        g = torch.Generator().manual_seed(3)
        return np.array([len(positions(n, gamma, g)) for _ in range(400)])

    good = counts(_sparse)
    sd = math.sqrt(n * gamma * (1 - gamma))
    assert abs(good.mean() - n * gamma) < 5 * sd / math.sqrt(400)
    assert abs(good.var(ddof=1) / sd**2 - 1) < 0.25
    bad = counts(_binomial_then_uniform)
    assert abs(bad.mean() - n * gamma) > 5 * sd / math.sqrt(400)


def test_positions_are_increasing_distinct_and_inside_also_when_drawn_in_several_rounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rounds = []
    real_rand = torch.rand

    def counted_rand(*args: object, **kwargs: object) -> torch.Tensor:
        rounds.append(1)
        return real_rand(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_masks, "_MARGIN_SD", -3.0)  # fewer gaps than expected drawn at once: more rounds
    monkeypatch.setattr(_masks, "_MARGIN_MIN", 1)
    monkeypatch.setattr(_masks.torch, "rand", counted_rand)
    for n, gamma in ((10_000, 0.02), (37, 0.5), (1, 0.3)):
        rounds.clear()
        at = _seed_positions(n, gamma, torch.Generator().manual_seed(n), None)
        assert bool((at[1:] > at[:-1]).all())
        assert len(at) == 0 or (int(at[0]) >= 0 and int(at[-1]) < n)
        assert n == 1 or len(rounds) > 1
    assert _position_pvalue(_sparse) > 1e-3
    assert len(_seed_positions(5, 0.0, None, None)) == 0
    assert _seed_positions(5, 1.0, None, None).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("shape", "b"), [((256, 8, 9, 7), 3), ((512, 4, 6, 6), 5), ((256, 4, 5, 8), 1)])
def test_sparse_blocks_land_where_dense_ones_do(shape: tuple[int, int, int, int], b: int) -> None:
    """Each unit of a D(p, b) map is dropped with probability 1 - (1 - gamma)^k, k the seed positions
    whose block covers it (fewer at the borders): the sparse draws' frequency per unit is within 5
    standard errors of it at every unit (a seed placed one row or column off breaks this)."""
    p, draws = 0.3, 10
    h, w = shape[2], shape[3]
    gamma = dropblock_gamma(p, b, h, w)
    g = torch.Generator().manual_seed(4)
    hits = sum(
        sample_dropped("dropblock", shape, p, b, generator=g, sampler="sparse")[0].double().sum((0, 1))
        for _ in range(draws)
    )
    n = shape[0] * shape[1] * draws
    rows = torch.arange(h)
    cols = torch.arange(w)
    bb = min(b, h, w)
    k_r = torch.minimum(rows, torch.tensor(h - bb)) - torch.clamp(rows - bb + 1, min=0) + 1
    k_c = torch.minimum(cols, torch.tensor(w - bb)) - torch.clamp(cols - bb + 1, min=0) + 1
    exact = 1 - (1 - gamma) ** (k_r[:, None] * k_c[None, :]).double()
    z = (hits / n - exact) / torch.sqrt(exact * (1 - exact) / n)
    assert float(z.abs().max()) < 5


GOLDEN = {  # sha256 of the dropped maps of the draws before reg.mask_sampler existed (seed 7)
    ("dropblock", (4, 6, 16, 16), 0.3, 3): "7f7b43870e6e13ed",
    ("dropblock", (3, 5, 9, 7), 0.2, 5): "e86b77db4aaecde0",
    ("dropblock", (2, 4, 8, 8), 0.1, 1): "9f9649fa979be1e7",
    ("random_dml", (4, 6, 16, 16), 0.3, 3): "42fb95a1c051221a",
    ("random_dml", (3, 5, 9, 7), 0.2, 5): "c9ab61cd059c12b4",
    ("bdrop_dml", (4, 6, 16, 16), 0.3, 3): "6f11519147bcca52",
    ("bdrop_dml", (3, 5, 9, 7), 0.2, 5): "9df2156a60de8cc7",
    ("bdrop_dml", (2, 4, 8, 8), 0.1, 1): "fa8561506e74a092",
}


@pytest.mark.parametrize(("variant", "shape", "p", "b"), list(GOLDEN))
def test_dense_draws_what_earlier_versions_drew(
    variant: str, shape: tuple[int, int, int, int], p: float, b: int
) -> None:
    dropped = sample_dropped(
        variant, shape, p, b, generator=torch.Generator().manual_seed(7), sampler="dense"
    )
    assert hashlib.sha256(dropped.numpy().tobytes()).hexdigest()[:16] == GOLDEN[(variant, shape, p, b)]
    sparse = sample_dropped(
        variant, shape, p, b, generator=torch.Generator().manual_seed(7), sampler="sparse"
    )
    assert not torch.equal(sparse, dropped)  # the same law, other draws


def test_auto_is_sparse_on_cpu_and_dense_elsewhere_and_a_bad_name_is_one_error() -> None:
    assert seed_sampler("auto") == seed_sampler("auto", "cpu") == "sparse"
    assert seed_sampler("auto", "cuda") == "dense"
    assert seed_sampler("dense", "cpu") == "dense" and seed_sampler("sparse", "cuda") == "sparse"
    with pytest.raises(ConfigError, match="mask sampler 'fast' is not allowed"):
        seed_sampler("fast")
