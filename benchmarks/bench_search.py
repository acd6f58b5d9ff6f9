"""Search strategies replayed against a recorded grid: what each finds for how many epochs.

Every strategy runs the platform's own searcher, search algorithm and scheduler
(``rblock_tune.tuning.replay``) against the recorded learning curves of a grid study
(``benchmarks/data/grid_cifar10_resnet8.json`` by default; ``rblock-tune study export`` makes one from
any finished study): nothing is trained, so hundreds of searches take minutes. Several ``--recording``
files of one grid trained from different seeds are replayed as replicates
(``rblock_tune.tuning.merge_recordings``): each trial sees one seed's curves, drawn per replay, and a
configuration's value is its mean over the seeds. Strategies:

* ``grid``: every recorded point once, in the grid's order (the same in every replay);
* ``random``, ``tpe``: the searcher's sampler over a continuous space spanning the grid
  (``Recording.search_space``), FIFO, each trial its full budget;
* ``tpe+asha``: TPE with ASHA (grace period 1, reduction factor 2 by default) and this project's
  feedback: a trial ASHA stops is told to Optuna as PRUNED with its intermediate values;
* ``tpe+asha-stock``: the same with Ray's stock ``OptunaSearch``, which tells a stopped trial as
  COMPLETE with its value at the stop.

Each strategy runs ``--replays`` times with sampler seeds 0, 1, ... (the grid's order does not depend on
the seed: its replays are all the same); every replay asks for trials until it has spent as many epochs
as the grid (the trials running then finish), at
``--concurrency`` trials at once on a clock of recorded epoch times. A strategy's *pick* at any moment
is the configuration its Optuna study ranks first among COMPLETE trials (what the study would hand to
its seed phase); its value is that configuration's recorded validation accuracy after the whole budget,
and its test accuracy the recorded one (each the mean over the seeds, with replicates). The grid's
epochs are one pass over its configurations (one seed), and its best is the best mean.

Prints, per strategy: the pick's validation accuracy after 10, 20, 30, 50 and 100% of the grid's epochs
(median and interquartile range over replays), the final pick's test accuracy, the epochs spent until
the pick first came within ``--tolerance`` (0.3 points) of the grid's best (median, IQR, and the share of
replays that got there; one that never did counts as infinite), the trials run, and how well a point's
early epochs rank the grid (Spearman, per epoch; the test curves too where recorded). Writes
``search.md``, ``search.csv`` (one row per replay) and ``search.png`` (the pick against epochs spent,
median and IQR) to ``--out``.

    python benchmarks/bench_search.py [--recording FILE.json [FILE.json ...]] [--replays 20] [--concurrency 2]
        [--out benchmarks/results/bench-search]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rblock_tune import __version__
from rblock_tune.errors import RBlockError
from rblock_tune.tuning import (
    STRATEGIES,
    Recording,
    ReplayResult,
    load_recording,
    merge_recordings,
    replay,
    replay_spec,
)

FRACTIONS = (0.1, 0.2, 0.3, 0.5, 1.0)
DEFAULT_RECORDING = Path(__file__).parent / "data" / "grid_cifar10_resnet8.json"


def run(
    rec: Recording, replays: int, concurrency: int, grace: int, rf: float
) -> dict[str, list[ReplayResult]]:
    """Every strategy's replays (the grid's too: its order does not depend on the seed, so its replays
    are one replay repeated, which the table shows as an interquartile range of 0; with replicates, the
    seed each point shows still differs between replays)."""
    budget = rec.grid_epochs()
    out: dict[str, list[ReplayResult]] = {}
    for name, strategy in STRATEGIES.items():
        seeds = list(range(replays))
        out[name] = []
        for seed in seeds:
            spec = replay_spec(
                rec,
                strategy,
                seed=seed,
                max_concurrent=concurrency,
                num_samples=10 * budget,  # the epoch budget ends the search, not the trial count
                grace_period=grace,
                reduction_factor=rf,
            )
            out[name].append(replay(rec, spec, strategy, label=name, epoch_budget=budget))
    return out


def quartiles(values: list[float], missing: float = math.nan) -> tuple[float, float, float]:
    """Median, 25th and 75th percentile, each one of the values (no interpolation, so a replay that
    never got there, infinite, stays infinite); a NaN value counts as ``missing`` (default: left out)."""
    a = np.array([missing if math.isnan(v) else v for v in values], dtype=float)
    a = a[~np.isnan(a)]
    if not a.size:
        return math.nan, math.nan, math.nan
    q = np.percentile(a, [50, 25, 75], method="inverted_cdf")
    return float(q[0]), float(q[1]), float(q[2])


def fmt(q: tuple[float, float, float], scale: float = 1.0, digits: int = 1) -> str:
    def one(v: float) -> str:
        if math.isinf(v):
            return "never" if v > 0 else "none yet"
        return "-" if math.isnan(v) else f"{v * scale:.{digits}f}"

    return f"{one(q[0])} [{one(q[1])}, {one(q[2])}]"


def target_of(rec: Recording, tolerance: float) -> float:
    """The value a pick must reach: within ``tolerance`` of the grid's best."""
    best = float(rec.truth(rec.best()))  # type: ignore[arg-type]
    return best - tolerance if rec.mode == "max" else best + tolerance


