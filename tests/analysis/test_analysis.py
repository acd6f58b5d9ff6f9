"""From MLflow to a table, the report and ``rblock-tune report``.

Most tests write an MLflow store with known numbers through the study's own writers (parent runs
with their artifacts, trial and seed runs with dotted params and per-epoch metrics), so the answers
are known and a change on the writing side reaches these tests; one test reads the report of a real
tiny study (``tiny_study`` fixture).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Param
from mlflow.tracking import MlflowClient
from scipy import stats

from rblock_tune.analysis import (
    COMPARISON_COLUMNS,
    choose_baseline,
    comparison_values,
    load_histories,
    load_runs,
    param_importances,
    parse_value,
    planning_table,
    read_protocol,
    realised_rates,
    runs_of,
    seeds_needed,
    write_report,
)
from rblock_tune.analysis.publish import publish_report
from rblock_tune.cli import main
from rblock_tune.config import config_from_dict, with_overrides
from rblock_tune.errors import ConfigError
from rblock_tune.layout import (
    COMPLETED,
    DIVERGED,
    PHASE_SEARCH,
    PHASE_SEEDS,
    PHASE_TAG,
    ROLE_TAG,
    ROLE_TRIAL,
    SEARCH_ARM,
    SEED_TAG,
)
from rblock_tune.tuning import (
    TrialRun,
    ensure_experiment,
    find_or_create_parent,
    log_arms_record,
    log_search_record,
    set_run_status,
    spec_from_dict,
)

SPEC = {
    "name": "synth",
    "metric": "val_acc",
    "mode": "max",
    "base": {"train": {"epochs": 3}},
    "space": {
        "reg.variant": ["bdrop_dml", "sdrop_dml"],
        "reg.alpha": {"type": "loguniform", "low": 0.1, "high": 10},
        "reg.drop_prob": {"type": "uniform", "low": 0.05, "high": 0.45},
    },
}
ARM_VARIANTS = {"top1": "bdrop_dml", "dropblock": "dropblock", "none": "none"}
RATES = {"top1": 0.088, "dropblock": 0.094, "none": 0.0}
"""Realised per-sub-model drop rates of the arms' runs (as reg.rate_basis=submodel gives)."""


def _run(
    context: dict[str, Any],
    *,
    phase: str,
    trial_id: str,
    seed: int,
    params: dict[str, Any],
    curve: list[float],
    test_acc: float | None,
    status: str = COMPLETED,
    arm: str | None = None,
    drop_rates: dict[str, float] | None = None,
) -> None:
    """One child run, written as a trial writes it: ``curve`` is val_acc of epochs 1.., the last
    epoch carrying ``test_acc`` and ``drop_rates``."""
    config = with_overrides(config_from_dict({}), {**params, "seed": seed})
    run = TrialRun(
        **context, phase=phase, trial_id=trial_id, config=config, arm=arm or SEARCH_ARM, run_name=trial_id
    )
    for epoch, value in enumerate(curve, start=1):
        record: dict[str, Any] = {"epoch": epoch, "train_loss": 1.0, "val_acc": value}
        if epoch == len(curve):
            record.update(drop_rates or {})
            record["test_acc"] = test_acc
        run.log_epoch(record)
    run.finish(status)


