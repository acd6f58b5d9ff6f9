"""Racing seed phase vs the fixed design: false decisions, power per arm and runs (``rblock_tune.racing``).

Every race is simulated as a study runs it: an arm's paired difference on a seed is its own noise
minus the noise of the baseline run on that seed (each of variance 1/2, so the differences have sd 1
and two arms' differences correlation 1/2), plus the arm's effect, in sd of the paired differences.
The rule (alpha = 0.05, ``min_seeds`` 3, futility 0.6) looks after every seed; an arm is frozen once
decided or stopped; the baseline runs while any arm is live. The *fixed design* of a scenario is the
paired t-test with Bonferroni over its ``k`` arms and the seeds that give it 80% power at an effect
of 1 (``seeds_needed(1, 1, alpha=0.05 / k)``); the race gets ``max_seeds`` equal to those seeds, so
its worst case costs what the fixed design costs, ``(k + 1) * max_seeds`` runs.

Scenarios:

* (a) 8 arms: the baseline and 7 arms with effects +2, +1, 0, 0, -1, -2, -3; normal noise; margin 0
  (no equivalence decisions). Fixed design: 17 seeds, 136 runs.
* (b) as (a) with an equivalence margin of 0.5 sd.
* (c) 4 arms: the baseline and 3 arms of effect 0 (the global null); normal noise; margin 0.
* (d) as (a) with heavy-tailed noise: Student t with 3 df, scaled to the same variance.
* (e) as (a) with skewed noise: arm noise a centred gamma of shape 2 (skewness 1.41), baseline noise
  normal, so the differences have skewness 0.5 (as when an arm's runs now and then land far on one side).
* (f) stress case, as (a) with independent centred-exponential differences (skewness 2), the kind the
  method does not cover (docs/racing.md).
* (a-hall), (e-hall), (f-hall): (a), (e) and (f) with ``seeds.race.statistic: hall`` (Hall's
  skewness-corrected t) instead of the default one-sample t.

Columns: ``FWER`` the share of races in which any zero-effect arm is decided better or worse (``FWER
fixed``: the fixed design's, on the same simulated differences); ``wrong dir.`` any arm with an effect
decided in the wrong direction; ``false eq.`` any arm with |effect| >= margin decided equivalent;
``P(+1)`` the share of races that decide the +1 arm better, for the race, for the fixed design by
theory (``rblock_tune.analysis.power``) and for the fixed design on the same differences; runs: the
race's mean and quartiles, the fixed design's, and the share saved. A per-arm table gives every
decision's probability and the mean seeds per arm.

A second table gives the family-wise false-decision rate under the global null (3 and 8 arms,
``max_seeds`` 17) for more distributions, beside the fixed design's (one t-test per arm at 17 seeds,
Bonferroni) on the same differences: what the t-based rule assumes and where it breaks. A third
compares the race's interval half-width with a fixed-n t interval and with the time-uniform intervals
bounded data would allow (Hoeffding; a hedged betting confidence sequence, Waudby-Smith & Ramdas
2024), on normal differences clipped to +-3 sd.

    python benchmarks/bench_race.py [--races 4000] [--seed 0] [--out benchmarks/results/bench-race]
"""

from __future__ import annotations

import argparse
import csv
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from rblock_tune import __version__
from rblock_tune.analysis import power, seeds_needed
from rblock_tune.racing import RaceRule, boundaries, simulate_races

ALPHA = 0.05
FloatArray = npt.NDArray[np.float64]
Noise = Callable[[np.random.Generator, tuple[int, int, int]], FloatArray]


def centred_gamma(rng: np.random.Generator, shape: float, size: tuple[int, ...]) -> FloatArray:
    """Gamma noise of mean 0 and variance 1 (skewness ``2 / sqrt(shape)``)."""
    return (rng.gamma(shape, size=size) - shape) / math.sqrt(shape)


def shared(arm: Callable[..., FloatArray], base: Callable[..., FloatArray]) -> Noise:
    """Differences ``(arm noise - baseline noise) / sqrt(2)``, the baseline's noise shared by the arms."""

    def draw(rng: np.random.Generator, size: tuple[int, int, int]) -> FloatArray:
        races, _, seeds = size
        return (arm(rng, size) - base(rng, (races, 1, seeds))) / math.sqrt(2.0)

    return draw


def normal(rng: np.random.Generator, size: tuple[int, ...]) -> FloatArray:
    return rng.standard_normal(size)


def t3(rng: np.random.Generator, size: tuple[int, ...]) -> FloatArray:
    return rng.standard_t(3, size) / math.sqrt(3.0)


def gamma(shape: float) -> Callable[..., FloatArray]:
    return lambda rng, size: centred_gamma(rng, shape, size)


