"""Study spec: parsing, ``--set`` overrides, one-line errors, and the shipped ``search_spaces/`` files.

Everything goes through ``spec_from_dict`` and ``load_study_spec``; nothing here starts Ray.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from rblock_tune.config import config_from_dict, flatten_config
from rblock_tune.errors import ConfigError
from rblock_tune.tuning import (
    DIMENSION_TYPES,
    REPORTED_METRICS,
    Arm,
    Dimension,
    FailureSpec,
    ReportSpec,
    ResourceSpec,
    SchedulerSpec,
    SearchSpec,
    StudySpec,
    load_study_spec,
    search_seeds,
    spec_from_dict,
)

ROOT = Path(__file__).resolve().parents[2]
SPACES = ROOT / "search_spaces"
SPEC_FILES = sorted(SPACES.glob("*.yaml"))
RBLOCK_VARIANTS = {"bdrop_dml", "sdrop_dml"}

# A valid spec that exercises every section; each error case below changes one thing in a copy.
FULL: dict[str, Any] = {
    "name": "study-1",
    "base": {
        "data": {"name": "synthetic", "val_size": 100},
        "model": {"name": "resnet8"},
        "reg": {"variant": "bdrop_dml", "alpha": 1.0, "drop_prob": 0.1, "block_size": 3},
        "train": {"epochs": 4},
    },
    "metric": "val_acc",
    "space": {
        "reg.variant": {"type": "categorical", "values": ["dropblock", "bdrop_dml", "sdrop_dml"]},
        "reg.alpha": {
            "type": "loguniform",
            "low": 0.1,
            "high": 10,
            "when": {"reg.variant": ["bdrop_dml", "sdrop_dml"]},
        },
        "reg.drop_prob": {"type": "uniform", "low": 0.05, "high": 0.45},
        "reg.block_size": {"type": "int", "low": 1, "high": 7, "step": 2},
    },
    "search": {"algorithm": "tpe", "num_samples": 8, "max_concurrent": 2, "seed": 0},
    "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
    "resources": {"cpus": 1, "gpus": 0},
    "failures": {"retries": 2},
    "seeds": {
        "top_k": 1,
        "n_seeds": 3,
        "arms": [
            {"label": "dropblock", "set": {"reg.variant": "dropblock"}},
            {"label": "none", "set": {"reg.variant": "none"}},
        ],
    },
}


def full() -> dict[str, Any]:
    return copy.deepcopy(FULL)


def minimal(**top: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"name": "t", "base": {"data": {"name": "synthetic", "val_size": 100}}}
    raw.update(top)
    return raw


def one_line(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    message = str(exc.value)
    assert message, "empty error message"
    assert "\n" not in message, f"error message spans lines: {message!r}"
    return message


def write(tmp_path: Path, raw: dict[str, Any], name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# --- loading --------------------------------------------------------------------------------------


def test_quickstart_loads() -> None:
    spec = load_study_spec(SPACES / "quickstart.yaml")
    assert isinstance(spec, StudySpec)
    assert spec.name == "quickstart"
    assert (spec.base.data.name, spec.base.data.subset, spec.base.data.val_size) == ("cifar10", 2000, 1000)
    assert spec.base.model.name == "resnet8"
    assert spec.base.train.epochs == 2
    assert (spec.metric, spec.mode) == ("val_acc", "max")
    assert [(d.key, d.type) for d in spec.space] == [
        ("reg.variant", "categorical"),
        ("reg.alpha", "loguniform"),
        ("reg.drop_prob", "uniform"),
        ("reg.block_size", "categorical"),
    ]
    assert spec.space[0].values == ("bdrop_dml", "sdrop_dml")
    assert (spec.space[1].low, spec.space[1].high) == (0.1, 10.0)
    assert spec.space[3].values == (1, 3, 5, 7)
    assert spec.search == SearchSpec("tpe", 8, 2, 0, ())
    assert spec.scheduler == SchedulerSpec("asha", 1, 2.0, None)
    assert spec.search_epochs == 2 and spec.seed_epochs == 2
    assert spec.resources == ResourceSpec(1.0, 0.0)
    assert spec.failures == FailureSpec(2)
    assert spec.seeds is not None
    # the seed phase's seeds start after the search's (base.seed 0): no search trial is counted again
    assert search_seeds(spec) == [0]
    assert (spec.seeds.top_k, spec.seeds.count, spec.seeds.seed_list(search_seeds(spec))) == (
        1,
        5,
        [1, 2, 3, 4, 5],
    )
    design = spec.race_design()  # the quickstart races: 3 to 5 seeds per arm against DropBlock
    assert design is not None and (design["min_seeds"], design["max_seeds"], design["baseline"]) == (
        3,
        5,
        "dropblock",
    )
    assert spec.seeds.arms == (
        Arm("dropblock", {"reg.variant": "dropblock", "reg.drop_prob": 0.1, "reg.block_size": 3}),
        Arm("none", {"reg.variant": "none"}),
    )
    assert spec.report == ReportSpec(metric="test_acc", baseline="dropblock", significance=0.05)


def test_full_spec_parses_every_section() -> None:
    spec = spec_from_dict(full())
    assert spec.name == "study-1"
    assert spec.base == config_from_dict(FULL["base"])
    assert [d.key for d in spec.space] == ["reg.variant", "reg.alpha", "reg.drop_prob", "reg.block_size"]
    assert spec.search == SearchSpec("tpe", 8, 2, 0, ())
    assert spec.scheduler == SchedulerSpec("asha", 1, 2.0, None)
    assert spec.resources == ResourceSpec(1.0, 0.0)
    assert spec.failures == FailureSpec(2)
    assert spec.seeds is not None and [a.label for a in spec.seeds.arms] == ["dropblock", "none"]
    assert spec.raw == FULL


def test_reported_metrics_and_their_direction() -> None:
    assert REPORTED_METRICS == {
        "val_acc": "max",
        "val_loss": "min",
        "train_acc": "max",
        "train_loss": "min",
        "train_ce": "min",
        "consistency_kl_own": "min",
        "consistency_kl_probe": "min",
    }


def test_defaults() -> None:
    spec = spec_from_dict(minimal())
    assert (spec.metric, spec.mode) == ("val_acc", "max")
    assert spec.space == ()
    assert spec.search == SearchSpec()
    assert (spec.search.algorithm, spec.search.num_samples, spec.search.max_concurrent) == ("tpe", 8, 2)
    assert spec.scheduler == SchedulerSpec()
    assert (spec.scheduler.type, spec.scheduler.grace_period, spec.scheduler.reduction_factor) == (
        "asha",
        1,
        2.0,
    )
    assert spec.resources == ResourceSpec(1.0, 0.0)
    assert spec.failures.retries == 2
    assert spec.seeds is None
    assert spec.report is None
    assert spec.search_epochs == spec.base.train.epochs == 200


@pytest.mark.parametrize(("metric", "mode"), sorted(REPORTED_METRICS.items()))
def test_mode_follows_the_metric(metric: str, mode: str) -> None:
    assert spec_from_dict(minimal(metric=metric)).mode == mode


def test_explicit_mode_wins() -> None:
    assert spec_from_dict(minimal(metric="val_loss", mode="max")).mode == "max"


def test_every_dimension_type() -> None:
    assert set(DIMENSION_TYPES) == {"uniform", "loguniform", "int", "categorical"}
    spec = spec_from_dict(
        minimal(
            space={
                "reg.drop_prob": {"type": "uniform", "low": 0.05, "high": 0.45},
                "reg.alpha": {"type": "loguniform", "low": 0.1, "high": 10},
                "reg.block_size": {"type": "int", "low": 1, "high": 7},
                "data.crop_padding": {"type": "int", "low": 0, "high": 8, "step": 4},
                "reg.variant": {"type": "categorical", "values": ["dropblock", "sdrop_dml"]},
            }
        )
    )
    uniform, loguniform, integer, stepped, categorical = spec.space
    assert uniform == Dimension("reg.drop_prob", "uniform", 0.05, 0.45)
    assert loguniform == Dimension("reg.alpha", "loguniform", 0.1, 10.0)
    assert integer == Dimension("reg.block_size", "int", 1.0, 7.0)
    assert stepped == Dimension("data.crop_padding", "int", 0.0, 8.0, step=4)
    assert categorical == Dimension("reg.variant", "categorical", values=("dropblock", "sdrop_dml"))
    assert uniform.possible_values() is None
    assert loguniform.possible_values() is None
    assert integer.possible_values() == (1, 2, 3, 4, 5, 6, 7)
    assert stepped.possible_values() == (0, 4, 8)
    assert categorical.possible_values() == ("dropblock", "sdrop_dml")


def test_yaml_exponent_notation_is_a_number(tmp_path: Path) -> None:
    # YAML 1.1 reads 1e-3 (no dot) as a string; a range bound must still be a number.
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: t\nbase: {data: {name: synthetic, val_size: 100}}\n"
        "space:\n  train.lr: {type: loguniform, low: 1e-3, high: 1e-1}\n"
    )
    (dim,) = load_study_spec(path).space
    assert (dim.low, dim.high) == (0.001, 0.1)


def test_list_is_shorthand_for_categorical() -> None:
    short = spec_from_dict(minimal(space={"reg.block_size": [1, 3, 5, 7]}))
    long = spec_from_dict(minimal(space={"reg.block_size": {"type": "categorical", "values": [1, 3, 5, 7]}}))
    assert short.space == long.space == (Dimension("reg.block_size", "categorical", values=(1, 3, 5, 7)),)


def test_condition_on_an_earlier_dimension() -> None:
    raw = minimal(
        space={
            "reg.variant": ["dropblock", "bdrop_dml", "sdrop_dml"],
            "reg.alpha": {
                "type": "loguniform",
                "low": 0.1,
                "high": 10,
                "when": {"reg.variant": ["bdrop_dml", "sdrop_dml"]},
            },
            "reg.block_size": {"type": "categorical", "values": [3, 5], "when": {"reg.variant": "dropblock"}},
        }
    )
    variant, alpha, block = spec_from_dict(raw).space
    assert variant.when == ()
    assert alpha.when == (("reg.variant", ("bdrop_dml", "sdrop_dml")),)
    assert block.when == (("reg.variant", ("dropblock",)),)  # a scalar is a one-value condition


def test_condition_on_a_fixed_base_key() -> None:
    raw = minimal(
        space={
            "reg.alpha": {
                "type": "loguniform",
                "low": 0.1,
                "high": 10,
                "when": {"reg.variant": ["bdrop_dml", "sdrop_dml"]},
            }
        }
    )
    raw["base"]["reg"] = {"variant": "sdrop_dml"}
    (alpha,) = spec_from_dict(raw).space
    assert alpha.when == (("reg.variant", ("bdrop_dml", "sdrop_dml")),)


def test_condition_on_an_earlier_int_dimension() -> None:
    raw = minimal(
        space={
            "reg.block_size": {"type": "int", "low": 1, "high": 7, "step": 2},
            "reg.drop_prob": {
                "type": "uniform",
                "low": 0.05,
                "high": 0.2,
                "when": {"reg.block_size": [5, 7]},
            },
        }
    )
    assert spec_from_dict(raw).space[1].when == (("reg.block_size", (5, 7)),)


def test_grid_with_finite_dimensions() -> None:
    raw = minimal(
        space={
            "reg.variant": ["bdrop_dml", "sdrop_dml"],
            "reg.block_size": {"type": "int", "low": 1, "high": 3},
        },
        search={"algorithm": "grid"},
    )
    assert spec_from_dict(raw).search.algorithm == "grid"


def test_random_search_and_starting_points() -> None:
    raw = full()
    raw["search"].update(
        algorithm="random", points=[{"reg.variant": "sdrop_dml", "reg.alpha": 2.0, "reg.block_size": 5}]
    )
    search = spec_from_dict(raw).search
    assert search.algorithm == "random"
    assert search.points == ({"reg.variant": "sdrop_dml", "reg.alpha": 2.0, "reg.block_size": 5},)


def test_report_settings() -> None:
    raw = full()
    raw["report"] = {"metric": "val_acc", "baseline": "none", "significance": 0.01}
    assert spec_from_dict(raw).report == ReportSpec("val_acc", "none", 0.01)
    raw["report"] = {"baseline": "top1"}  # a search winner can be the baseline too
    assert spec_from_dict(raw).report == ReportSpec("test_acc", "top1", 0.05)
    raw["report"] = False
    assert spec_from_dict(raw).report is None
    del raw["seeds"]  # without a seed phase the report compares the searched variants
    raw["report"] = {"baseline": "dropblock"}
    assert spec_from_dict(raw).report == ReportSpec("test_acc", "dropblock", 0.05)


def test_scheduler_budget_fifo_and_fractional_gpus() -> None:
    raw = full()
    raw["scheduler"] = {"type": "asha", "grace_period": 2, "reduction_factor": 3, "budget": 3}
    raw["resources"] = {"cpus": 2, "gpus": 0.25}
    raw["failures"] = {"retries": 0}
    raw["report"] = False
    spec = spec_from_dict(raw)
    assert spec.scheduler == SchedulerSpec("asha", 2, 3.0, 3)
    assert spec.search_epochs == 3 and spec.seed_epochs == 4
    assert spec.resources == ResourceSpec(2.0, 0.25)
    assert spec.failures.retries == 0
    assert spec.report is None
    # FIFO runs every trial to the budget: a grace period means nothing there.
    raw["scheduler"] = {"type": "fifo", "grace_period": 10}
    assert spec_from_dict(raw).scheduler.type == "fifo"


def test_seed_phase() -> None:
    raw = full()
    raw["seeds"] = {
        "top_k": 0,
        "seeds": [7, 3, 11],
        "epochs": 6,
        "arms": [
            {"label": "db", "from_study": "other-study.v2", "set": {"reg.variant": "dropblock"}},
            {"label": "plain"},
        ],
    }
    spec = spec_from_dict(raw)
    assert spec.seeds is not None
    assert spec.seeds.seed_list() == [7, 3, 11]  # explicit seeds, in the given order
    assert spec.seed_epochs == 6 and spec.search_epochs == 4
    assert spec.seeds.arms == (
        Arm("db", {"reg.variant": "dropblock"}, "other-study.v2"),
        Arm("plain", {}, None),
    )
    # no search phase: no seed selected anything, so the seeds start at 0
    no_search = spec_from_dict(minimal(seeds={"n_seeds": 4}))
    assert search_seeds(no_search) == [] and no_search.seeds.seed_list([]) == [0, 1, 2, 3]  # type: ignore[union-attr]


def test_racing_seed_phase() -> None:
    raw = full()
    raw["seeds"].pop("n_seeds")
    raw["seeds"]["race"] = {"max_seeds": 6, "margin": 0.005}
    raw["report"] = {"baseline": "dropblock", "metric": "val_loss", "significance": 0.1}
    spec = spec_from_dict(raw)
    assert spec.race_design() == {
        "alpha": 0.1,  # the report's significance
        "margin": 0.005,
        "min_seeds": 3,
        "max_seeds": 6,
        "futility": 0.6,
        "statistic": "t",
        "metric": "val_loss",  # the report's metric, in its direction
        "mode": "min",
        "baseline": "dropblock",
    }
    assert spec.seeds is not None and len(spec.seeds.seed_list([0])) == 6
    # max_seeds defaults to the fixed design's seeds; an explicit list is cut to max_seeds
    default = full()
    default["seeds"]["race"] = {"baseline": "none", "alpha": 0.01}
    design = spec_from_dict(default).race_design()
    assert design is not None and design["max_seeds"] == 3 and design["alpha"] == 0.01
    assert design["metric"] == "test_acc" and design["mode"] == "max"
    listed = full()
    listed["seeds"].pop("n_seeds")
    listed["seeds"].update(seeds=[9, 4, 7, 5], race={"max_seeds": 3, "baseline": "none"})
    assert spec_from_dict(listed).seeds.seed_list() == [9, 4, 7]  # type: ignore[union-attr]
    assert spec_from_dict(full()).race_design() is None  # no race: a fixed design
    off = full()
    off["seeds"]["race"] = False
    assert spec_from_dict(off).race_design() is None


def test_train_metric_needs_no_validation_set() -> None:
    raw = minimal(metric="train_loss")
    raw["base"]["data"]["val_size"] = 0
    assert spec_from_dict(raw).mode == "min"


def test_spec_from_dict_does_not_mutate_its_input() -> None:
    raw = full()
    spec_from_dict(raw)
    assert raw == FULL


# --- --set overrides ------------------------------------------------------------------------------


def test_overrides_by_dotted_path() -> None:
    spec = load_study_spec(
        SPACES / "quickstart.yaml",
        [
            "search.num_samples=4",
            "space.reg.alpha.low=0.2",
            "base.data.root=/x",
            "seeds.n_seeds=5",
            "search.seed=7",
            "base.seed=3",
            "scheduler.type=fifo",
            "resources.gpus=0.5",
        ],
    )
    assert spec.search.num_samples == 4
    assert spec.search.seed == 7
    alpha = next(d for d in spec.space if d.key == "reg.alpha")
    assert (alpha.type, alpha.low, alpha.high) == ("loguniform", 0.2, 10.0)
    assert spec.base.data.root == "/x"
    assert spec.base.seed == 3
    assert spec.base.data.subset == 2000  # untouched keys keep the file's values
    assert spec.seeds is not None and spec.seeds.seed_list() == [0, 1, 2, 3, 4]
    assert spec.scheduler.type == "fifo"
    assert spec.resources.gpus == 0.5


def test_overrides_replace_a_dimension_and_set_lists(tmp_path: Path) -> None:
    path = write(tmp_path, full())
    spec = load_study_spec(
        path,
        [
            "space.reg.block_size=[1, 5]",
            "space.data.flip=[true, false]",
            "seeds.seeds=[3, 1, 4]",
            "space.reg.drop_prob.high=0.3",
        ],
    )
    dims = {d.key: d for d in spec.space}
    assert dims["reg.block_size"] == Dimension("reg.block_size", "categorical", values=(1, 5))
    assert dims["data.flip"] == Dimension("data.flip", "categorical", values=(True, False))
    assert dims["reg.drop_prob"].high == 0.3
    assert spec.seeds is not None and spec.seeds.seed_list() == [3, 1, 4]


def test_overrides_create_missing_sections(tmp_path: Path) -> None:
    path = write(tmp_path, minimal())
    spec = load_study_spec(
        path,
        [
            "scheduler.type=fifo",
            "failures.retries=5",
            "base.reg.variant=dropblock",
            "space.reg.drop_prob.type=uniform",
            "space.reg.drop_prob.low=0.1",
            "space.reg.drop_prob.high=0.2",
        ],
    )
    assert spec.scheduler.type == "fifo"
    assert spec.failures.retries == 5
    assert spec.base.reg.variant == "dropblock"
    assert spec.space == (Dimension("reg.drop_prob", "uniform", 0.1, 0.2),)


def test_overrides_do_not_touch_the_file() -> None:
    before = (SPACES / "quickstart.yaml").read_text()
    load_study_spec(SPACES / "quickstart.yaml", ["search.num_samples=2"])
    assert (SPACES / "quickstart.yaml").read_text() == before
    assert load_study_spec(SPACES / "quickstart.yaml").search.num_samples == 8


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("seed=1", ["unknown key 'seed'", "did you mean 'seeds'"]),
        ("serach.num_samples=4", ["unknown key 'serach'", "did you mean 'search'"]),
        ("search.num_sample=4", ["'search.num_sample'", "did you mean 'search.num_samples'"]),
        ("search.num_samples=0", ["search.num_samples=0", ">= 1"]),
        ("seeds.n_seeds=0", ["seeds.n_seeds=0", ">= 1"]),
        ("space.reg.alpha.lo=0.2", ["'space.reg.alpha.lo'", "did you mean 'space.reg.alpha.low'"]),
        ("space.reg.alpha.low=20", ["space.reg.alpha", "low=20", "high=10"]),
        ("space.reg.alpah.low=1", ["space.reg.alpah.low"]),
        ("base.reg.alpah=1", ["'reg.alpah'", "did you mean 'reg.alpha'"]),
        ("base.reg.drop_prob=1.5", ["reg.drop_prob=1.5", "[0, 1)"]),
        ("search.num_samples", ["search.num_samples", "key=value"]),
    ],
)
def test_override_errors_are_one_line(override: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as exc:
        load_study_spec(SPACES / "quickstart.yaml", [override])
    message = one_line(exc)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_study_spec(tmp_path / "nope.yaml")
    assert "nope.yaml" in one_line(exc) and "does not exist" in str(exc.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError) as exc:
        load_study_spec(bad)
    assert "bad.yaml" in one_line(exc) and "not valid YAML" in str(exc.value)


# --- one-line errors that name the key ------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _space(key: str, value: Any) -> Mutation:
    return lambda raw: raw["space"].__setitem__(key, value)


def _dim(key: str, **fields: Any) -> Mutation:
    return lambda raw: raw["space"][key].update(fields)


def _section(section: str, **fields: Any) -> Mutation:
    return lambda raw: raw[section].update(fields)


def _base(section: str, **fields: Any) -> Mutation:
    return lambda raw: raw["base"].setdefault(section, {}).update(fields)


def _arm(i: int, **fields: Any) -> Mutation:
    return lambda raw: raw["seeds"]["arms"][i].update(fields)


def _top(key: str, value: Any) -> Mutation:
    return lambda raw: raw.__setitem__(key, value)


def _drop_variant_dim(raw: dict[str, Any]) -> None:
    del raw["space"]["reg.variant"]
    raw["space"]["reg.alpha"]["when"] = {"reg.variant": ["sdrop_dml"]}  # base variant is bdrop_dml


def _later_condition(raw: dict[str, Any]) -> None:
    raw["space"]["reg.alpha"]["when"] = {"reg.block_size": [3]}  # reg.block_size comes after reg.alpha


ERROR_CASES: list[tuple[str, Mutation, list[str]]] = [
    # unknown keys, with the closest valid key
    ("top-level key", _top("serach", {"num_samples": 4}), ["serach", "did you mean", "search"]),
    ("search key", _section("search", num_sample=4), ["'search.num_sample'", "'search.num_samples'"]),
    (
        "scheduler key",
        _section("scheduler", grace_peroid=2),
        ["'scheduler.grace_peroid'", "'scheduler.grace_period'"],
    ),
    ("resources key", _section("resources", gpu=1), ["'resources.gpu'", "'resources.gpus'"]),
    ("failures key", _section("failures", retry=1), ["'failures.retry'", "'failures.retries'"]),
    ("seeds key", _section("seeds", nseeds=3), ["'seeds.nseeds'", "'seeds.n_seeds'"]),
    ("arm key", _arm(0, lable="x"), ["'seeds.arms[0].lable'", "'seeds.arms[0].label'"]),
    ("dimension key", _dim("reg.alpha", hihg=3), ["'space.reg.alpha.hihg'", "'space.reg.alpha.high'"]),
    (
        "space trial key",
        _space("reg.alpah", {"type": "uniform", "low": 0.1, "high": 1}),
        ["space.reg.alpah", "'reg.alpah' is not a trial config key", "did you mean 'space.reg.alpha'"],
    ),
    ("base trial key", _base("reg", alpah=2), ["base:", "'reg.alpah'", "did you mean 'reg.alpha'"]),
    ("base section", _base("optim", lr=0.1), ["base:", "unknown key 'optim'"]),
    ("condition key", _dim("reg.alpha", when={"reg.foo": 1}), ["space.reg.alpha.when.reg.foo"]),
    ("arm set key", _arm(1, set={"reg.alpah": 1}), ["seeds.arms[1].set.reg.alpah"]),
    # sections of the wrong shape
    ("space not a mapping", _top("space", ["reg.alpha"]), ["space must be a mapping"]),
    ("base not a mapping", _top("base", [1]), ["base must be a mapping"]),
    ("search not a mapping", _top("search", 5), ["search must be a mapping"]),
    ("dimension not a mapping", _space("reg.alpha", 0.5), ["space.reg.alpha must be a mapping"]),
    ("arms not a list", _section("seeds", arms={"label": "x"}), ["seeds.arms must be a list"]),
    ("arm not a mapping", _section("seeds", arms=["none"]), ["seeds.arms[0] must be a mapping"]),
    # dimensions
    ("dimension type", _dim("reg.drop_prob", type="gaussian"), ["space.reg.drop_prob.type='gaussian'"]),
    ("low == high", _dim("reg.drop_prob", low=0.4, high=0.4), ["space.reg.drop_prob", "low=0.4", "high=0.4"]),
    ("low > high", _dim("reg.drop_prob", low=0.6), ["space.reg.drop_prob", "low=0.6", "high=0.45"]),
    ("int low > high", _dim("reg.block_size", low=9), ["space.reg.block_size", "low=9", "high=7"]),
    ("infinite high", _dim("reg.alpha", high=math.inf), ["space.reg.alpha", "high=inf"]),
    ("loguniform low 0", _dim("reg.alpha", low=0), ["space.reg.alpha.low=0", "low > 0"]),
    ("loguniform low < 0", _dim("reg.alpha", low=-1), ["space.reg.alpha.low=-1", "low > 0"]),
    ("missing high", lambda raw: raw["space"]["reg.drop_prob"].pop("high"), ["space.reg.drop_prob.high"]),
    ("low not a number", _dim("reg.drop_prob", low="small"), ["space.reg.drop_prob.low='small'"]),
    ("int low not an int", _dim("reg.block_size", low=1.5), ["space.reg.block_size.low=1.5"]),
    ("values on uniform", _dim("reg.drop_prob", values=[0.1]), ["space.reg.drop_prob.values"]),
    ("step on uniform", _dim("reg.drop_prob", step=1), ["space.reg.drop_prob.step", "int"]),
    ("step 0", _dim("reg.block_size", step=0), ["space.reg.block_size.step=0", ">= 1"]),
    ("low on categorical", _dim("reg.variant", low=1), ["space.reg.variant.low"]),
    ("empty categorical", _dim("reg.variant", values=[]), ["space.reg.variant.values"]),
    ("empty list shorthand", _space("reg.variant", []), ["space.reg.variant.values"]),
    ("non-scalar value", _dim("reg.variant", values=[["dropblock"]]), ["space.reg.variant.values"]),
    # values the trial config rejects
    ("uniform high 1.5", _dim("reg.drop_prob", high=1.5), ["space.reg.drop_prob", "1.5", "[0, 1)"]),
    (
        "int low 0",
        _dim("reg.block_size", low=0, high=3, step=1),
        ["space.reg.block_size", "reg.block_size=0"],
    ),
    (
        "unknown variant",
        _dim("reg.variant", values=["bdrop_dml", "rblock"]),
        ["space.reg.variant", "'rblock'", "must be one of"],
    ),
    (
        "uniform on an int key",
        _space("reg.block_size", {"type": "uniform", "low": 1, "high": 7}),
        ["space.reg.block_size", "1.0", "wrong type"],
    ),
    ("negative alpha", _space("reg.alpha", [-1.0, 1.0]), ["space.reg.alpha", "-1.0", ">= 0"]),
    # impossible conditions
    (
        "condition value never sampled",
        _dim("reg.alpha", when={"reg.variant": ["random_dml"]}),
        ["space.reg.alpha.when.reg.variant", "can never hold", "space.reg.variant takes only"],
    ),
    (
        "condition on fixed base key",
        _drop_variant_dim,
        ["space.reg.alpha.when.reg.variant", "can never hold", "'bdrop_dml'"],
    ),
    ("condition on a later dimension", _later_condition, ["space.reg.alpha.when.reg.block_size", "before"]),
    ("condition on itself", _dim("reg.alpha", when={"reg.alpha": 1.0}), ["space.reg.alpha.when", "itself"]),
    (
        "empty condition",
        _dim("reg.alpha", when={"reg.variant": []}),
        ["space.reg.alpha.when.reg.variant", "empty"],
    ),
    # metric and mode
    ("metric test_acc", _top("metric", "test_acc"), ["metric='test_acc'", "not reported"]),
    ("metric foo", _top("metric", "foo"), ["metric='foo'", "not reported", "val_acc"]),
    ("val metric without val set", _base("data", val_size=0), ["metric='val_acc'", "base.data.val_size"]),
    ("mode", _top("mode", "maximize"), ["mode='maximize'", "min or max"]),
    # search
    ("algorithm", _section("search", algorithm="bayes"), ["search.algorithm='bayes'"]),
    (
        "grid with continuous",
        _section("search", algorithm="grid"),
        ["search.algorithm=grid", "space.reg.alpha"],
    ),
    ("num_samples 0", _section("search", num_samples=0), ["search.num_samples=0", ">= 1"]),
    ("num_samples float", _section("search", num_samples=2.5), ["search.num_samples=2.5", "integer"]),
    ("num_samples bool", _section("search", num_samples=True), ["search.num_samples=True", "integer"]),
    ("num_samples text", _section("search", num_samples="many"), ["search.num_samples='many'"]),
    ("max_concurrent 0", _section("search", max_concurrent=0), ["search.max_concurrent=0", ">= 1"]),
    ("search seed < 0", _section("search", seed=-1), ["search.seed=-1", ">= 0"]),
    ("points not a list", _section("search", points={"reg.alpha": 1.0}), ["search.points"]),
    (
        "point key not searched",
        _section("search", points=[{"reg.schedule": "constant"}]),
        ["search.points[0].reg.schedule", "not a dimension"],
    ),
    (
        "point bad value",
        _section("search", points=[{"reg.drop_prob": 2.0}]),
        ["search.points[0]", "reg.drop_prob=2.0"],
    ),
    # scheduler
    ("scheduler type", _section("scheduler", type="hyperband"), ["scheduler.type='hyperband'"]),
    ("reduction_factor 1", _section("scheduler", reduction_factor=1), ["scheduler.reduction_factor=", "> 1"]),
    ("reduction_factor 0.5", _section("scheduler", reduction_factor=0.5), ["scheduler.reduction_factor=0.5"]),
    ("grace_period 0", _section("scheduler", grace_period=0), ["scheduler.grace_period=0", ">= 1"]),
    (
        "grace_period > epochs",
        _section("scheduler", grace_period=5),
        ["scheduler.grace_period=5", "4 epochs"],
    ),
    (
        "grace_period > budget",
        _section("scheduler", grace_period=3, budget=2),
        ["scheduler.grace_period=3", "2 epochs"],
    ),
    ("budget 0", _section("scheduler", budget=0), ["scheduler.budget=0", ">= 1"]),
    # resources and failures
    ("negative gpus", _section("resources", gpus=-0.5), ["resources.gpus=-0.5", ">= 0"]),
    ("zero cpus", _section("resources", cpus=0), ["resources.cpus=0", "> 0"]),
    ("gpus text", _section("resources", gpus="one"), ["resources.gpus='one'"]),
    ("test_acc text", _section("search", test_acc="always"), ["search.test_acc='always'", "every_epoch"]),
    ("test_acc number", _section("search", test_acc=1), ["search.test_acc=1", "false, true or every_epoch"]),
    ("threads 0", _section("resources", threads=0), ["resources.threads=0", "auto or a whole number >= 1"]),
    ("threads text", _section("resources", threads="all"), ["resources.threads='all'", "auto"]),
    ("threads float", _section("resources", threads=1.5), ["resources.threads=1.5", "auto"]),
    ("retries < 0", _section("failures", retries=-1), ["failures.retries=-1", ">= 0"]),
    ("retries float", _section("failures", retries=1.5), ["failures.retries=1.5", "integer"]),
    # seed phase
    ("duplicate seeds", _section("seeds", seeds=[1, 2, 1]), ["seeds.seeds=[1, 2, 1]", "repeats"]),
    ("negative seed", _section("seeds", seeds=[0, -1]), ["seeds.seeds[1]=-1", ">= 0"]),
    ("seeds not a list", _section("seeds", seeds=3), ["seeds.seeds", "list"]),
    ("n_seeds 0", _section("seeds", n_seeds=0), ["seeds.n_seeds=0", ">= 1"]),
    ("top_k < 0", _section("seeds", top_k=-1), ["seeds.top_k=-1", ">= 0"]),
    ("seed epochs 0", _section("seeds", epochs=0), ["seeds.epochs=0", ">= 1"]),
    ("top_k 0 and no arms", _section("seeds", top_k=0, arms=[]), ["seeds.top_k", "seeds.arms"]),
    ("duplicate labels", _arm(1, label="dropblock"), ["seeds.arms", "'dropblock', 'dropblock'"]),
    ("reserved label top1", _arm(0, label="top1"), ["seeds.arms[0].label='top1'", "reserved"]),
    ("label with a space", _arm(0, label="drop block"), ["seeds.arms[0].label='drop block'"]),
    ("missing label", lambda raw: raw["seeds"]["arms"][0].pop("label"), ["seeds.arms[0].label=None"]),
    ("arm sets the seed", _arm(1, set={"seed": 3}), ["seeds.arms[1].set.seed"]),
    ("arm bad value", _arm(1, set={"reg.drop_prob": 1.5}), ["seeds.arms[1].set", "reg.drop_prob=1.5"]),
    ("arm from_study name", _arm(0, from_study="../other"), ["seeds.arms[0].from_study='../other'"]),
    # a racing seed phase
    ("race wrong type", _section("seeds", race="yes"), ["seeds.race='yes'", "true/false"]),
    ("race unknown key", _section("seeds", race={"min_seed": 3}), ["seeds.race.min_seed", "min_seeds"]),
    ("race min_seeds 1", _section("seeds", race={"min_seeds": 1}), ["seeds.race.min_seeds=1", ">= 2"]),
    ("race margin < 0", _section("seeds", race={"margin": -0.01}), ["seeds.race.margin=-0.01", ">= 0"]),
    ("race alpha 1", _section("seeds", race={"alpha": 1.0}), ["seeds.race.alpha=1.0", "between 0 and 1"]),
    ("race futility 2", _section("seeds", race={"futility": 2}), ["seeds.race.futility=2", "between 0"]),
    ("race statistic", _section("seeds", race={"statistic": "z"}), ["seeds.race.statistic='z'", "hall"]),
    (
        "race needs a baseline",
        _section("seeds", race=True),
        ["seeds.race needs a baseline", "report.baseline"],
    ),
    (
        "race min above its seeds",
        lambda raw: raw["seeds"].update(race={"min_seeds": 4, "baseline": "none"}),
        ["seeds.race.min_seeds=4", "3 seeds per arm"],
    ),
    (
        "race max_seeds and n_seeds disagree",
        lambda raw: raw["seeds"].update(race={"max_seeds": 8, "baseline": "none"}),
        ["seeds.n_seeds=3", "seeds.race.max_seeds=8", "one of them"],
    ),
    (
        "race max_seeds beyond the listed seeds",
        lambda raw: (
            raw["seeds"].pop("n_seeds"),
            raw["seeds"].update(seeds=[5, 6, 7], race={"max_seeds": 4, "baseline": "none"}),
        ),
        ["seeds.race.max_seeds=4", "lists 3 seeds"],
    ),
    (
        "race baseline not an arm",
        _section("seeds", race={"baseline": "dropout"}),
        ["seeds.race.baseline='dropout'", "top1, dropblock, none"],
    ),
    (
        "race baseline against the report's",
        lambda raw: (
            raw["seeds"].update(race={"baseline": "none"}),
            raw.__setitem__("report", {"baseline": "dropblock"}),
        ),
        ["seeds.race.baseline='none'", "report.baseline='dropblock'"],
    ),
    # name and report
    ("name with a space", _top("name", "my study"), ["name='my study'"]),
    ("empty name", _top("name", ""), ["name=''"]),
    ("missing name", lambda raw: raw.pop("name"), ["name=None"]),
    ("name starting with a dot", _top("name", ".hidden"), ["name='.hidden'"]),
    ("name with a slash", _top("name", "a/b"), ["name='a/b'"]),
    ("report", _top("report", "yes"), ["report='yes'"]),
    ("report unknown key", _top("report", {"metrc": "test_acc"}), ["report.metrc", "report.metric"]),
    ("report metric", _top("report", {"metric": "acc"}), ["report.metric='acc'", "test_acc"]),
    (
        "report significance",
        _top("report", {"significance": 1.5}),
        ["report.significance=1.5", "between 0 and 1"],
    ),
    ("report significance type", _top("report", {"significance": "x"}), ["report.significance='x'"]),
    ("report alpha renamed", _top("report", {"alpha": 0.05}), ["report.alpha is now report.significance"]),
    ("report baseline", _top("report", {"baseline": "dropblok"}), ["report.baseline='dropblok'", "top1"]),
    (
        "report baseline without seeds",
        lambda raw: raw.pop("seeds") and raw.__setitem__("report", {"baseline": "drop"}),
        ["report.baseline='drop'", "a variant", "dropblock"],
    ),
    (
        "report without seeds or variants",
        lambda raw: (raw.pop("seeds"), raw["space"].pop("reg.variant"), raw.__setitem__("report", True)),
        ["report:", "space.reg.variant", "add a seeds phase"],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "fragments"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_invalid_spec_is_one_line_naming_the_key(mutate: Mutation, fragments: list[str]) -> None:
    raw = full()
    mutate(raw)
    with pytest.raises(ConfigError) as exc:
        spec_from_dict(raw)
    message = one_line(exc)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_the_error_cases_start_from_a_valid_spec() -> None:
    spec_from_dict(full())  # otherwise every error case above could pass for the wrong reason


@pytest.mark.parametrize("metric", ["val_acc", "val_loss"])
def test_every_val_metric_needs_a_validation_set(metric: str) -> None:
    raw = minimal(metric=metric)
    raw["base"]["data"]["val_size"] = 0
    with pytest.raises(ConfigError) as exc:
        spec_from_dict(raw)
    assert f"metric={metric!r}" in one_line(exc) and "val_size" in str(exc.value)


def test_top_k_zero_with_arms_is_valid() -> None:
    raw = full()
    raw["seeds"]["top_k"] = 0
    spec = spec_from_dict(raw)
    assert spec.seeds is not None and spec.seeds.top_k == 0 and len(spec.seeds.arms) == 2


# --- regressions: bugs found in _spec.py, now fixed ------------------------------------------------


def test_unknown_top_level_key_message_names_the_key_itself() -> None:
    raw = full()
    raw["serach"] = {}
    with pytest.raises(ConfigError) as exc:
        spec_from_dict(raw)
    assert one_line(exc) == "unknown key 'serach' (did you mean 'search'?)"


def _when_typo(raw: dict[str, Any]) -> None:
    raw["space"]["reg.alpha"]["when"] = {"reg.variantt": ["bdrop_dml"]}


def _set_typo(raw: dict[str, Any]) -> None:
    raw["seeds"]["arms"][1]["set"] = {"reg.variantt": "none"}


def _point_typo(raw: dict[str, Any]) -> None:
    raw["search"]["points"] = [{"reg.variantt": "bdrop_dml"}]


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (_when_typo, "space.reg.alpha.when"),
        (_set_typo, "seeds.arms[1].set"),
        (_point_typo, "search.points[0]"),
    ],
    ids=["when", "arm-set", "point"],
)
def test_suggestion_for_a_dotted_trial_key(mutate: Mutation, where: str) -> None:
    raw = full()
    mutate(raw)
    with pytest.raises(ConfigError) as exc:
        spec_from_dict(raw)
    message = one_line(exc)
    assert f"unknown key '{where}.reg.variantt'" in message
    assert f"did you mean '{where}.reg.variant'?" in message


def test_metric_of_the_wrong_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as exc:
        spec_from_dict(minimal(metric=["val_acc"]))
    assert "metric=['val_acc']" in one_line(exc)


def _name_newline(raw: dict[str, Any]) -> None:
    raw["name"] = "study\n"


def _label_newline(raw: dict[str, Any]) -> None:
    raw["seeds"]["arms"][1]["label"] = "none\n"


def _from_study_newline(raw: dict[str, Any]) -> None:
    raw["seeds"]["arms"][1]["from_study"] = "other\n"


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (_name_newline, "name="),
        (_label_newline, "seeds.arms[1].label="),
        (_from_study_newline, "from_study="),
    ],
    ids=["name", "label", "from_study"],
)
def test_names_with_a_trailing_newline_are_rejected(mutate: Mutation, key: str) -> None:
    raw = full()
    mutate(raw)
    with pytest.raises(ConfigError) as exc:
        spec_from_dict(raw)
    assert key in str(exc.value)


@pytest.mark.parametrize(
    ("section", "key"),
    [("resources", "cpus"), ("resources", "gpus"), ("scheduler", "reduction_factor")],
)
def test_nan_is_out_of_range(section: str, key: str) -> None:
    raw = full()
    raw[section][key] = math.nan
    with pytest.raises(ConfigError) as exc:
        spec_from_dict(raw)
    assert f"{section}.{key}=nan" in one_line(exc)


@pytest.mark.parametrize(
    "point",
    [{"reg.alpha": 100.0}, {"reg.drop_prob": 0.9}, {"reg.block_size": 9}, {"reg.variant": "dropout"}],
    ids=["above-loguniform", "above-uniform", "above-int", "not-a-categorical-value"],
)
def test_starting_point_outside_its_dimension_is_rejected(point: dict[str, Any]) -> None:
    raw = full()
    raw["search"]["points"] = [point]
    (key,) = point
    with pytest.raises(ConfigError) as exc:
        spec_from_dict(raw)
    assert f"search.points[0].{key}" in one_line(exc)


def test_condition_outside_a_continuous_range_is_impossible() -> None:
    raw = full()
    raw["space"]["reg.drop_prob"]["when"] = {"reg.alpha": 100.0}
    with pytest.raises(ConfigError) as exc:
        spec_from_dict(raw)
    assert "space.reg.drop_prob.when.reg.alpha" in one_line(exc)


def test_condition_matches_numbers_by_value() -> None:
    raw = minimal(
        space={
            "reg.alpha": [0.5, 1.0],
            "reg.drop_prob": {"type": "uniform", "low": 0.1, "high": 0.2, "when": {"reg.alpha": 1}},
        }
    )
    assert spec_from_dict(raw).space[1].when == (("reg.alpha", (1,)),)


def test_set_inside_a_list_shorthand_dimension(tmp_path: Path) -> None:
    path = write(tmp_path, minimal(space={"reg.block_size": [1, 3]}))
    try:
        spec = load_study_spec(path, ["space.reg.block_size.values=[1, 5]"])
    except ConfigError as exc:  # a one-line refusal would be fine too
        assert "space.reg.block_size" in str(exc) and "\n" not in str(exc)
    else:
        assert spec.space == (Dimension("reg.block_size", "categorical", values=(1, 5)),)


def test_set_a_condition(tmp_path: Path) -> None:
    path = write(tmp_path, full())
    spec = load_study_spec(path, ["space.reg.alpha.when.reg.variant=[sdrop_dml]"])
    alpha = next(d for d in spec.space if d.key == "reg.alpha")
    assert alpha.when == (("reg.variant", ("sdrop_dml",)),)


def test_set_into_an_empty_space_section(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: t\nbase: {data: {name: synthetic, val_size: 100}}\nspace:\n")
    spec = load_study_spec(
        path, ["space.reg.alpha.type=loguniform", "space.reg.alpha.low=0.2", "space.reg.alpha.high=2"]
    )
    assert spec.space == (Dimension("reg.alpha", "loguniform", 0.2, 2.0),)


# --- the shipped study specs ----------------------------------------------------------------------


def _load_all() -> dict[str, tuple[Path, StudySpec]]:
    return {path.stem: (path, load_study_spec(path)) for path in SPEC_FILES}


def _is_rblock(spec: StudySpec) -> bool:
    variants = {spec.base.reg.variant}
    for dim in spec.space:
        if dim.key == "reg.variant":
            variants = set(dim.values)
    return variants <= RBLOCK_VARIANTS


def test_search_spaces_has_the_paper_settings() -> None:
    names = {p.stem for p in SPEC_FILES}
    expected = {"quickstart"}
    for setting in (
        "cifar10_resnet56",
        "cifar10_vgg16",
        "cifar100_resnet56",
        "cifar100_vgg16",
        "tinyimagenet_preact18",
    ):
        expected |= {setting, f"{setting}_dropblock", f"{setting}_dropout"}
    assert expected <= names, sorted(expected - names)


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.name for p in SPEC_FILES])
def test_every_shipped_spec_loads(path: Path) -> None:
    spec = load_study_spec(path)
    assert spec.name == path.stem  # from_study names a file
    assert spec.base.data.root is None  # users pass --set base.data.root=... or RBLOCK_DATA_DIR
    assert spec.metric == "val_acc" and spec.mode == "max"
    header = path.read_text().split("\nname:")[0]
    assert header.startswith("#"), "a header comment says what the study is"
    assert f"rblock-tune study run search_spaces/{path.name}" in header
    if path.stem != "quickstart":
        assert "GPU-hours" in header
        assert spec.resources.gpus > 0
        assert spec.base.data.name in ("cifar10", "cifar100", "tinyimagenet")
        assert spec.base.data.subset is None  # full size
    # and with the overrides a user passes
    spec = load_study_spec(path, ["base.data.root=/data", "search.num_samples=4"])  # >= seeds.top_k
    assert (spec.base.data.root, spec.search.num_samples) == ("/data", 4)


def test_every_shipped_spec_is_in_the_readme() -> None:
    readme = (SPACES / "README.md").read_text()
    for path in SPEC_FILES:
        assert f"`{path.name}`" in readme, path.name


def test_shipped_search_ranges_are_the_specs() -> None:
    for stem, (_, spec) in _load_all().items():
        dims = {d.key: d for d in spec.space}
        if "reg.alpha" in dims:
            assert dims["reg.alpha"] == Dimension("reg.alpha", "loguniform", 0.1, 10.0), stem
        if "reg.drop_prob" in dims:
            assert dims["reg.drop_prob"] == Dimension("reg.drop_prob", "uniform", 0.05, 0.45), stem
        if "reg.block_size" in dims:
            assert dims["reg.block_size"].possible_values() == (1, 3, 5, 7), stem


def test_rblock_studies_pair_with_baselines_of_the_same_budget() -> None:
    specs = _load_all()
    full_size = {stem: spec for stem, (_, spec) in specs.items() if stem != "quickstart"}
    rblock = {stem: spec for stem, spec in full_size.items() if _is_rblock(spec)}
    assert len(rblock) == 5
    for stem, spec in rblock.items():
        assert spec.seeds is not None, stem
        assert (spec.seeds.top_k, spec.seeds.n_seeds) == (3, 10), stem
        assert {d.key for d in spec.space} == {"reg.variant", "reg.alpha", "reg.drop_prob", "reg.block_size"}
        labels = {a.label: a for a in spec.seeds.arms}
        assert labels["none"].overrides == {"reg.variant": "none"} and labels["none"].from_study is None
        # every baseline of the same dataset and model (the files without a seed phase) is an arm
        same_setting = {
            other
            for other, o in full_size.items()
            if other != stem
            and o.seeds is None
            and (o.base.data.name, o.base.model.name) == (spec.base.data.name, spec.base.model.name)
        }
        from_studies = {a.from_study for a in spec.seeds.arms if a.from_study is not None}
        assert from_studies == same_setting, stem
        assert {f"{stem}_dropblock", f"{stem}_dropout"} <= from_studies, stem


def test_from_study_arms_name_another_file_with_the_same_budget() -> None:
    specs = _load_all()
    checked = 0
    for stem, (_, spec) in specs.items():
        if spec.seeds is None:
            continue
        for arm in spec.seeds.arms:
            if arm.from_study is None:
                continue
            assert arm.from_study != stem, f"{stem}: arm {arm.label} names its own study"
            assert arm.from_study in specs, (
                f"{stem}: arm {arm.label} names an unknown study {arm.from_study!r}"
            )
            _, baseline = specs[arm.from_study]
            where = f"{stem} arm {arm.label} ({arm.from_study})"
            assert baseline.search.num_samples == spec.search.num_samples, where
            assert baseline.scheduler == spec.scheduler, where
            assert baseline.base.train.epochs == spec.base.train.epochs, where
            assert baseline.search_epochs == spec.search_epochs, where
            assert baseline.search.algorithm == spec.search.algorithm, where
            assert baseline.base.train == spec.base.train, where  # the same training recipe
            assert baseline.base.data == spec.base.data, where
            assert baseline.base.model == spec.base.model, where
            assert baseline.seeds is None, f"{where}: the baseline's winner runs in {stem}'s seed phase"
            # The arm gets the baseline winner's searched keys on top of this file's base, so every
            # other key where the two bases differ must be set by the arm to the baseline's value, and
            # the arm must not override a key the baseline searched.
            searched = {d.key for d in baseline.space}
            assert not searched & set(arm.overrides), where
            mine, theirs = flatten_config(spec.base), flatten_config(baseline.base)
            for key, value in theirs.items():
                if key not in searched and key != "seed" and mine[key] != value:
                    assert arm.overrides.get(key) == value, f"{where}: {key} must be set to {value!r}"
            checked += 1
    assert checked >= 10  # at least two baselines for each of the five settings


def test_study_names_are_unique() -> None:
    names = [load_study_spec(p).name for p in SPEC_FILES]
    assert len(names) == len(set(names))


# --- fair comparisons -----------------------------------------------------------------------------


def test_default_seed_phase_seeds_are_disjoint_from_the_search_seeds() -> None:
    raw = full()
    raw["base"]["seed"] = 5
    spec = spec_from_dict(raw)
    assert spec.seeds is not None and search_seeds(spec) == [5]
    assert spec.seeds.seed_list(search_seeds(spec)) == [6, 7, 8]
    assert spec.seeds.seed_list([0, 12]) == [13, 14, 15]  # after every search seed (from_study ones too)


def test_explicit_seeds_reusing_a_search_seed_are_refused_unless_allowed() -> None:
    raw = full()
    raw["seeds"]["seeds"] = [0, 1, 2]
    with pytest.raises(ConfigError) as exc:
        spec_from_dict(raw)
    message = one_line(exc)
    assert "seeds.seeds=[0, 1, 2] reuses seed(s) [0] of the search trials (base.seed=0)" in message
    assert "seeds.allow_search_seeds: true" in message
    raw["seeds"]["allow_search_seeds"] = True
    spec = spec_from_dict(raw)
    assert spec.seeds is not None and spec.seeds.allow_search_seeds and spec.seeds.seed_list([0]) == [0, 1, 2]
    raw["seeds"]["allow_search_seeds"] = "yes"
    with pytest.raises(ConfigError, match=r"seeds\.allow_search_seeds='yes' has the wrong type"):
        spec_from_dict(raw)
    # without a search phase there is no search seed to reuse
    assert spec_from_dict(minimal(seeds={"seeds": [0, 1]})).seeds is not None
    # the check for other studies' search seeds (from_study arms) runs when the study starts
    raw = full()
    raw["seeds"]["seeds"] = [3, 4]
    seeds = spec_from_dict(raw).seeds
    assert seeds is not None
    with pytest.raises(ConfigError, match=r"reuses seed\(s\) \[3\] of study 'x'"):
        seeds.check_disjoint([3], "study 'x'")


def test_searching_the_seed_is_refused() -> None:
    raw = full()
    raw["space"]["seed"] = [0, 1, 2]
    with pytest.raises(ConfigError) as exc:
        spec_from_dict(raw)
    assert "space.seed is not allowed" in one_line(exc)


def test_dimensions_are_checked_in_combination() -> None:
    """p = 0.6 is a valid dropblock rate but not a bdrop_dml one on the submodel basis (2p >= 1)."""
    raw = full()
    raw["base"]["reg"]["variant"] = "dropblock"  # each dimension alone is valid with this base
    raw["space"]["reg.drop_prob"]["high"] = 0.6
    with pytest.raises(ConfigError) as exc:
        spec_from_dict(raw)
    message = one_line(exc)
    assert "space: reg.variant='bdrop_dml' with reg.drop_prob=0.6 is invalid" in message
    assert "reg.rate_basis=shared" in message
    raw["space"]["reg.drop_prob"]["when"] = {"reg.variant": ["dropblock"]}  # never sampled with bdrop_dml
    assert spec_from_dict(raw).space[2].high == 0.6
    raw = full()
    raw["space"]["reg.drop_prob"]["high"] = 0.6
    raw["base"]["reg"]["rate_basis"] = "shared"  # p is the shared mask's rate: 0.6 is fine
    assert spec_from_dict(raw).base.reg.rate_basis == "shared"
    # three dimensions: every pair is valid with the base (shared basis), only all three together fail
    raw["space"] = {
        "reg.variant": ["dropblock", "bdrop_dml"],
        "reg.rate_basis": ["shared", "submodel"],
        "reg.drop_prob": {"type": "uniform", "low": 0.05, "high": 0.6},
    }
    raw["base"]["reg"]["variant"] = "dropblock"
    raw.pop("seeds")
    with pytest.raises(ConfigError) as exc:
        spec_from_dict(raw)
    assert (
        "space: reg.variant='bdrop_dml', reg.rate_basis='submodel', reg.drop_prob=0.6 together are invalid"
        in one_line(exc)
    )


def test_ramp_warning_when_the_first_rung_comes_before_half_the_ramp(tmp_path: Path, caplog: Any) -> None:
    raw = full()
    raw["base"]["train"]["epochs"] = 200
    raw["scheduler"]["grace_period"] = 10
    (warning,) = spec_from_dict(raw).warnings
    assert "\n" not in warning and "first rung judges search trials at epoch 10" in warning
    assert "ramp (200 epochs) is at 5% of its target" in warning and "ramp_epochs <= 20" in warning
    with caplog.at_level("WARNING", logger="rblock_tune.tuning._spec"):
        load_study_spec(write(tmp_path, raw))
    assert [r.getMessage() for r in caplog.records] == [warning]
    for fix in ({"ramp_epochs": 20}, {"ramp_fraction": 0.1}, {"schedule": "constant"}):
        fixed = copy.deepcopy(raw)
        fixed["base"]["reg"].update(fix)
        assert spec_from_dict(fixed).warnings == (), fix
    fifo = copy.deepcopy(raw)
    fifo["scheduler"] = {"type": "fifo"}
    assert spec_from_dict(fifo).warnings == ()
    later = copy.deepcopy(raw)
    later["scheduler"]["grace_period"] = 100
    assert spec_from_dict(later).warnings == ()
    # a searched ramp: the longest ramp the space allows decides
    searched = copy.deepcopy(raw)
    searched["base"]["reg"]["ramp_epochs"] = 10
    searched["space"]["reg.ramp_epochs"] = [10, 150]
    (warning,) = spec_from_dict(searched).warnings
    assert "the longest drop-rate ramp the space allows (150 epochs) is at 7% of its target" in warning
    searched["space"]["reg.ramp_epochs"] = [10, 20]
    searched["space"]["reg.schedule"] = ["linear", "constant"]  # the ramp keys do not apply to constant
    assert spec_from_dict(searched).warnings == ()


def test_ramp_longer_than_a_phase_is_refused() -> None:
    raw = full()
    raw["base"]["train"]["epochs"] = 50
    raw["base"]["reg"]["ramp_epochs"] = 30
    raw["scheduler"]["budget"] = 20
    with pytest.raises(ConfigError) as exc:
        spec_from_dict(raw)
    assert "scheduler.budget: reg.ramp_epochs=30.0 is longer than train.epochs=20" in one_line(exc)
    raw["scheduler"]["budget"] = 40
    raw["seeds"]["epochs"] = 25
    with pytest.raises(ConfigError) as exc:
        spec_from_dict(raw)
    assert "seeds.epochs: reg.ramp_epochs=30.0 is longer than train.epochs=25" in one_line(exc)


def test_consistency_metrics_need_a_validation_set() -> None:
    for metric in ("consistency_kl_own", "consistency_kl_probe"):
        assert spec_from_dict(minimal(metric=metric)).mode == "min"
        raw = minimal(metric=metric)
        raw["base"]["data"]["val_size"] = 0
        with pytest.raises(ConfigError, match="needs a validation set"):
            spec_from_dict(raw)
    with pytest.raises(ConfigError, match="metric='consistency_kl' is not reported by trials"):
        spec_from_dict(minimal(metric="consistency_kl"))


def test_shipped_specs_name_their_rate_basis_and_let_asha_see_the_ramp() -> None:
    for stem, (_, spec) in _load_all().items():
        assert spec.raw["base"]["reg"]["rate_basis"] == "submodel", stem  # said in the file
        assert spec.warnings == (), stem
        if stem != "quickstart":
            assert spec.base.reg.ramp_epochs is not None, stem
            assert spec.base.reg.ramp_length(spec.search_epochs) <= spec.scheduler.grace_period, stem
