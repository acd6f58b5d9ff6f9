"""The report of a raced seed phase: the race's own intervals and decisions in place of the fixed-n
tests when the report compares the race's metric against its baseline, the race in the protocol, its
figure, and its decisions published; the fixed-n tests with a caveat otherwise; and nothing of it for
a fixed design.

The store is written as a study writes it (child runs through :class:`~rblock_tune.tuning.TrialRun`,
the seeds parent's arms record), and the race's record (tag :data:`~rblock_tune.layout.RACE_TAG`,
artifact :data:`~rblock_tune.layout.RACE_LOOKS_ARTIFACT`) by running :func:`~rblock_tune.racing.race_step`
after every completed pair, seed-major, as the racing seed phase does: ``top1`` is decided better
early (and one more of its runs, started before that, still finishes), ``top2`` stops for futility,
``none`` is decided worse."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from rblock_tune.analysis import COMPARISON_COLUMNS, write_report
from rblock_tune.analysis.publish import RESULT_HEADING, publish_report
from rblock_tune.analysis.race_record import (
    RACE_COMPARISON_COLUMNS,
    decision_points,
    parse_looks,
    race_trajectory,
)
from rblock_tune.config import config_from_dict, with_overrides
from rblock_tune.errors import ConfigError
from rblock_tune.layout import (
    BASELINE_TAG,
    COMPLETED,
    DECISION_TAG_PREFIX,
    DESCRIPTION_TAG,
    PHASE_SEEDS,
    RACE_LOOK_COLUMNS,
    RACE_LOOKS_ARTIFACT,
    RACE_TAG,
    arm_metric,
    race_tag,
)
from rblock_tune.racing import race_step
from rblock_tune.tuning import (
    TrialRun,
    ensure_experiment,
    find_or_create_parent,
    log_arms_record,
    set_run_status,
)

BASELINE = "dropblock"
DESIGN: dict[str, Any] = {
    "alpha": 0.05,
    "margin": 0,
    "min_seeds": 3,
    "max_seeds": 8,
    "futility": 0.6,
    "metric": "test_acc",
    "mode": "max",
    "baseline": BASELINE,
}
SHIFT = {BASELINE: 0.0, "top1": 0.03, "top2": 0.0005, "none": -0.012}
VARIANTS = {BASELINE: "dropblock", "top1": "bdrop_dml", "top2": "sdrop_dml", "none": "none"}
EXPECTED = {"top1": ("better", 4), "top2": ("undecided", 4), "none": ("worse", 5)}
"""What the race below decides, and after how many pairs (checked by the race's own record)."""
RESAMPLES = 500


def _accuracies() -> dict[tuple[str, int], float]:
    rng = np.random.default_rng(3)
    per_seed = rng.normal(0, 0.01, 9)
    noise = {(arm, s): rng.normal(0, 0.002) for arm in SHIFT for s in range(1, 9)}
    return {(arm, s): 0.7 + per_seed[s] + SHIFT[arm] + noise[(arm, s)] for arm in SHIFT for s in range(1, 9)}


def _seed_run(context: dict[str, Any], arm: str, seed: int, acc: float) -> None:
    config = with_overrides(
        config_from_dict({}),
        {"reg.variant": VARIANTS[arm], "reg.drop_prob": 0.1, "train.epochs": 2, "seed": seed},
    )
    run = TrialRun(
        **context,
        phase=PHASE_SEEDS,
        trial_id=f"{arm}-{seed}",
        config=config,
        arm=arm,
        run_name=f"{arm} s{seed}",
    )
    run.log_epoch({"epoch": 1, "train_loss": 1.0, "val_acc": acc - 0.05})
    run.log_epoch({"epoch": 2, "train_loss": 0.9, "val_acc": acc - 0.01, "test_acc": acc})
    run.finish(COMPLETED)


def _race(
    acc: dict[tuple[str, int], float],
) -> tuple[list[tuple[str, int]], pd.DataFrame, list[tuple[str, int]]]:
    """The race, seed-major, a look after every completed pair: the runs it used (in order), its
    looks, and the runs started before their arm was decided that finish after it."""
    done: list[tuple[str, int]] = []
    rows: list[dict[str, Any]] = []
    frozen = None
    live = {arm: True for arm in SHIFT if arm != BASELINE}
    for seed in range(1, DESIGN["max_seeds"] + 1):
        if not any(live.values()):
            break
        done.append((BASELINE, seed))
        for arm in sorted(live):
            if not live[arm]:
                continue
            done.append((arm, seed))
            values = pd.DataFrame([{"arm": a, "seed": s, "test_acc": acc[(a, s)]} for a, s in done])
            frozen = race_step(
                values, frozen=frozen, **{k: v for k, v in DESIGN.items() if k != "metric"}, metric="test_acc"
            )
            rows += [{"look": len({r["look"] for r in rows}) + 1, **r} for r in frozen.to_dict("records")]
            live.update({r.arm: bool(r.live) for r in frozen.itertuples(index=False)})
    looks = pd.DataFrame(rows, columns=list(RACE_LOOK_COLUMNS))
    top1_seeds = max(s for a, s in done if a == "top1")
    return done, looks, [("top1", top1_seeds + 1)]  # top1's next seed had started when it was decided


def make_store(folder: Path, *, raced: bool = True) -> str:
    """Experiment ``synth``: a seeds parent and its seed runs, raced (the race's tag and looks on the
    parent) or a fixed design (every arm all 8 seeds)."""
    acc = _accuracies()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = ensure_experiment(client, "synth", (folder / "art").as_uri())
    parent = find_or_create_parent(client, experiment_id, "synth", PHASE_SEEDS)
    context = {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent, "study": "synth"}
    if raced:
        used, looks, late = _race(acc)
        runs = used + late
        client.set_tag(parent, RACE_TAG, race_tag(DESIGN))
        client.log_text(parent, looks.to_csv(index=False), RACE_LOOKS_ARTIFACT)
        final = looks[looks["look"] == looks["look"].max()]
        for r in final.itertuples(index=False):
            client.set_tag(parent, DECISION_TAG_PREFIX + r.arm, r.decision)
    else:
        runs = [(arm, s) for s in range(1, DESIGN["max_seeds"] + 1) for arm in SHIFT]
    for arm, seed in runs:
        _seed_run(context, arm, seed, acc[(arm, seed)])
    log_arms_record(
        client,
        parent,
        arms={arm: {"reg.variant": variant} for arm, variant in VARIANTS.items()},
        seeds=list(range(1, DESIGN["max_seeds"] + 1)),
        search_seeds={},
        allow_search_seeds=False,
    )
    set_run_status(client, parent, COMPLETED)
    return uri


@pytest.fixture(scope="module")
def raced_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_store(tmp_path_factory.mktemp("raced"))


@pytest.fixture(scope="module")
def raced_report(raced_store: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return write_report("synth", raced_store, tmp_path_factory.mktemp("report"), n_resamples=RESAMPLES)


def _looks(uri: str) -> pd.DataFrame:
    from rblock_tune.analysis import load_artifact_text, load_runs

    runs = load_runs("synth", uri)
    parent = runs.loc[(runs["phase"] == PHASE_SEEDS) & (runs["role"] == "parent"), "run_id"].iloc[0]
    return parse_looks(load_artifact_text(str(parent), RACE_LOOKS_ARTIFACT, uri))


def _pair_diffs(runs: pd.DataFrame, arm: str) -> pd.Series:
    """The arm's per-seed differences from the baseline, from the run table, in seed order."""
    seeds = runs[(runs["phase"] == PHASE_SEEDS) & (runs["role"] == "trial")]
    wide = seeds.pivot(index="seed", columns="arm", values="test_acc")
    return (wide[arm] - wide[BASELINE]).dropna().sort_index()


# ----------------------------------------------------------------------------- the race's record
def test_the_race_decides_as_the_store_says(raced_store: str) -> None:
    """The store's race is the one the other tests assume (a changed rule shows here first)."""
    final = _looks(raced_store).groupby("arm").tail(1).set_index("arm")
    assert {
        arm: (final.loc[arm, "decision"], int(final.loc[arm, "n_pairs"])) for arm in final.index
    } == EXPECTED


def test_trajectory_keeps_the_last_look_at_each_number_of_pairs_and_the_decision_point() -> None:
    looks = pd.DataFrame(
        [
            # look, arm, n_pairs, mean, low, high, level, decision, live
            (1, "a", 3, 0.010, -0.02, 0.04, 0.025, "undecided", True),
            (1, "b", 3, 0.030, 0.001, 0.06, 0.025, "better", False),
            (2, "a", 3, 0.010, -0.01, 0.03, 0.050, "undecided", True),  # b's decision recycled its level
            (2, "b", 3, 0.030, 0.001, 0.06, 0.025, "better", False),  # frozen
            (3, "a", 4, 0.012, -0.004, 0.028, 0.050, "undecided", False),  # futility stop
            (3, "b", 3, 0.030, 0.001, 0.06, 0.025, "better", False),
        ],
        columns=list(RACE_LOOK_COLUMNS),
    )
    path = race_trajectory(looks)
    assert path[["arm", "n_pairs", "look"]].values.tolist() == [["a", 3, 2], ["a", 4, 3], ["b", 3, 3]]
    assert path.loc[0, "ci_low"] == -0.01  # the later look at 3 pairs, not the first
    stops = decision_points(looks).set_index("arm")
    assert stops.loc["b", "look"] == 1 and stops.loc["b", "decision"] == "better"
    assert stops.loc["a", "look"] == 3 and stops.loc["a", "n_pairs"] == 4
    assert stops.loc["a", "decision"] == "undecided"
    assert "a" not in decision_points(looks[looks["look"] < 3]).set_index("arm").index  # still racing


def test_a_looks_file_without_the_races_columns_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"lacks the race's columns \['level'"):
        parse_looks("look,arm,n_pairs,mean_diff,ci_low,ci_high,decision,live\n1,a,3,0,0,0,undecided,True\n")
    with pytest.raises(ConfigError, match=r"decisions \['maybe'\]"):
        parse_looks(
            "look,arm,n_pairs,mean_diff,ci_low,ci_high,level,decision,live\n1,a,3,0,0,0,0.05,maybe,True\n"
        )
    assert len(parse_looks(None)) == 0 and list(parse_looks("")) == list(RACE_LOOK_COLUMNS)


# ----------------------------------------------------------------------------- the raced report
def test_raced_arms_get_the_races_intervals_and_decisions(raced_report: Any, raced_store: str) -> None:
    result = raced_report
    table = pd.read_csv(result.out / "comparisons.csv")
    assert result.baseline == BASELINE  # the race's, by default
    assert list(table.columns) == [*COMPARISON_COLUMNS, *RACE_COMPARISON_COLUMNS]
    final = _looks(raced_store).groupby("arm").tail(1).set_index("arm")
    runs = pd.read_csv(result.out / "runs.csv")
    for row in table.itertuples(index=False):
        race = final.loc[row.arm]
        assert (row.mean_diff, row.ci_low, row.ci_high) == pytest.approx(
            (race["mean_diff"], race["ci_low"], race["ci_high"]), rel=1e-12
        )
        assert row.n_pairs == race["n_pairs"] and row.decision == race["decision"]
        assert row.interval == f"race (anytime-valid, level {race['level']:.3g})"
        assert row.race_level == pytest.approx(race["level"])
        assert row.significant == (race["decision"] in ("better", "worse"))
        assert row.primary_test == "race"
        assert all(math.isnan(getattr(row, c)) for c in ("p_paired_t", "p_wilcoxon", "p_primary", "p_holm"))
        # the race's mean is that of the first n_pairs paired seeds, as the run table has them
        diffs = _pair_diffs(runs, row.arm)
        assert row.mean_diff == pytest.approx(diffs.iloc[: row.n_pairs].mean(), rel=1e-9)
    top1 = table.set_index("arm").loc["top1"]
    # its run that finished after the decision is counted as a run, not used by the race's interval
    assert top1["n"] == 5 and top1["n_pairs"] == 4
    assert top1["mean_diff"] != pytest.approx(_pair_diffs(runs, "top1").mean(), rel=1e-6)
    assert table.set_index("arm")["decision"].to_dict() == {arm: d for arm, (d, _) in EXPECTED.items()}
    assert not any("n too small" in c for c in result.caveats)  # the race's own design chose 4 and 5
    assert not any("seeds were raced" in c for c in result.caveats)


def test_the_protocol_and_the_tables_say_it_was_a_race(raced_report: Any) -> None:
    md = raced_report.markdown.read_text()
    protocol = md.split("## Protocol")[1].split("## Results")[0]
    (race,) = [line for line in protocol.splitlines() if line.startswith("- race: ")]
    for fragment in (
        "alpha=0.05 (family-wise over all arms and looks)",
        "margin 0 (no equivalence decisions)",
        "looks from 3 to 8 seed pairs per arm",
        "futility 0.6",
        "against `dropblock` on `test_acc` (max)",
        "the race's decisions used 18 runs",  # pairs 4 + 4 + 5 and the baseline's 5
        "`top1` 4 (better)",
        "the seed phase completed 19 runs (1 of them started before their arm was decided",
        "against 32 for a fixed design of 8 seeds per arm (4 arms, the baseline included)",
        "anytime-valid group-sequential intervals",
        "Holm-recycled level",
        "valid after the optional stopping",
        "docs/racing.md",
    ):
        assert fragment in race, fragment
    assert "compared: the seed phase, a race, 19 completed runs" in protocol
    assert "statistics: for the raced arms (`none`, `top1`, `top2`)" in protocol
    answer = md.split("**Answer.**")[1].split("## Protocol")[0]
    assert "`top1`: **better**" in answer and "after 4 seed pairs" in answer
    assert "`top2`: undecided" in answer and "`none`: **worse**" in answer
    table = md.split("Each arm against `dropblock`")[1].split("Planning:")[0]
    (header,) = [line for line in table.splitlines() if line.startswith("| arm | n (pairs) |")]
    assert "| difference [interval] | interval | decision |" in header
    assert "5 (4 in the race)" in table and "race (anytime-valid, level" in table
    html = raced_report.html.read_text()
    assert "<li>race: the seed phase was a race, alpha=0.05" in html and "<code>docs/racing.md</code>" in html


def test_the_race_figure_is_written_and_shown(raced_report: Any, raced_store: str) -> None:
    from PIL import Image

    from rblock_tune.analysis.plots import plot_race

    result = raced_report
    path = result.out / "figures" / "race.png"
    assert result.figures["race"] == path
    with Image.open(path) as image:
        image.verify()
    md = result.markdown.read_text()
    assert "](figures/race.png)" in md and md.index("figures/forest.png") < md.index("figures/race.png")
    html = result.html.read_text()
    assert html.count('src="data:image/png;base64,') == len(result.figures)
    assert "The race on test_acc against dropblock" in html and not re.search(r'src="(?!data:)', html)
    # what it draws: per arm its trajectory (one point per number of pairs) and where it stopped
    looks = _looks(raced_store)
    fig = plot_race(looks, BASELINE, "test_acc")
    path_rows = race_trajectory(looks)
    stops = decision_points(looks).set_index("arm")
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert sorted(axes) == ["none", "top1", "top2"]
    for arm, ax in axes.items():
        mine = path_rows[(path_rows["arm"] == arm) & path_rows["mean_diff"].notna()]
        (mean,) = [line for line in ax.get_lines() if line.get_gid() == "mean"]
        assert list(mean.get_xdata()) == mine["n_pairs"].tolist()
        assert list(mean.get_ydata()) == pytest.approx(mine["mean_diff"].tolist())
        (bars,) = [c for c in ax.collections if c.get_gid() == "interval"]
        finite = mine[np.isfinite(mine["ci_low"])]
        ends = np.array([(seg[0][0], seg[0][1], seg[1][1]) for seg in bars.get_segments()])
        assert ends == pytest.approx(finite[["n_pairs", "ci_low", "ci_high"]].to_numpy(float))
        (star,) = [line for line in ax.get_lines() if line.get_gid() == "decision"]
        assert star.get_xdata()[0] == stops.loc[arm, "n_pairs"] == EXPECTED[arm][1]
        (label,) = [t for t in ax.texts if t.get_gid() == "decision_label"]
        assert label.get_text() == f"{EXPECTED[arm][0]} at {EXPECTED[arm][1]}"
        assert any(line.get_ydata()[0] == 0 and line.get_linestyle() == "--" for line in ax.get_lines())
    # a margin draws its two edges
    margin_fig = plot_race(looks, BASELINE, "test_acc", margin=0.01)
    edges = {line.get_ydata()[0] for line in margin_fig.axes[0].get_lines() if line.get_linestyle() == ":"}
    assert edges == {-0.01, 0.01}


def test_publish_puts_the_races_decisions_on_the_parent_run(tmp_path: Path) -> None:
    uri = make_store(tmp_path)
    result = write_report("synth", uri, tmp_path / "rep", n_resamples=RESAMPLES)
    client = MlflowClient(tracking_uri=uri)
    parent = str(result.runs.loc[(result.runs["phase"] == PHASE_SEEDS) & (result.runs["role"] == "parent"),
                                 "run_id"].iloc[0])  # fmt: skip
    for arm in EXPECTED:  # the race's own tags gone: publishing must write them from the report
        client.delete_tag(parent, DECISION_TAG_PREFIX + arm)
    assert publish_report(result, client) == parent
    run = client.get_run(parent)
    tags, metrics = run.data.tags, run.data.metrics
    assert tags[BASELINE_TAG] == BASELINE
    assert {arm: tags[DECISION_TAG_PREFIX + arm] for arm in EXPECTED} == {
        a: d for a, (d, _) in EXPECTED.items()
    }
    table = result.comparisons.set_index("arm")
    for arm in EXPECTED:
        assert metrics[arm_metric(arm, "ci_low")] == pytest.approx(table.loc[arm, "ci_low"])
        assert metrics[arm_metric(arm, "diff")] == pytest.approx(table.loc[arm, "mean_diff"])
        assert arm_metric(arm, "p_holm") not in metrics
    description = tags[DESCRIPTION_TAG]
    assert description.startswith(RESULT_HEADING) and "raced" in description.splitlines()[0]
    (top1,) = [line for line in description.splitlines() if line.startswith("| top1 |")]
    low, high = table.loc["top1", "ci_low"], table.loc["top1", "ci_high"]
    assert (
        f"[{low:.4f}, {high:.4f}]" in top1 and "race (anytime-valid" in top1 and top1.endswith("| better |")
    )
    assert "| 5 (4) |" in top1
    (top2,) = [line for line in description.splitlines() if line.startswith("| top2 |")]
    assert top2.endswith("| undecided |")


# ----------------------------------------------------------------------------- not the race's comparison
@pytest.mark.parametrize(
    ("metric", "baseline", "differs"),
    [("test_acc", "none", "baseline `none`"), ("val_acc", None, "metric `val_acc`")],
)
def test_another_metric_or_baseline_keeps_the_fixed_tests_with_a_caveat(
    raced_store: str, tmp_path: Path, metric: str, baseline: str | None, differs: str
) -> None:
    result = write_report(
        "synth", raced_store, tmp_path, metric=metric, baseline=baseline, n_resamples=RESAMPLES
    )
    table = result.comparisons
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    assert (table["primary_test"] == "paired_t").all() and table["p_holm"].notna().all()
    (caveat,) = [c for c in result.caveats if "seeds were raced" in c]
    assert differs in caveat and "not valid after that stopping" in caveat
    assert "--metric test_acc --baseline dropblock" in caveat
    md = result.markdown.read_text()
    assert "seeds were raced" in md and "- race: the seed phase was a race" in md
    assert "not the race's comparison" in md and "| difference [95% CI] |" in md
    assert "figures/race.png" in md  # how the seeds were stopped, on the race's own comparison


def test_publishing_against_another_baseline_keeps_the_races_decisions(tmp_path: Path) -> None:
    uri = make_store(tmp_path)
    client = MlflowClient(tracking_uri=uri)
    result = write_report("synth", uri, tmp_path / "rep", baseline="none", n_resamples=RESAMPLES)
    parent = str(result.runs.loc[(result.runs["phase"] == PHASE_SEEDS) & (result.runs["role"] == "parent"),
                                 "run_id"].iloc[0])  # fmt: skip
    before = client.get_run(parent).data.tags
    assert publish_report(result, client) == parent
    after = client.get_run(parent)
    race_decisions = {k: v for k, v in before.items() if k.startswith(DECISION_TAG_PREFIX)}
    assert race_decisions and {k: after.data.tags.get(k) for k in race_decisions} == race_decisions
    assert (
        DECISION_TAG_PREFIX + "dropblock" not in after.data.tags
    )  # the other baseline's rows: not decisions
    assert BASELINE_TAG not in after.data.tags and not after.data.metrics
    assert after.data.tags[DESCRIPTION_TAG].startswith(RESULT_HEADING)  # its table is still published


# ----------------------------------------------------------------------------- a fixed design
def test_a_fixed_design_has_no_race_in_its_report(tmp_path: Path) -> None:
    uri = make_store(tmp_path, raced=False)
    result = write_report("synth", uri, tmp_path / "rep", n_resamples=RESAMPLES)
    assert list(result.comparisons.columns) == list(COMPARISON_COLUMNS)
    assert "race" not in result.figures and not (tmp_path / "rep" / "figures" / "race.png").exists()
    md = result.markdown.read_text()
    assert "race" not in md.lower() and "anytime" not in md
    assert "every arm ran the same seeds [1, 2, 3, 4, 5, 6, 7, 8]" in md
    assert (result.comparisons["primary_test"] == "paired_t").all()
    # the same runs with a race's tag but no look recorded: fixed-n tests, and the caveat says why
    client = MlflowClient(tracking_uri=uri)
    parent = str(result.runs.loc[(result.runs["phase"] == PHASE_SEEDS) & (result.runs["role"] == "parent"),
                                 "run_id"].iloc[0])  # fmt: skip
    client.set_tag(parent, RACE_TAG, race_tag(DESIGN))
    again = write_report("synth", uri, tmp_path / "again", n_resamples=RESAMPLES)
    assert list(again.comparisons.columns) == list(COMPARISON_COLUMNS) and "race" not in again.figures
    (caveat,) = [c for c in again.caveats if "seeds were raced" in c]
    assert "no look of the race was recorded" in caveat