NOISE: dict[str, tuple[str, Noise]] = {
    "normal": ("normal", shared(normal, normal)),
    "t3": ("Student t, 3 df", shared(t3, t3)),
    "skew0.5": ("skewness 0.5: gamma(2) arm noise, normal baseline", shared(gamma(2.0), normal)),
    "skew0.7": ("skewness 0.71: exponential arm noise, normal baseline", shared(gamma(1.0), normal)),
    "iskew0.5": ("skewness 0.5, independent: centred gamma(16) differences", gamma(16.0)),
    "iskew0.7": ("skewness 0.71, independent: centred gamma(8) differences", gamma(8.0)),
    "iskew1": ("skewness 1, independent: centred gamma(4) differences", gamma(4.0)),
    "exp": ("skewness 2, independent: centred exponential differences", gamma(1.0)),
}


@dataclass(frozen=True)
class Scenario:
    name: str
    effects: tuple[float, ...]
    noise: str = "normal"
    margin: float = 0.0
    statistic: str = "t"


SCENARIOS = (
    Scenario("(a) 8 arms", (2, 1, 0, 0, -1, -2, -3)),
    Scenario("(b) 8 arms, margin 0.5", (2, 1, 0, 0, -1, -2, -3), margin=0.5),
    Scenario("(b') 8 arms, margin 1", (2, 1, 0, 0, -1, -2, -3), margin=1.0),
    Scenario("(c) 4 arms, global null", (0, 0, 0)),
    Scenario("(d) 8 arms, t3", (2, 1, 0, 0, -1, -2, -3), noise="t3"),
    Scenario("(e) 8 arms, skewness 0.5", (2, 1, 0, 0, -1, -2, -3), noise="skew0.5"),
    Scenario("(f) 8 arms, exponential", (2, 1, 0, 0, -1, -2, -3), noise="exp"),
    Scenario("(a-hall) as (a), statistic hall", (2, 1, 0, 0, -1, -2, -3), statistic="hall"),
    Scenario("(e-hall) as (e), statistic hall", (2, 1, 0, 0, -1, -2, -3), noise="skew0.5", statistic="hall"),
    Scenario("(f-hall) as (f), statistic hall", (2, 1, 0, 0, -1, -2, -3), noise="exp", statistic="hall"),
)


def fixed_design(k: int) -> int:
    n = seeds_needed(1.0, 1.0, alpha=ALPHA / k, power=0.8)
    assert n is not None
    return n


def fixed_decisions(d: FloatArray, k: int) -> npt.NDArray[np.int64]:
    """The fixed design's decisions (1 better, 2 worse, 0 none): a paired t-test at alpha / k on all seeds."""
    n = d.shape[2]
    t = d.mean(axis=2) / (d.std(axis=2, ddof=1) / math.sqrt(n))
    c = stats.t.ppf(1 - ALPHA / k / 2, n - 1)
    return np.where(t > c, 1, np.where(t < -c, 2, 0))