def summarise(
    rec: Recording, results: dict[str, list[ReplayResult]], tolerance: float
) -> list[dict[str, Any]]:
    target = target_of(rec, tolerance)
    worst = -math.inf if rec.mode == "max" else math.inf
    grid_epochs = rec.grid_epochs()
    rows = []
    for name, replays in results.items():
        reach = [r.epochs_to(target, rec.mode) for r in replays]
        row: dict[str, Any] = {
            "strategy": name,
            "replays": len(replays),
            # a replay without a pick yet ranks below every pick
            "at": {f: quartiles([r.value_at(f * grid_epochs) for r in replays], worst) for f in FRACTIONS},
            "test": quartiles(
                [r.pick.test_acc if r.pick and r.pick.test_acc is not None else math.nan for r in replays]
            ),
            "unseen": quartiles(
                [r.pick.unseen if r.pick and r.pick.unseen is not None else math.nan for r in replays]
            ),
            "reach": quartiles([math.inf if e is None else float(e) for e in reach]),
            "reached": sum(e is not None for e in reach) / len(reach),
            "reached_30": sum(e is not None and e <= 0.3 * grid_epochs for e in reach) / len(reach),
            "trials": quartiles([float(len(r.trials)) for r in replays]),
            "epochs": quartiles([float(r.epochs) for r in replays]),
        }
        rows.append(row)
    return rows


def regret(rec: Recording, result: ReplayResult, start: int = 1) -> float:
    """Anytime regret of a replay, in points: the mean over the grid's epochs ``start``..E of (grid's
    best - pick's value); before the first pick the pick counts as the worst complete point."""
    values = [v for v in (rec.truth(p) for p in rec.configurations()) if v is not None]
    best = float(rec.truth(rec.best()))  # type: ignore[arg-type]
    worst = min(values) if rec.mode == "max" else max(values)  # type: ignore[type-var]
    sign = 1.0 if rec.mode == "max" else -1.0
    gaps = []
    for x in range(start, rec.grid_epochs() + 1):
        value = result.value_at(x)
        gaps.append(sign * (best - (worst if math.isnan(value) else value)))  # type: ignore[operator]
    return 100 * float(np.mean(gaps))


