"""Figures of a study: matplotlib (pyplot) figures, each function returns its Figure.

Inputs are the tidy tables of :mod:`rblock_tune.analysis` (runs from ``load_runs``, histories
from ``load_histories``), so a notebook can call them on any subset. The backend is left to the
caller: a notebook keeps its inline backend; the command line uses Agg (``MPLBACKEND``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rblock_tune.analysis.race_record import decision_points, is_raced, race_trajectory

__all__ = [
    "FOREST_COLUMNS",
    "forest_rows",
    "paired_seed_values",
    "plot_distribution",
    "plot_forest",
    "plot_hyperparameters",
    "plot_importances",
    "plot_learning_curves",
    "plot_paired_seeds",
    "plot_parallel",
    "plot_race",
]

_LABELS = {
    "reg.alpha": "alpha (KL weight)",
    "reg.drop_prob": "drop probability p",
    "reg.block_size": "block size b",
    "reg.variant": "variant",
}


def _label(key: str) -> str:
    return _LABELS.get(key, key)


def _order(arms: Sequence[str], baseline: str | None) -> list[str]:
    arms = sorted({str(a) for a in arms})
    if baseline in arms:
        arms.remove(str(baseline))
        arms.insert(0, str(baseline))
    return arms


def _is_categorical(values: pd.Series) -> bool:
    clean = values.dropna()
    return bool(clean.map(lambda v: isinstance(v, (str, bool))).any()) or clean.nunique() <= 1


def _is_log(values: pd.Series) -> bool:
    clean = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(clean) and clean.min() > 0 and clean.max() / clean.min() >= 20)


def plot_distribution(
    values: pd.DataFrame, metric: str = "test_acc", *, arm_col: str = "arm", baseline: str | None = None
) -> Figure:
    """Per-arm distribution over seeds: a box and every run as a point (baseline first)."""
    data = values.dropna(subset=[metric])
    arms = _order(data[arm_col].astype(str).tolist(), baseline)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(arms) + 1.5), 4.0))
    groups = [data.loc[data[arm_col].astype(str) == arm, metric].to_numpy(float) for arm in arms]
    ax.boxplot(groups, positions=range(len(arms)), widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for i, group in enumerate(groups):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(group)), group, s=18, alpha=0.8, zorder=3)
    ax.set_xticks(range(len(arms)), [f"{a}\n(n={len(g)})" for a, g in zip(arms, groups, strict=True)])
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} over seeds, per arm")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_learning_curves(
    histories: pd.DataFrame,
    runs: pd.DataFrame,
    metric: str = "val_acc",
    *,
    arm_col: str = "arm",
    baseline: str | None = None,
) -> Figure:
    """Mean of ``metric`` per epoch for each arm, with a band of one standard deviation over its runs
    (its seeds, in a seed phase)."""
    data = histories[histories["metric"] == metric].merge(runs[["run_id", arm_col]], on="run_id")
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for arm in _order(data[arm_col].astype(str).tolist(), baseline):
        per_epoch = data[data[arm_col].astype(str) == arm].groupby("epoch")["value"]
        mean, sd, n = per_epoch.mean(), per_epoch.std(ddof=1).fillna(0.0), per_epoch.count()
        ax.plot(mean.index, mean.to_numpy(), marker="o", ms=3, label=f"{arm} (n={int(n.max())})")
        ax.fill_between(mean.index, (mean - sd).to_numpy(), (mean + sd).to_numpy(), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by epoch: mean and ±1 sd over each arm's runs")
    ax.grid(alpha=0.3)
    if len(ax.get_lines()):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_hyperparameters(trials: pd.DataFrame, params: Sequence[str], metric: str = "val_acc") -> Figure:
    """``metric`` of each search trial against each searched hyperparameter (one panel each)."""
    params = [p for p in params if p in trials.columns]
    cols = max(1, min(len(params), 4))
    rows = max(1, math.ceil(len(params) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), squeeze=False)
    data = trials.dropna(subset=[metric])
    for ax, param in zip(axes.flat, params, strict=False):
        x = data[param]
        if _is_categorical(x):
            levels = sorted(x.dropna().astype(str).unique())
            pos = x.astype(str).map({v: i for i, v in enumerate(levels)})
            jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(pos))
            ax.scatter(pos + jitter, data[metric], s=20, alpha=0.8)
            ax.set_xticks(range(len(levels)), levels, rotation=20)
        else:
            ax.scatter(pd.to_numeric(x), data[metric], s=20, alpha=0.8)
            if _is_log(x):
                ax.set_xscale("log")
        ax.set_xlabel(_label(param))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(params) :]:
        ax.set_visible(False)
    fig.suptitle(f"search trials: {metric} against each searched hyperparameter")
    fig.tight_layout()
    return fig


def plot_importances(importances: Mapping[str, float]) -> Figure:
    """Optuna parameter importances as horizontal bars (largest on top)."""
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6.0, 0.5 * len(items) + 1.5))
    ax.barh([_label(k) for k, _ in items], [v for _, v in items])
    ax.set_xlabel("importance (fANOVA, share of the objective's variance)")
    ax.set_title("hyperparameter importances")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_parallel(trials: pd.DataFrame, params: Sequence[str], metric: str = "val_acc") -> Figure:
    """Parallel coordinates of the search: one line per trial across the searched hyperparameters
    and the metric, each axis scaled to [0, 1] (log axes for wide positive ranges), coloured by
    the metric."""
    params = [p for p in params if p in trials.columns]
    data = trials.dropna(subset=[metric]).reset_index(drop=True)
    axes_keys = [*params, metric]
    scaled: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
    ticks: dict[str, tuple[str, str]] = {}
    for key in axes_keys:
        x = data[key]
        if _is_categorical(x):
            levels = sorted(x.dropna().astype(str).unique())
            codes = x.astype(str).map({v: i for i, v in enumerate(levels)}).to_numpy(float)
            span = max(len(levels) - 1, 1)
            scaled[key] = codes / span
            ticks[key] = (levels[0], levels[-1]) if levels else ("", "")
        else:
            v = pd.to_numeric(x).to_numpy(float)
            lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
            w = np.log(v) if _is_log(x) else v
            wlo, whi = float(np.nanmin(w)), float(np.nanmax(w))
            scaled[key] = (w - wlo) / (whi - wlo) if whi > wlo else np.full_like(w, 0.5)
            ticks[key] = (f"{lo:.3g}", f"{hi:.3g}")
    fig, ax = plt.subplots(figsize=(1.8 * len(axes_keys) + 2.0, 4.0))
    colour = scaled[metric]
    cmap = matplotlib.colormaps["viridis"]
    for i in range(len(data)):
        ax.plot(range(len(axes_keys)), [scaled[k][i] for k in axes_keys], color=cmap(colour[i]), alpha=0.7)
    for j, key in enumerate(axes_keys):
        ax.axvline(j, color="black", lw=0.8)
        ax.text(j, -0.06, ticks[key][0], ha="center", va="top", fontsize=7)
        ax.text(j, 1.06, ticks[key][1], ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(axes_keys)), [_label(k) for k in axes_keys], rotation=15)
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.15)
    ax.set_title(f"search trials across the hyperparameters (colour: {metric})")
    fig.tight_layout()
    return fig


FOREST_COLUMNS: tuple[str, ...] = (
    "arm",
    "baseline",
    "mean_diff",
    "ci_low",
    "ci_high",
    "p_holm",
    "significant",
)
"""Columns of :func:`forest_rows`, all taken from the comparisons table."""


def forest_rows(comparisons: pd.DataFrame) -> pd.DataFrame:
    """The rows :func:`plot_forest` draws, top to bottom: each arm's difference from the baseline
    (``mean_diff``, of the per-seed differences when paired), its interval (``ci_low``, ``ci_high``)
    and whether it is significant after Holm, exactly as the comparisons table
    (:func:`rblock_tune.analysis.compare_arms`, ``comparisons.csv``) has them."""
    rows = comparisons.loc[:, list(FOREST_COLUMNS)].copy()
    rows["arm"] = rows["arm"].astype(str)
    rows["significant"] = rows["significant"].astype(bool)
    return rows.reset_index(drop=True)


def plot_forest(comparisons: pd.DataFrame, metric: str = "test_acc", *, significance: float = 0.05) -> Figure:
    """Forest plot: one row per arm, the point its mean difference from the baseline, the bar the
    interval of the comparisons table, a vertical line at 0; significant rows (Holm-adjusted
    primary p-value below ``significance``; for a raced arm, decided better or worse by the race)
    filled and coloured, the others hollow and grey."""
    rows = forest_rows(comparisons)
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(rows) + 2.3))
    y = np.arange(len(rows))[::-1]  # the table's first row on top
    for yi, row in zip(y, rows.itertuples(index=False), strict=True):
        colour = "tab:red" if row.significant else "tab:grey"
        has_ci = not (pd.isna(row.ci_low) or pd.isna(row.ci_high))
        if has_ci:
            ax.hlines(yi, row.ci_low, row.ci_high, color=colour, lw=2.2, gid="interval")
        ax.plot(
            [row.mean_diff], [yi], marker="o", ms=7, linestyle="none", color=colour,
            markerfacecolor=colour if row.significant else "white", gid="point",
        )  # fmt: skip
    ax.axvline(0.0, color="black", lw=0.9, ls="--")
    raced = [is_raced(r) for r in comparisons.itertuples(index=False)]
    decisions = comparisons["decision"].tolist() if "decision" in comparisons else [None] * len(rows)
    labels = [
        f"{r.arm}  ({decided}, race)"
        if race
        else f"{r.arm}  ({'significant' if r.significant else 'n.s.'}, p Holm {r.p_holm:.3g})"
        if not pd.isna(r.p_holm)
        else f"{r.arm}  (n.s.)"
        for r, race, decided in zip(rows.itertuples(index=False), raced, decisions, strict=True)
    ]
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    baseline = str(rows["baseline"].iloc[0]) if len(rows) else "baseline"
    if any(raced):
        ax.set_xlabel(
            f"{metric}: arm - {baseline}\npoint: mean difference, bar: the race's anytime-valid interval"
            + (" (95% BCa for arms not raced)" if not all(raced) else "")
            + "\nfilled: decided better or worse by the race"
            + (f" (not raced: significant at {significance} after Holm)" if not all(raced) else "")
        )
    else:
        ax.set_xlabel(
            f"{metric}: arm - {baseline}\npoint: mean difference, bar: 95% BCa interval\n"
            f"filled: significant at {significance} after Holm"
        )
    ax.set_title(f"{metric}: each arm's difference from {baseline}")
    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def paired_seed_values(
    values: pd.DataFrame, metric: str, baseline: str, *, arm_col: str = "arm", seed_col: str = "seed"
) -> pd.DataFrame:
    """For each arm other than ``baseline`` and each seed both ran: ``arm``, ``seed``,
    ``baseline_value``, ``arm_value`` (what :func:`plot_paired_seeds` draws); sorted by arm, seed."""
    data = values.dropna(subset=[metric, seed_col])
    data = data.assign(**{arm_col: data[arm_col].astype(str), seed_col: data[seed_col].astype(int)})
    base = data.loc[data[arm_col] == baseline, [seed_col, metric]].groupby(seed_col)[metric].mean()
    rows = []
    for arm in sorted(a for a in data[arm_col].unique() if a != baseline):
        mine = data.loc[data[arm_col] == arm].groupby(seed_col)[metric].mean()
        for seed in sorted(set(mine.index) & set(base.index)):
            rows.append({"arm": arm, "seed": int(seed), "baseline_value": float(base[seed]),
                         "arm_value": float(mine[seed])})  # fmt: skip
    return pd.DataFrame(rows, columns=["arm", "seed", "baseline_value", "arm_value"])


def plot_paired_seeds(values: pd.DataFrame, metric: str, baseline: str, *, arm_col: str = "arm") -> Figure:
    """Per-seed paired lines: one panel per arm, each seed a line from the baseline's value to the
    arm's (green: the arm did better on that seed, red: worse, grey: equal), with the seed's number
    beside it."""
    pairs = paired_seed_values(values, metric, baseline, arm_col=arm_col)
    arms = sorted(pairs["arm"].unique()) or ["(none)"]
    fig, axes = plt.subplots(1, len(arms), figsize=(2.6 * len(arms) + 1.0, 4.0), sharey=True, squeeze=False)
    for ax, arm in zip(axes.flat, arms, strict=True):
        mine = pairs[pairs["arm"] == arm]
        for row in mine.itertuples(index=False):
            colour = (
                "tab:green" if row.arm_value > row.baseline_value
                else "tab:red" if row.arm_value < row.baseline_value
                else "tab:grey"
            )  # fmt: skip
            ax.plot([0, 1], [row.baseline_value, row.arm_value], marker="o", ms=4, color=colour, alpha=0.8)
            ax.text(1.04, row.arm_value, str(row.seed), fontsize=7, va="center")
        ax.set_xticks([0, 1], [baseline, arm])
        ax.set_xlim(-0.3, 1.3)
        ax.set_title(f"{arm} (n={len(mine)} pairs)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes.flat[0].set_ylabel(metric)
    fig.suptitle(f"{metric} per seed: {baseline} to each arm (green: arm better on that seed)")
    fig.tight_layout()
    return fig


def plot_race(looks: pd.DataFrame, baseline: str, metric: str, *, margin: float = 0.0) -> Figure:
    """A race's course: one panel per arm, its mean difference from ``baseline`` (point) and its
    anytime-valid interval (bar) against the seed pairs it had (:func:`~rblock_tune.analysis.
    race_record.race_trajectory`: one per number of pairs, the last look at it), a dashed line at 0
    (dotted at +-``margin`` when positive) and a star where the arm stopped
    (:func:`~rblock_tune.analysis.race_record.decision_points`), labelled with its decision.
    Intervals not yet finite (before the race's first look at ``min_seeds`` pairs) are not drawn."""
    path = race_trajectory(looks)
    stops = decision_points(looks).set_index("arm") if len(looks) else pd.DataFrame()
    arms = sorted(path["arm"].astype(str).unique()) if len(path) else ["(no look yet)"]
    most = float(path["n_pairs"].max()) if len(path) else 1.0
    cols = min(len(arms), 4)
    rows = math.ceil(len(arms) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.3 * cols + 1.0, 3.4 * rows + 0.6), sharey=True, squeeze=False
    )
    for ax, arm in zip(axes.flat, arms, strict=False):
        mine = path[path["arm"].astype(str) == arm] if len(path) else path
        x = mine["n_pairs"].to_numpy(float) if len(mine) else np.array([])
        low = mine["ci_low"].to_numpy(float) if len(mine) else np.array([])
        high = mine["ci_high"].to_numpy(float) if len(mine) else np.array([])
        mean = mine["mean_diff"].to_numpy(float) if len(mine) else np.array([])
        finite = np.isfinite(low) & np.isfinite(high)
        if finite.any():
            ax.vlines(x[finite], low[finite], high[finite], color="tab:blue", lw=2.2, gid="interval")
        shown = np.isfinite(mean)
        ax.plot(x[shown], mean[shown], marker="o", ms=5, color="tab:blue", lw=0.8, gid="mean")
        ax.axhline(0.0, color="black", lw=0.9, ls="--")
        if margin > 0:
            for edge in (-margin, margin):
                ax.axhline(edge, color="tab:grey", lw=0.9, ls=":")
        if arm in stops.index:
            stop = stops.loc[arm]
            colour = {"better": "tab:green", "worse": "tab:red", "equivalent": "tab:purple"}.get(
                str(stop["decision"]), "tab:grey"
            )
            ax.plot(
                [float(stop["n_pairs"])], [float(stop["mean_diff"])], marker="*", ms=15, color=colour,
                linestyle="none", zorder=4, gid="decision",
            )  # fmt: skip
            high = float(stop["ci_high"])
            top = high if math.isfinite(high) else float(stop["mean_diff"])
            ax.annotate(  # above its interval, ending at the star: the star is the arm's last point
                f"{stop['decision']} at {int(stop['n_pairs'])}", (float(stop["n_pairs"]), top),
                xytext=(6, 4), textcoords="offset points", ha="right", va="bottom", fontsize=8,
                color=colour, gid="decision_label",
            )  # fmt: skip
        ax.set_title(arm, fontsize=10)
        ax.set_xlim(0.5, most + 0.7)
        ax.margins(y=0.12)  # room for the decision's label above the interval
        ax.set_xlabel("seed pairs")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{metric}: arm - {baseline}")
    for ax in list(axes.flat)[len(arms) :]:
        ax.set_visible(False)
    fig.suptitle(f"race against {baseline}: each arm's interval by seed pairs (star: where it stopped)")
    fig.tight_layout()
    return fig