def run_scenario(s: Scenario, races: int, seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    k = len(s.effects)
    n = fixed_design(k)
    effects = np.asarray(s.effects, dtype=np.float64)
    rng = np.random.default_rng(seed)
    d = NOISE[s.noise][1](rng, (races, k, n)) + effects[None, :, None]
    out = simulate_races(d, RaceRule(k, ALPHA, s.margin, max_seeds=n, statistic=s.statistic))
    dec, runs, fixed = out["decision"], out["runs"], fixed_decisions(d, k)
    zero, pos, neg = effects == 0, effects > 0, effects < 0
    different = np.isin(dec, (1, 2))

    def any_zero(decided: npt.NDArray[np.bool_]) -> float:
        return float(decided[:, zero].any(axis=1).mean()) if zero.any() else math.nan

    wrong = ((dec == 2) & pos) | ((dec == 1) & neg)
    false_eq = (dec == 3) & (np.abs(effects) >= s.margin)
    one = np.flatnonzero(effects == 1)
    fixed_runs = (k + 1) * n
    summary = {
        "scenario": s.name,
        "max_seeds": n,
        "FWER": any_zero(different),
        "wrong_direction": float(wrong.any(axis=1).mean()),
        "false_equivalence": float(false_eq.any(axis=1).mean()),
        "any_false": float(((different & zero) | wrong | false_eq).any(axis=1).mean()),
        "power1_race": float((dec[:, one[0]] == 1).mean()) if one.size else math.nan,
        "power1_fixed_theory": power(n, 1.0, 1.0, alpha=ALPHA / k),
        "power1_fixed_sim": float((fixed[:, one[0]] == 1).mean()) if one.size else math.nan,
        "FWER_fixed_sim": any_zero(np.isin(fixed, (1, 2))),
        "runs_mean": float(runs.mean()),
        "runs_q25": float(np.percentile(runs, 25)),
        "runs_median": float(np.median(runs)),
        "runs_q75": float(np.percentile(runs, 75)),
        "runs_max": int(runs.max()),
        "fixed_runs": fixed_runs,
        "saved": 1.0 - float(runs.mean()) / fixed_runs,
    }
    arms = []
    for i, e in enumerate(s.effects):
        arms.append(
            {
                "scenario": s.name,
                "effect": e,
                "better": float((dec[:, i] == 1).mean()),
                "worse": float((dec[:, i] == 2).mean()),
                "equivalent": float((dec[:, i] == 3).mean()),
                "undecided": float((dec[:, i] == 0).mean()),
                "mean_seeds": float(out["seeds"][:, i].mean()),
                "fixed_better": float((fixed[:, i] == 1).mean()),
                "fixed_worse": float((fixed[:, i] == 2).mean()),
            }
        )
    return summary, arms


def null_rates(races: int, seed: int, max_seeds: int = 17) -> list[dict[str, Any]]:
    rows = []
    for key, (label, noise) in NOISE.items():
        row: dict[str, Any] = {"noise": key, "description": label}
        skews = []
        for k in (3, 8):
            d = noise(np.random.default_rng(seed + k), (races, k, max_seeds))
            skews.append(float(stats.skew(d.ravel())))
            out = simulate_races(d, RaceRule(k, ALPHA, max_seeds=max_seeds))
            row[f"race_{k}"] = float(np.isin(out["decision"], (1, 2)).any(axis=1).mean())
            out = simulate_races(d, RaceRule(k, ALPHA, max_seeds=max_seeds, statistic="hall"))
            row[f"hall_{k}"] = float(np.isin(out["decision"], (1, 2)).any(axis=1).mean())
            row[f"fixed_{k}"] = float(np.isin(fixed_decisions(d, k), (1, 2)).any(axis=1).mean())
        row["sample_skewness"] = float(np.mean(skews))
        rows.append(row)
    return rows


def betting_half_width(x: FloatArray, alpha: float, lo: float, hi: float, grid: int = 2001) -> FloatArray:
    """Half-width after each observation of the hedged-capital betting confidence sequence (Waudby-Smith
    & Ramdas 2024, predictable plug-in bets, theta 1/2, bets capped at 1/2 of their limit) for data
    known to lie in [lo, hi], intersected over time; ``x`` of shape (samples, n)."""
    z = (np.clip(x, lo, hi) - lo) / (hi - lo)
    m = np.linspace(0.0, 1.0, grid)[1:-1]
    samples, n = z.shape
    out = np.empty((samples, n))
    for s in range(samples):
        log_plus, log_minus = np.zeros_like(m), np.zeros_like(m)
        inside = np.ones_like(m, dtype=bool)
        total, squares, var = 0.0, 0.0, 0.25  # var: the variance estimate of the pairs before t
        for t in range(1, n + 1):
            lam = math.sqrt(2 * math.log(2 / alpha) / (var * t * math.log(1 + t)))
            xi = float(z[s, t - 1])
            log_plus += np.log1p(np.minimum(lam, 0.5 / m) * (xi - m))
            log_minus += np.log1p(-np.minimum(lam, 0.5 / (1 - m)) * (xi - m))
            capital = np.logaddexp(log_plus, log_minus) - math.log(2)  # theta = 1/2
            inside &= capital < math.log(1 / alpha)
            kept = m[inside]
            out[s, t - 1] = (kept.max() - kept.min()) / 2 * (hi - lo) if kept.size else 0.0
            total += xi
            squares += (xi - (0.5 + total) / (t + 1)) ** 2
            var = (0.25 + squares) / (t + 1)
    return out


def widths(seed: int, k: int = 7, max_seeds: int = 17) -> list[dict[str, Any]]:
    level = ALPHA / k
    c = boundaries(max_seeds, 3, level)
    x = np.random.default_rng(seed).standard_normal((200, max_seeds))
    bet3 = np.median(betting_half_width(x, level, -3.0, 3.0), axis=0)
    bet10 = np.median(betting_half_width(x, level, -10.0, 10.0), axis=0)
    rows = []
    for n in (3, 5, 10, 17):
        sd = float(np.median(x[:, :n].std(axis=1, ddof=1)))
        rows.append(
            {
                "n": n,
                "race": float(c[n - 3] * sd / math.sqrt(n)),
                "fixed_t": float(stats.t.ppf(1 - level / 2, n - 1) * sd / math.sqrt(n)),
                "hoeffding_fixed_n": 6.0 * math.sqrt(math.log(2 / level) / (2 * n)),
                "betting_cs_3sd": float(bet3[n - 1]),
                "betting_cs_10sd": float(bet10[n - 1]),
            }
        )
    return rows


def pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}%"