def paired(rec: Recording, results: dict[str, list[ReplayResult]], a: str, b: str, tolerance: float) -> str:
    """``a`` against ``b`` replay by replay (the same sampler seed): anytime regret and epochs to the
    target, with a Wilcoxon signed-rank test on the regret differences."""
    from scipy import stats

    target = target_of(rec, tolerance)
    ra = [regret(rec, r) for r in results[a]]
    rb = [regret(rec, r) for r in results[b]]
    # from the first epoch at which both replays of a seed have a pick: stock feedback has one from the
    # first stopped trial on, pruned feedback only from the first trial that ran its whole budget
    both = [
        max(
            x.picks[0].epochs if x.picks else rec.grid_epochs(),
            y.picks[0].epochs if y.picks else rec.grid_epochs(),
        )
        for x, y in zip(results[a], results[b], strict=True)
    ]
    la = [regret(rec, r, s) for r, s in zip(results[a], both, strict=True)]
    lb = [regret(rec, r, s) for r, s in zip(results[b], both, strict=True)]
    late = np.array(la) - np.array(lb)
    late_tied = np.isclose(late, 0)
    late_lower, late_higher = int(((late < 0) & ~late_tied).sum()), int(((late > 0) & ~late_tied).sum())
    diff = np.array(ra) - np.array(rb)
    tied = np.isclose(diff, 0)
    ties, lower, higher = int(tied.sum()), int(((diff < 0) & ~tied).sum()), int(((diff > 0) & ~tied).sum())
    p = stats.wilcoxon(diff, zero_method="wilcox").pvalue if len(diff) - ties >= 1 else math.nan
    ea = [r.epochs_to(target, rec.mode) or math.inf for r in results[a]]
    eb = [r.epochs_to(target, rec.mode) or math.inf for r in results[b]]
    fewer = sum(x < y for x, y in zip(ea, eb, strict=True))
    more = sum(x > y for x, y in zip(ea, eb, strict=True))
    return (
        f"**{a} against {b}**, {len(diff)} replays paired by sampler seed: anytime regret (mean over the "
        f"grid's epochs of the grid's best minus the pick, points) median {np.median(ra):.3f} against "
        f"{np.median(rb):.3f}; {a} lower in {lower} replays, higher in {higher}, tied in {ties}; Wilcoxon "
        f"signed-rank p = {p:.3g} (ties left out). From the first epoch at which both have a pick: median "
        f"{np.median(la):.3f} against {np.median(lb):.3f}, {a} lower in {late_lower}, higher in "
        f"{late_higher}, tied in {int(late_tied.sum())}. Epochs to the target: "
        f"{a} fewer in {fewer}, more in {more}, equal in {len(ea) - fewer - more}.\n"
    )


def ranks(rec: Recording) -> str:
    """How well a point's early epochs rank the grid, which decides what ASHA's rungs can do: the
    Spearman correlation, over the grid's points, of the metric after each epoch with the metric after
    the whole budget; and of the final metric with the final test accuracy (how well picking on the
    validation set picks on the test set), with the test curves where the recording has them."""
    from scipy import stats

    points = rec.complete()
    final = [p.final(rec.metric) for p in points]
    early = []
    for epoch in range(1, rec.budget):
        after = [p.curves[rec.metric][epoch - 1] for p in points]
        early.append(f"{epoch}: {stats.spearmanr(after, final).statistic:.2f}")
    lines = [
        f"Spearman correlation over the grid's {len(points)} trials"
        + (f" ({len(rec.seeds())} seeds)" if len(rec.seeds()) > 1 else "")
        + f" of {rec.metric} after epoch k with "
        f"{rec.metric} after {rec.budget}: " + ", ".join(early) + "."
    ]
    tests = [p.final("test_acc") for p in points]
    if all(t is not None for t in tests):
        lines.append(
            f"Final {rec.metric} against final test_acc: {stats.spearmanr(final, tests).statistic:.2f}."
        )
    curves = [p.curves.get("test_acc") or [] for p in points]
    if all(len(c) == rec.budget and all(v is not None for v in c) for c in curves):
        by_epoch = [
            f"{epoch}: {stats.spearmanr([c[epoch - 1] for c in curves], tests).statistic:.2f}"
            for epoch in range(1, rec.budget)
        ]
        lines.append("test_acc after epoch k against the final test_acc: " + ", ".join(by_epoch) + ".")
    lines += replicate_agreement(rec)
    return " ".join(lines) + "\n"