def make_store(
    folder: Path,
    *,
    shift: dict[str, float],
    seeds: int = 8,
    trials: int = 8,
    seed_phase: bool = True,
    diverged: int = 0,
    first_seed: int = 1,
    rates: dict[str, float | None] | None = None,
    allow_search_seeds: bool = False,
    top1_basis: str = "submodel",
    top1_p: float = 0.1,
) -> str:
    """An experiment ``synth``, written through the study's own MLflow writers: ``trials`` search
    trials (seed 0), and (``seed_phase``) arms top1, dropblock and none over ``seeds`` seeds from
    ``first_seed`` on, test_acc = 0.7 + per-seed effect + ``shift[arm]`` + noise; each seed run records
    the realised drop rate ``rates[arm]`` (default :data:`RATES`; None: not recorded) as
    ``drop_rate`` or ``drop_rate_a``/``drop_rate_b``."""
    rates = {**RATES, **(rates or {})}
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = ensure_experiment(client, "synth", (folder / "art").as_uri())
    study = find_or_create_parent(client, experiment_id, "synth", PHASE_SEARCH)
    context = {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": study, "study": "synth"}
    rng = np.random.default_rng(1)
    for i in range(trials):
        alpha, p = float(10 ** rng.uniform(-1, 1)), float(rng.uniform(0.05, 0.5))
        variant = ["bdrop_dml", "sdrop_dml"][i % 2]
        val = 0.5 + 0.1 * p + 0.02 * i / trials + rng.normal(0, 0.01)
        _run(
            context,
            phase=PHASE_SEARCH,
            trial_id=f"t{i}",
            seed=0,
            params={"reg.variant": variant, "reg.alpha": alpha, "reg.drop_prob": p, "reg.block_size": 3,
                    "train.epochs": 3, "seed": 0},
            curve=[val - 0.2, val - 0.1, val],
            test_acc=val,
        )  # fmt: skip
    log_search_record(client, study, spec_from_dict(SPEC), best=[])
    set_run_status(client, study, COMPLETED)
    if seed_phase:
        parent = find_or_create_parent(client, experiment_id, "synth", PHASE_SEEDS)
        context["parent_run_id"] = parent
        arms = {"top1": {"reg.variant": "bdrop_dml"}, "dropblock": {"reg.variant": "dropblock"}, "none": {}}
        seed_list = list(range(first_seed, first_seed + seeds))
        per_seed = rng.normal(0, 0.01, seeds)
        for arm, variant in ARM_VARIANTS.items():
            rate = rates[arm]
            drop_rates = None if rate is None else (
                {"drop_rate_a": rate, "drop_rate_b": rate} if variant == "bdrop_dml" else {"drop_rate": rate}
            )  # fmt: skip
            for i, s in enumerate(seed_list):
                acc = 0.7 + per_seed[i] + shift.get(arm, 0.0) + rng.normal(0, 0.002)
                status = DIVERGED if arm == "none" and i < diverged else COMPLETED
                _run(
                    context,
                    phase=PHASE_SEEDS,
                    trial_id=f"{arm}-{s}",
                    seed=s,
                    arm=arm,
                    status=status,
                    params={"reg.variant": variant, "reg.alpha": 1.0, "train.epochs": 3, "seed": s,
                            "reg.drop_prob": top1_p if arm == "top1" else 0.1,
                            "reg.rate_basis": top1_basis if arm == "top1" else "submodel"},
                    curve=[acc - 0.2, acc - 0.1, acc],
                    test_acc=None if status == DIVERGED else acc,
                    drop_rates=drop_rates,
                )  # fmt: skip
        log_arms_record(
            client,
            parent,
            arms=arms,
            seeds=seed_list,
            search_seeds={"synth": [0]},
            allow_search_seeds=allow_search_seeds,
        )
        set_run_status(client, parent, COMPLETED)
    return uri


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_store(tmp_path_factory.mktemp("store"), shift={"top1": 0.01})


# ----------------------------------------------------------------------------- the table
def test_parse_value() -> None:
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("1e-3") == 0.001
    assert (
        parse_value("True") is True
        and parse_value("None") is None
        and parse_value("bdrop_dml") == "bdrop_dml"
    )


def test_load_runs_is_one_tidy_row_per_run(store: str) -> None:
    runs = load_runs("synth", store)
    assert len(runs) == 1 + 8 + 1 + 24
    assert runs["run_id"].is_unique
    assert {
        "role",
        "arm",
        "seed",
        "status",
        "trial_id",
        "reg.alpha",
        "reg.variant",
        "val_acc",
        "test_acc",
    } <= set(runs.columns)
    assert runs.attrs["tracking_uri"] == store and runs.attrs["experiment"] == "synth"
    assert str(runs["seed"].dtype) == "Int64"
    assert runs["reg.alpha"].dropna().map(type).eq(float).all()  # params parsed back to numbers
    assert str(runs["reg.block_size"].dtype) == "Int64"  # even where some runs lack it
    seeds = runs[runs_of(runs, PHASE_SEEDS)]
    assert sorted(seeds["arm"].unique()) == ["dropblock", "none", "top1"]
    assert (seeds.groupby("arm")["seed"].nunique() == 8).all()
    # final metrics are the last epoch's
    history = load_histories(seeds.head(2), ["val_acc"])
    last = history.sort_values("epoch").groupby("run_id")["value"].last()
    for run_id, value in last.items():
        assert seeds.set_index("run_id").loc[run_id, "val_acc"] == pytest.approx(value)
    assert sorted(history["epoch"].unique()) == [1, 2, 3]


def test_the_seed_tag_wins_over_the_seed_param(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("seeds", artifact_location=(tmp_path / "a").as_uri())
    tagged = client.create_run(
        experiment_id, tags={ROLE_TAG: ROLE_TRIAL, PHASE_TAG: PHASE_SEEDS, SEED_TAG: "5"}
    )
    client.log_batch(tagged.info.run_id, params=[Param("seed", "0"), Param("reg.alpha", "1.0")])
    untagged = client.create_run(experiment_id, tags={})
    client.log_batch(untagged.info.run_id, params=[Param("seed", "7")])
    runs = load_runs("seeds", uri).set_index("run_id")
    assert runs.loc[tagged.info.run_id, "seed"] == 5 and runs.loc[untagged.info.run_id, "seed"] == 7


def test_load_runs_pages_through_many_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    calls: list[int] = []
    real = MlflowClient.search_runs

    def counting(self: MlflowClient, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("max_results", 0))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "search_runs", counting)
    runs = load_runs("synth", store, page_size=10)
    assert len(runs) == 34 and runs["run_id"].is_unique
    assert len(calls) == 4  # 34 runs in pages of 10: a few requests, not one per run


def test_unknown_experiment_lists_the_ones_there(store: str) -> None:
    with pytest.raises(ConfigError, match=r"no MLflow experiment 'nope' .*synth"):
        load_runs("nope", store)


def test_protocol_is_read_from_the_parent_runs(store: str) -> None:
    protocol = read_protocol(load_runs("synth", store))
    assert protocol.selection_metric == "val_acc" and protocol.selection_mode == "max"
    assert set(protocol.space) == {"reg.variant", "reg.alpha", "reg.drop_prob"}
    assert protocol.search_budget == 3 and protocol.seeds == list(range(1, 9))
    assert set(protocol.arms) == {"top1", "dropblock", "none"}
    assert protocol.search_seeds == {"synth": [0]} and not protocol.allow_search_seeds


def test_comparison_picks_the_seed_phase_and_a_baseline(store: str) -> None:
    runs = load_runs("synth", store)
    values, phase, left = comparison_values(runs, "test_acc")
    assert phase == "seeds" and len(values) == 24 and len(left) == 0
    assert choose_baseline(values) == "dropblock"
    assert choose_baseline(values[values["arm"] != "dropblock"]) == "none"
    with pytest.raises(ConfigError, match="pass --baseline, one of: top1"):
        choose_baseline(values[values["arm"] == "top1"])
    with pytest.raises(ConfigError, match="metric 'tst_acc' is not in the runs"):
        comparison_values(runs, "tst_acc")


# ----------------------------------------------------------------------------- the report
def test_report_finds_a_real_shift_and_writes_everything(store: str, tmp_path: Path) -> None:
    result = write_report("synth", store, tmp_path / "rep", n_resamples=2000)
    assert result.baseline == "dropblock" and result.phase == "seeds"
    table = pd.read_csv(tmp_path / "rep" / "comparisons.csv")
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    top1 = table.set_index("arm").loc["top1"]
    none = table.set_index("arm").loc["none"]
    assert top1["paired"] and top1["n_pairs"] == 8
    assert top1["significant"] and top1["mean_diff"] == pytest.approx(0.01, abs=0.003)
    assert top1["ci_low"] < 0.01 < top1["ci_high"] and top1["ci_low"] > 0
    assert not none["significant"]
    # p-values are SciPy's on the seed-matched pairs
    runs = pd.read_csv(tmp_path / "rep" / "runs.csv")
    seeds = runs[(runs["phase"] == "seeds") & (runs["role"] == "trial")].pivot(
        index="seed", columns="arm", values="test_acc"
    )
    assert top1["p_paired_t"] == pytest.approx(stats.ttest_rel(seeds["top1"], seeds["dropblock"]).pvalue)
    assert top1["p_welch"] == pytest.approx(
        stats.ttest_ind(seeds["top1"], seeds["dropblock"], equal_var=False).pvalue
    )
    assert len(runs) == 34
    names = {p.name for p in (tmp_path / "rep" / "figures").iterdir()}
    assert names == {f"{n}.png" for n in ("forest", "paired_seeds", "distribution", "learning_curves",
                                          "hyperparameters", "importances", "parallel")}  # fmt: skip
    for png in (tmp_path / "rep" / "figures").iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = result.markdown.read_text()
    for fragment in (
        "**Question.**",
        "## Protocol",
        "## Results",
        "## Figures",
        "## Caveats",
        "`val_acc`",
        "which took no part in the selection",
        "figures/distribution.png",
        "`top1`",
    ):
        assert fragment in md, fragment  # fmt: skip
    # planning: seeds needed for 0.25 / 0.5 / 1 accuracy points at the observed sd of the differences
    diffs = (seeds["top1"] - seeds["dropblock"]).to_numpy()
    plan = planning_table(
        pd.DataFrame({"arm": runs["arm"], "seed": runs["seed"], "test_acc": runs["test_acc"]}).dropna(),
        result.comparisons, "test_acc", 0.05,
    ).set_index("arm")  # fmt: skip
    assert list(plan.columns) == ["spread (sd)", "0.25 points", "0.5 points", "1 points"]
    for label, size in (("0.25 points", 0.0025), ("1 points", 0.01)):
        expected = seeds_needed(size, float(diffs.std(ddof=1)), paired=True)
        assert plan.loc["top1", label] == str(expected)
    assert int(plan.loc["top1", "0.25 points"]) > int(plan.loc["top1", "1 points"]) >= 2
    assert "Planning: seeds per arm" in md
    html = result.html.read_text()
    assert html.count('src="data:image/png;base64,') == 7  # figures embedded: one file to share
    assert not re.search(r'src="(?!data:)', html) and "<table>" in html


def _drawn_forest(fig: Any) -> pd.DataFrame:
    """What the forest plot shows, read back from its artists, top row first: the y tick label's arm,
    the point's x, the interval's ends, and whether the point is filled."""
    (ax,) = fig.axes
    labels = {
        round(float(y)): t.get_text().split()[0]
        for y, t in zip(ax.get_yticks(), ax.get_yticklabels(), strict=True)
    }
    points = {round(float(line.get_ydata()[0])): line for line in ax.get_lines() if line.get_gid() == "point"}
    intervals = {}
    for collection in ax.collections:
        if collection.get_gid() == "interval":
            ((x0, y0), (x1, _)) = collection.get_segments()[0]
            intervals[round(float(y0))] = (float(x0), float(x1))
    rows = []
    for y in sorted(labels, reverse=True):
        line = points[y]
        low, high = intervals.get(y, (np.nan, np.nan))
        filled = line.get_markerfacecolor() != "white"  # hollow: not significant
        x = float(line.get_xdata()[0])
        rows.append({"arm": labels[y], "mean_diff": x, "ci_low": low, "ci_high": high, "significant": filled})
    return pd.DataFrame(rows)


def test_forest_plot_draws_the_comparisons_table(store: str, tmp_path: Path) -> None:
    """The first figure of the report: one row per arm, the point and the bar exactly the table's
    mean difference and interval, filled when significant after Holm; then the per-seed pairs."""
    from PIL import Image

    from rblock_tune.analysis.plots import forest_rows, paired_seed_values, plot_forest, plot_paired_seeds

    result = write_report("synth", store, tmp_path / "rep", n_resamples=2000)
    assert list(result.figures)[:2] == ["forest", "paired_seeds"]
    for name in ("forest", "paired_seeds"):
        path = tmp_path / "rep" / "figures" / f"{name}.png"
        assert result.figures[name] == path
        with Image.open(path) as image:
            image.verify()  # a valid PNG, not only its magic number
            assert image.format == "PNG"
    md = result.markdown.read_text()
    assert (
        md.index("figures/forest.png")
        < md.index("figures/paired_seeds.png")
        < md.index("figures/distribution.png")
    )

    table = pd.read_csv(tmp_path / "rep" / "comparisons.csv")
    rows = forest_rows(table)
    pd.testing.assert_frame_equal(
        rows[["arm", "mean_diff", "ci_low", "ci_high", "p_holm"]],
        table[["arm", "mean_diff", "ci_low", "ci_high", "p_holm"]].astype({"arm": str}),
    )
    assert rows["significant"].tolist() == table["significant"].tolist() == [False, True]  # none, top1
    drawn = _drawn_forest(plot_forest(table, "test_acc"))
    assert drawn["arm"].tolist() == table["arm"].tolist()
    for column in ("mean_diff", "ci_low", "ci_high"):
        assert drawn[column].to_numpy() == pytest.approx(table[column].to_numpy(), rel=1e-12), column
    assert drawn["significant"].tolist() == table["significant"].tolist()
    # the bar is the bootstrap interval of the table, not a symmetric one around the mean
    half = (table["ci_high"] - table["ci_low"]) / 2
    assert not np.allclose(table["mean_diff"] - half, table["ci_low"], rtol=0, atol=1e-9)

    # per-seed pairs: each seed both arms ran, its two values as runs.csv has them
    runs = pd.read_csv(tmp_path / "rep" / "runs.csv")
    seeds = runs[(runs["phase"] == "seeds") & (runs["role"] == "trial") & (runs["status"] == COMPLETED)]
    wide = seeds.pivot(index="seed", columns="arm", values="test_acc")
    pairs = paired_seed_values(result.runs[runs_of(result.runs, PHASE_SEEDS)].dropna(subset=["test_acc"]),
                               "test_acc", "dropblock")  # fmt: skip
    for arm in ("none", "top1"):
        mine = pairs[pairs["arm"] == arm].set_index("seed")
        n_pairs = int(table.set_index("arm").loc[arm, "n_pairs"])
        assert len(mine) == n_pairs == 8
        assert mine["baseline_value"].to_numpy() == pytest.approx(
            wide.loc[mine.index, "dropblock"].to_numpy()
        )
        assert mine["arm_value"].to_numpy() == pytest.approx(wide.loc[mine.index, arm].to_numpy())
    fig = plot_paired_seeds(result.runs[runs_of(result.runs, PHASE_SEEDS)].dropna(subset=["test_acc"]),
                            "test_acc", "dropblock")  # fmt: skip
    assert [len(ax.get_lines()) for ax in fig.axes] == [8, 8]  # one line per seed, per arm


@pytest.mark.slow
def test_report_caveats(tmp_path: Path) -> None:
    uri = make_store(tmp_path, shift={}, seeds=3, diverged=1)
    result = write_report("synth", uri, tmp_path / "rep", metric="val_acc", n_resamples=1000)
    text = "\n".join(result.caveats)
    assert "n too small" in text and "none (n=2)" in text
    assert "1 diverged" in text and "diverged runs were left out" in text
    assert "is the one that selected the configurations" in text  # val_acc chose and is compared
    assert "## Caveats" in result.markdown.read_text() and "winner" in result.markdown.read_text()


def test_report_of_a_search_without_seed_phase_compares_variants(tmp_path: Path) -> None:
    uri = make_store(tmp_path, shift={}, seed_phase=False)
    with pytest.raises(ConfigError, match="pass --baseline"):
        write_report("synth", uri, tmp_path / "rep", n_resamples=1000)
    result = write_report("synth", uri, tmp_path / "rep", baseline="bdrop_dml", n_resamples=1000)
    assert result.phase == "search" and list(result.comparisons["arm"]) == ["sdrop_dml"]
    assert not result.comparisons["paired"].any()
    assert any("not a controlled comparison" in c for c in result.caveats)
    # without a seed phase the answer goes on the search parent run
    client = MlflowClient(tracking_uri=uri)
    parent = publish_report(result, client)
    assert parent is not None
    run = client.get_run(parent)
    assert run.data.tags[PHASE_TAG] == PHASE_SEARCH and run.data.tags["rblock.baseline"] == "bdrop_dml"
    assert run.data.tags["rblock.decision.sdrop_dml"] in ("better", "worse", "no difference")
    assert "sdrop_dml.diff" in run.data.metrics
    assert {a.path for a in client.list_artifacts(parent, "report")} >= {"report/report.html"}


def test_report_refuses_bad_input(store: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--baseline 'dropblok' is not an arm.*dropblock, none, top1"):
        write_report("synth", store, tmp_path, baseline="dropblok")
    with pytest.raises(ConfigError, match=r"significance=1\.5"):
        write_report("synth", store, tmp_path, significance=1.5)


# ------------------------------------------------------------------------- fair comparisons
def test_protocol_lists_the_seeds_of_each_phase_and_the_realised_rates(store: str, tmp_path: Path) -> None:
    result = write_report("synth", store, tmp_path / "rep", n_resamples=1000)
    md = result.markdown.read_text()
    assert (
        "seeds: the search trials ran with [0] (this study); the seed phase ran [1, 2, 3, 4, 5, 6, 7, 8], "
        "disjoint from every search seed." in md
    )
    assert "realised drop rate per sub-model" in md
    assert (
        "`dropblock` 0.094 (dropblock, p=0.1)" in md
        and "`top1` 0.088 (bdrop_dml, p=0.1, submodel basis)" in md
    )
    assert "`none` 0 (none)" in md
    assert not any("reuses search seed" in c or "unequal drop rates" in c for c in result.caveats)
    rates = realised_rates(result.runs[runs_of(result.runs, PHASE_SEEDS)]).set_index("arm")
    assert rates.loc["top1", "realised"] == pytest.approx(0.088) and rates.loc["none", "realised"] == 0.0
    assert rates.loc["top1", "rate_basis"] == "submodel"


def test_caveat_when_the_seed_phase_reuses_a_search_seed(tmp_path: Path) -> None:
    uri = make_store(tmp_path, shift={}, first_seed=0, allow_search_seeds=True)
    result = write_report("synth", uri, tmp_path / "rep", n_resamples=1000)
    (caveat,) = [c for c in result.caveats if "reuses search seed" in c]
    assert "[0] (allowed by seeds.allow_search_seeds)" in caveat and "winner's curse" in caveat
    assert (
        "the seed phase ran [0, 1, 2, 3, 4, 5, 6, 7], reusing search seed(s) [0]."
        in result.markdown.read_text()
    )


@pytest.mark.slow
def test_caveat_when_compared_arms_drop_unequal_shares(tmp_path: Path) -> None:
    """bdrop_dml on the shared basis drops about half of dropblock's rate per sub-model: more than 25%."""
    uri = make_store(tmp_path, shift={}, rates={"top1": 0.047}, top1_basis="shared")
    result = write_report("synth", uri, tmp_path / "rep", n_resamples=1000)
    (caveat,) = [c for c in result.caveats if "unequal drop rates" in c]
    assert "top1 0.047 vs dropblock 0.094 (-50%)" in caveat and "with reg.rate_basis=submodel" in caveat
    assert "none" not in caveat.split(":")[1]  # no regularization is not a mismatch of rates
    # already on the submodel basis (sdrop_dml at high p against DropBlock's overlapping blocks, say)
    overlap = make_store(tmp_path / "overlap", shift={}, rates={"top1": 0.094 * 1.3})
    (caveat,) = [c for c in write_report("synth", overlap, tmp_path / "o", n_resamples=1000).caveats
                 if "unequal drop rates" in c]  # fmt: skip
    assert (
        "(+30%)" in caveat
        and "the gap is in the masks themselves" in caveat
        and "choose each arm's p" in caveat
    )
    assert "by design" not in caveat and "rate_basis=submodel, where" not in caveat
    # arms configured with different p (each tuned on its own, say): the caveat says so, not "the masks"
    tuned = make_store(tmp_path / "tuned", shift={}, rates={"top1": 0.25}, top1_p=0.27)
    (caveat,) = [c for c in write_report("synth", tuned, tmp_path / "t", n_resamples=1000).caveats
                 if "unequal drop rates" in c]  # fmt: skip
    assert "top1 0.250 vs dropblock 0.094 (+166%, at p 0.27 vs 0.1)" in caveat
    assert (
        "by design" in caveat and "add an arm of the baseline" in caveat and "masks themselves" not in caveat
    )
    within = make_store(tmp_path / "within", shift={}, rates={"top1": 0.094 * 0.76})
    assert not any(
        "unequal" in c for c in write_report("synth", within, tmp_path / "w", n_resamples=1000).caveats
    )
    unknown = make_store(tmp_path / "unknown", shift={}, rates={"top1": None, "dropblock": None})
    caveats = write_report("synth", unknown, tmp_path / "u", n_resamples=1000).caveats
    assert any("drop rates were not recorded for dropblock, top1" in c for c in caveats)


# ----------------------------------------------------------------------------- the command
def test_report_command(store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = [
        "report",
        "--experiment",
        "synth",
        "--tracking-uri",
        store,
        "--out",
        str(out),
        "--resamples",
        "1000",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "against dropblock (seeds runs)" in printed and "top1" in printed
    assert f"report: {out / 'report.html'}" in printed
    assert (out / "comparisons.csv").is_file() and (out / "report.md").is_file()


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--experiment", "nope"], "no MLflow experiment 'nope'"),
        (["--experiment", "synth", "--baseline", "x"], "--baseline 'x' is not an arm"),
        (["--experiment", "synth", "--metric", "acc"], "metric 'acc' is not in the runs"),
        (["--experiment", "synth", "--significance", "0"], "significance=0.0 must be between 0 and 1"),
        (["--experiment", "synth", "--resamples", "10"], "--resamples 10 is too few"),
        (["--experiment", "synth", "--alpha", "0.01"], "--alpha is now --significance"),
    ],
)
def test_report_command_errors_are_one_line(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], fragment: str
) -> None:
    assert main(["report", "--tracking-uri", store, "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_report_command_without_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--experiment", "x", "--workdir", str(tmp_path)]) == 2
    assert "pass --tracking-uri" in capsys.readouterr().err


# ------------------------------------------------------------------------- a real study
@pytest.mark.slow
def test_a_real_study_ends_with_its_report(tiny_study: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The tiny study (report: true) ran search, seeds and report; its output ends with the report,
    and ``rblock-tune report`` finds the study by name in its workdir."""
    last = tiny_study.stdout.strip().splitlines()[-1]
    assert last.startswith(f"report: {tiny_study.report / 'report.html'}"), tiny_study.stdout[-2000:]
    table = pd.read_csv(tiny_study.report / "comparisons.csv")
    assert sorted(table["arm"]) == ["none", "top1"] and set(table["baseline"]) == {"dropblock"}
    assert table["paired"].all() and (table["n_pairs"] == 3).all()
    runs = pd.read_csv(tiny_study.report / "runs.csv")
    assert runs_of(runs, PHASE_SEARCH).sum() == 6 and runs_of(runs, PHASE_SEEDS).sum() == 9
    # the realised drop rates are columns of the tidy run table, like every other metric
    assert {"drop_rate", "drop_rate_a", "drop_rate_b", "consistency_kl_own", "consistency_kl_probe"} <= set(
        runs
    )
    seed_runs = runs[runs_of(runs, PHASE_SEEDS)].set_index("arm")
    assert (seed_runs.loc["none", "drop_rate"] == 0).all() and (
        seed_runs.loc["dropblock", "drop_rate"] > 0
    ).all()
    assert sorted(seed_runs["seed"].unique()) == [1, 2, 3]
    assert {p.name for p in (tiny_study.report / "figures").iterdir()} >= {
        "distribution.png", "learning_curves.png", "hyperparameters.png", "parallel.png"
    }  # fmt: skip
    out = tiny_study.workdir / "again"
    assert (
        main(["report", "--experiment", "tiny", "--workdir", str(tiny_study.workdir), "--out", str(out)]) == 0
    )
    assert "against dropblock (seeds runs)" in capsys.readouterr().out
    assert pd.read_csv(out / "comparisons.csv")["p_paired_t"].tolist() == table["p_paired_t"].tolist()


def test_importances_of_a_study_without_its_spec_read_numbers_as_ranges() -> None:
    """A study that saved no normalised spec: its numeric keys are ranges (log when wide), not one
    category per trial (which made fANOVA take minutes on 600 trials), and a range without bounds
    from the spec takes the trials' own."""
    from rblock_tune.analysis.report_document import _fallback_space

    rng = np.random.default_rng(0)
    n = 40
    trials = pd.DataFrame(
        {
            "reg.drop_prob": rng.uniform(0.05, 0.45, n),
            "reg.alpha": np.exp(rng.uniform(np.log(0.1), np.log(10.0), n)),
            "reg.variant": rng.choice(["bdrop_dml", "dropblock"], n),
        }
    )
    trials["val_acc"] = 0.5 + trials["reg.drop_prob"] + rng.normal(0, 0.01, n)
    space = _fallback_space(trials, ["reg.drop_prob", "reg.alpha", "reg.variant"])
    assert space == {
        "reg.drop_prob": {"type": "uniform"},
        "reg.alpha": {"type": "loguniform"},
        "reg.variant": {"type": "categorical"},
    }
    importances = param_importances(trials, space, "val_acc", "max", seed=0)
    assert set(importances) == {"reg.drop_prob", "reg.alpha", "reg.variant"}
    assert max(importances, key=importances.__getitem__) == "reg.drop_prob"