def markdown(summary: list[dict[str, Any]], arms: list[dict[str, Any]], null: list[dict[str, Any]],
             width: list[dict[str, Any]], races: int) -> str:  # fmt: skip
    se = 3 * math.sqrt(ALPHA * (1 - ALPHA) / races)
    lines = [
        f"Races per scenario: {races} (3 binomial SE at alpha = 5%: {100 * se:.1f} points).",
        "",
        "| scenario | max_seeds | FWER | FWER fixed, sim. | wrong dir. | false eq. | P(+1) race | "
        "P(+1) fixed, theory | P(+1) fixed, sim. | runs mean | runs q25 / median / q75 | fixed runs "
        "| saved |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in summary:
        lines.append(
            f"| {r['scenario']} | {r['max_seeds']} | {pct(r['FWER'])} | {pct(r['FWER_fixed_sim'])} | "
            f"{pct(r['wrong_direction'])} | "
            f"{pct(r['false_equivalence'])} | {pct(r['power1_race'])} | {pct(r['power1_fixed_theory'])} | "
            f"{pct(r['power1_fixed_sim'])} | {r['runs_mean']:.1f} | {r['runs_q25']:.0f} / "
            f"{r['runs_median']:.0f} / {r['runs_q75']:.0f} | {r['fixed_runs']} | {pct(r['saved'])} |"
        )
    lines += [
        "",
        "Per arm: share of races with each decision, the race's mean seeds, and the fixed design's share "
        "decided better / worse.",
        "",
        "| scenario | effect | better | worse | equivalent | undecided | mean seeds | fixed: better "
        "| fixed: worse |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for a in arms:
        lines.append(
            f"| {a['scenario']} | {a['effect']:+g} | {pct(a['better'])} | {pct(a['worse'])} | "
            f"{pct(a['equivalent'])} | {pct(a['undecided'])} | {a['mean_seeds']:.1f} | "
            f"{pct(a['fixed_better'])} | {pct(a['fixed_worse'])} |"
        )
    lines += [
        "",
        "Global null, max_seeds 17: family-wise rate of any better/worse decision, race vs the fixed design.",
        "",
        "| differences | sample skewness | race, 3 arms | race, 8 arms | race hall, 3 arms "
        "| race hall, 8 arms | fixed, 3 arms | fixed, 8 arms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in null:
        skew = "-" if r["noise"] == "t3" else f"{r['sample_skewness']:.2f}"
        lines.append(
            f"| {r['description']} | {skew} | {pct(r['race_3'])} | {pct(r['race_8'])} | "
            f"{pct(r['hall_3'])} | {pct(r['hall_8'])} | {pct(r['fixed_3'])} | {pct(r['fixed_8'])} |"
        )
    lines += [
        "",
        "Median interval half-width in sd of the differences at level 0.05/7, 200 sequences of normal "
        "differences (the bounded-data intervals told in advance that the data lie in +-3 or +-10 sd).",
        "",
        "| pairs | race (time-uniform) | fixed-n t | Hoeffding +-3 sd, fixed n | betting CS +-3 sd "
        "(time-uniform) | betting CS +-10 sd |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for w in width:
        lines.append(
            f"| {w['n']} | {w['race']:.2f} | {w['fixed_t']:.2f} | {w['hoeffding_fixed_n']:.2f} | "
            f"{w['betting_cs_3sd']:.2f} | {w['betting_cs_10sd']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--races", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/bench-race", help="folder for race.md, race.csv")
    args = parser.parse_args()
    started = time.perf_counter()
    summary, arms = [], []
    for s in SCENARIOS:
        row, per_arm = run_scenario(s, args.races, args.seed)  # the same draws where the noise is the same
        summary.append(row)
        arms += per_arm
    null = null_rates(args.races, args.seed + 10_000)
    width = widths(args.seed + 20_000)
    text = markdown(summary, arms, null, width, args.races)
    elapsed = time.perf_counter() - started
    header = (
        f"rblock-tune {__version__}, numpy {np.__version__}, {platform.machine()}; "
        f"--races {args.races} --seed {args.seed}; {elapsed:.0f} s"
    )
    print(header + "\n\n" + text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "race.md").write_text(header + "\n\n" + text + "\n")
    with (out / "race.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    with (out / "race_arms.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(arms[0]))
        writer.writeheader()
        writer.writerows(arms)
    print(f"\nresults: {out / 'race.md'}, {out / 'race.csv'}, {out / 'race_arms.csv'}")


if __name__ == "__main__":
    main()