def replicate_agreement(rec: Recording) -> list[str]:
    """With replicates: how well one seed ranks the grid against another (Spearman over the
    configurations, per pair of seeds), and how far one configuration's final metric moves between
    seeds (the standard deviation over configurations of the difference between two seeds, / sqrt 2:
    the noise of one seed's value, in points)."""
    from scipy import stats

    seeds = rec.seeds()
    if len(seeds) < 2:
        return []
    by_seed = {
        s: {
            json.dumps(p.params, sort_keys=True): p.final(rec.metric)
            for p in rec.complete()
            if rec.seed_of(p) == s
        }
        for s in seeds
    }
    out = []
    for a, b in itertools.combinations(seeds, 2):
        shared = [k for k in by_seed[a] if k in by_seed[b]]
        xa = np.array([by_seed[a][k] for k in shared], dtype=float)
        xb = np.array([by_seed[b][k] for k in shared], dtype=float)
        rho = stats.spearmanr(xa, xb).statistic
        noise = 100 * float(np.std(xa - xb, ddof=1)) / math.sqrt(2)
        out.append(
            f"Seeds {a} and {b} over {len(shared)} configurations: Spearman {rho:.2f} of final {rec.metric}; "
            f"one seed's noise {noise:.2f} points."
        )
    return out


def table(rec: Recording, rows: list[dict[str, Any]], args: argparse.Namespace, seconds: float) -> str:
    best = rec.best()
    best_value = float(rec.truth(best) or math.nan)
    best_test = rec.truth(best, "test_acc")
    grid_epochs = rec.grid_epochs()
    seeds = rec.seeds()
    lines = [
        f"# Search strategies replayed against {rec.study}",
        "",
        f"rblock-tune {__version__}, Python {platform.python_version()}; recording: "
        f"{' '.join(str(r) for r in args.recording)} ({len(rec.configurations())} points x {rec.budget} "
        f"epochs = {grid_epochs} epochs"
        + (f", x {len(seeds)} seeds {list(seeds)}" if len(seeds) > 1 else "")
        + f", {rec.total_seconds() / 60:.0f} min of recorded training); {args.replays} replays per strategy, "
        f"{args.concurrency} trials at once, ASHA grace {args.grace} rf {args.rf:g}; "
        f"replayed in {seconds:.0f} s.",
        "",
        f"Grid's best: {rec.metric} {best_value * 100:.2f} at {best.params} "
        f"(test_acc {math.nan if best_test is None else best_test * 100:.2f})"
        + (f", each the mean over {len(seeds)} seeds" if len(seeds) > 1 else "")
        + f"; target: within {args.tolerance * 100:.1f} points, {rec.metric} >= "
        f"{(best_value - args.tolerance) * 100:.2f}.",
        "",
        "Pick's validation accuracy (%) after a share of the grid's epochs, median [25th, 75th percentile]:",
        "",
        "| strategy | "
        + " | ".join(f"{int(f * 100)}% ({round(f * grid_epochs)} ep.)" for f in FRACTIONS)
        + " |",
        "|---|" + "---|" * len(FRACTIONS),
    ]
    for row in rows:
        lines.append(
            f"| {row['strategy']} | " + " | ".join(fmt(row["at"][f], 100, 2) for f in FRACTIONS) + " |"
        )
    replicated = len(seeds) > 1
    unseen_head = f"final pick {rec.metric} on unseen seeds | " if replicated else ""
    lines += [
        "",
        f"Epochs until the pick is within {args.tolerance * 100:.1f} points of the grid's best; the final "
        "pick's test accuracy (%)"
        + (
            f", and its {rec.metric} (%) over the seeds its replay did not see (free of the luck it was "
            "picked for)"
            if replicated
            else ""
        )
        + "; trials and epochs run:",
        "",
        "| strategy | epochs to target | reached | within 30% of the grid's epochs | final pick test acc "
        f"| {unseen_head}trials | epochs |",
        "|---|---|---|---|---|---|---|" + ("---|" if replicated else ""),
    ]
    for row in rows:
        unseen = f"{fmt(row['unseen'], 100, 2)} | " if replicated else ""
        lines.append(
            f"| {row['strategy']} | {fmt(row['reach'], 1, 0)} | {row['reached'] * 100:.0f}% | "
            f"{row['reached_30'] * 100:.0f}% | {fmt(row['test'], 100, 2)} | {unseen}"
            f"{fmt(row['trials'], 1, 0)} | {fmt(row['epochs'], 1, 0)} |"
        )
    return "\n".join(lines) + "\n"


def plot(rec: Recording, results: dict[str, list[ReplayResult]], tolerance: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid_epochs = rec.grid_epochs()
    xs = np.arange(1, grid_epochs + 1)
    best = float(rec.truth(rec.best()))  # type: ignore[arg-type]
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    for name, replays in results.items():
        values = np.array([[r.value_at(x) for x in xs] for r in replays]) * 100
        values[np.isnan(values)] = -np.inf  # no pick yet: below every pick (not drawn)
        med, lo, hi = np.percentile(values, [50, 25, 75], axis=0, method="inverted_cdf")
        style = "--" if name.endswith("stock") else "-"  # drawn over its pruned twin, which it can hide
        (line,) = ax.step(xs, med, where="post", label=name, ls=style)
        if len(replays) > 1:
            ax.fill_between(xs, lo, hi, step="post", alpha=0.18, color=line.get_color())
    ax.axhline(best * 100, color="black", lw=0.8, ls="--", label="grid's best")
    ax.axhline((best - tolerance) * 100, color="grey", lw=0.8, ls=":", label=f"best - {tolerance * 100:.1f}")
    ax.axvline(0.3 * grid_epochs, color="grey", lw=0.6, ls="-.", label="30% of the grid's epochs")
    finals = np.array([v for v in (rec.truth(p) for p in rec.configurations()) if v is not None], dtype=float)
    ax.set_ylim(np.percentile(finals * 100, 25), best * 100 + 0.6)
    ax.set_xlabel("epochs spent")
    ax.set_ylabel(f"pick's {rec.metric} after the full budget (%)")
    ax.set_title(f"Search strategies on {rec.study} (median and IQR over replays)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recording",
        type=Path,
        nargs="+",
        default=[DEFAULT_RECORDING],
        help="one recorded grid, or several of one grid from different seeds (replicates)",
    )
    parser.add_argument("--replays", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--grace", type=int, default=1)
    parser.add_argument("--rf", type=float, default=2.0)
    parser.add_argument("--tolerance", type=float, default=0.003, help="as a fraction (0.003 = 0.3 points)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench-search"))
    args = parser.parse_args()
    try:
        rec = merge_recordings([load_recording(path) for path in args.recording])
        rec.best()  # one line now, not a traceback later, for a recording with nothing whole
        if args.replays < 1 or args.concurrency < 1 or args.grace < 1 or args.rf <= 1 or args.tolerance < 0:
            raise RBlockError("--replays, --concurrency and --grace must be >= 1, --rf > 1, --tolerance >= 0")
    except RBlockError as exc:
        print(f"bench_search: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    start = time.perf_counter()
    results = run(rec, args.replays, args.concurrency, args.grace, args.rf)
    seconds = time.perf_counter() - start
    rows = summarise(rec, results, args.tolerance)
    text = (
        table(rec, rows, args, seconds)
        + "\n"
        + paired(rec, results, "tpe+asha", "tpe+asha-stock", args.tolerance)
        + "\n"
        + ranks(rec)
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search.md").write_text(text)
    target = target_of(rec, args.tolerance)
    with (args.out / "search.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "strategy",
                "seed",
                "trials",
                "epochs",
                "seconds",
                "pick_params",
                "pick_val",
                "pick_test",
                "recorded_seed",
                "pick_unseen",
                "epochs_to_target",
            ]
        )
        for name, replays in results.items():
            for r in replays:
                pick = r.pick
                writer.writerow(
                    [
                        name,
                        r.seed,
                        len(r.trials),
                        r.epochs,
                        f"{r.seconds:.1f}",
                        pick.point.params if pick else "",
                        pick.value if pick else "",
                        pick.test_acc if pick else "",
                        r.recorded_seed,
                        "" if pick is None or pick.unseen is None else pick.unseen,
                        r.epochs_to(target, rec.mode),
                    ]
                )
    plot(rec, results, args.tolerance, args.out / "search.png")
    print(f"wrote {args.out / 'search.md'}, search.csv and search.png")


if __name__ == "__main__":
    main()
