"""Trial config: YAML + overrides, types, ranges and one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rblock_tune.config import (
    TrialConfig,
    config_from_dict,
    config_to_dict,
    describe_config,
    flatten_config,
    load_config,
    not_applicable,
    parse_override,
    valid_keys,
    with_overrides,
)
from rblock_tune.errors import ConfigError


def test_defaults_and_roundtrip() -> None:
    cfg = TrialConfig()
    assert cfg.reg.variant == "bdrop_dml" and cfg.reg.paired
    assert config_from_dict(config_to_dict(cfg)) == cfg
    flat = flatten_config(cfg)
    assert list(flat) == valid_keys()
    assert flat["reg.alpha"] == 1.0


def test_required_keys_exist() -> None:
    keys = set(valid_keys())
    for key in [
        "seed",
        "data.name",
        "data.root",
        "data.download",
        "data.subset",
        "data.val_size",
        "model.name",
        "reg.variant",
        "reg.alpha",
        "reg.drop_prob",
        "reg.block_size",
        "reg.schedule",
        "train.epochs",
        "train.batch_size",
        "train.lr",
        "train.weight_decay",
        "train.device",
        "train.amp",
        "train.compile",
    ]:
        assert key in keys


def test_yaml_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "trial.yaml"
    path.write_text("seed: 3\nreg:\n  variant: sdrop_dml\n  alpha: 2\nmodel:\n  drop_stages: [3]\n")
    cfg = load_config(path, ["reg.alpha=0.5", "train.lr=1e-3", "data.subset=0.25", "data.root=null"])
    assert cfg.seed == 3
    assert cfg.reg.variant == "sdrop_dml"
    assert cfg.reg.alpha == 0.5 and isinstance(cfg.reg.alpha, float)
    assert cfg.train.lr == pytest.approx(1e-3)  # YAML 1.1 reads 1e-3 as a string: accepted
    assert cfg.data.subset == 0.25
    assert cfg.model.drop_stages == (3,)
    cfg2 = load_config(None, ["data.subset=5000", "model.drop_stages=[2,3]", "train.amp=false"])
    assert cfg2.data.subset == 5000 and isinstance(cfg2.data.subset, int)
    assert cfg2.model.drop_stages == (2, 3)
    assert cfg2.train.amp is False


def test_with_overrides_revalidates() -> None:
    cfg = with_overrides(TrialConfig(), {"reg.alpha": 3.0, "seed": 9})
    assert (cfg.reg.alpha, cfg.seed) == (3.0, 9)
    with pytest.raises(ConfigError, match=r"reg\.drop_prob"):
        with_overrides(cfg, {"reg.drop_prob": 1.0})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("reg.alpah=1", "unknown key 'reg.alpah' (did you mean 'reg.alpha'?)"),
        ("trian.lr=1", "unknown key 'trian.lr' (did you mean 'train.lr'?)"),
        ("reg.drop_prob=1.0", "reg.drop_prob=1.0 is out of range: must be in [0, 1)"),
        ("reg.drop_prob=-0.1", "reg.drop_prob=-0.1 is out of range: must be in [0, 1)"),
        ("reg.block_size=0", "reg.block_size=0 is out of range: must be >= 1"),
        ("reg.alpha=-1", "reg.alpha=-1.0 is out of range: must be >= 0"),
        ("reg.variant=rblock", "reg.variant='rblock' is not allowed"),
        ("model.name=resnet18", "model.name='resnet18' is not allowed (did you mean"),
        ("train.epochs=ten", "train.epochs='ten' has the wrong type: must be an integer"),
        ("train.epochs=2.5", "train.epochs=2.5 has the wrong type: must be an integer"),
        ("train.amp=maybe", "train.amp='maybe' has the wrong type: must be true/false"),
        ("train.device=tpu", "train.device='tpu' is not allowed"),
        ("data.subset=0", "data.subset=0 is out of range"),
        ("data.subset=1.5", "data.subset=1.5 is out of range"),
        ("model.drop_stages=[4]", "model.drop_stages=[4] is out of range: must be stage numbers in 1..3"),
        ("reg.schedule=cosine", "reg.schedule='cosine' is not allowed"),
        ("seed", "--set 'seed' is not key=value"),
        ("reg.rate_basis=layer", "reg.rate_basis='layer' is not allowed: must be one of submodel, shared"),
        (
            "reg.mask_sampler=fast",
            "reg.mask_sampler='fast' is not allowed: must be one of auto, sparse, dense",
        ),
        ("reg.drop_prob=0.5", "reg.drop_prob=0.5 is out of range: must be in [0, 0.5) for bdrop_dml"),
        ("reg.ramp_epochs=0", "reg.ramp_epochs=0.0 is out of range: must be > 0 (epochs)"),
        ("reg.ramp_fraction=0", "reg.ramp_fraction=0.0 is out of range: must be in (0, 1]"),
        ("reg.ramp_epochs=300", "reg.ramp_epochs=300.0 is longer than train.epochs=200"),
        ("model.shortcut=C", "model.shortcut='C' is not allowed: must be one of A, B"),
        ("train.probe_drop_prob=0", "train.probe_drop_prob=0.0 is out of range: must be in (0, 1)"),
        ("train.probe_block_size=0", "train.probe_block_size=0 is out of range: must be >= 1"),
        ("train.checkpoint_every=0", "train.checkpoint_every=0 is out of range: must be >= 1"),
        ("train.checkpoint_every=1.5", "train.checkpoint_every=1.5 has the wrong type: must be an integer"),
    ],
)
def test_bad_values_give_one_line_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("reg: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(listy)
    section = tmp_path / "section.yaml"
    section.write_text("reg: 3\n")
    with pytest.raises(ConfigError, match="reg must be a mapping"):
        load_config(section)


def test_parse_override_reads_yaml_values() -> None:
    assert parse_override("a.b=true") == ("a.b", True)
    assert parse_override("a.b=0.5") == ("a.b", 0.5)
    assert parse_override("a.b=null") == ("a.b", None)
    assert parse_override("a.b=/data/x=y") == ("a.b", "/data/x=y")


def test_rate_basis_ramp_and_shortcut_defaults() -> None:
    reg = TrialConfig().reg
    assert (reg.rate_basis, reg.schedule, reg.ramp_fraction, reg.ramp_epochs) == (
        "submodel",
        "linear",
        None,
        None,
    )
    assert reg.doubles_shared_rate and reg.ramp_length(200) == 200
    assert TrialConfig().model.shortcut is None  # each architecture's published form (A for CIFAR ResNets)
    # p >= 0.5 is fine where p is the shared mask's rate, or for a variant that drops p per model anyway
    assert load_config(None, ["reg.drop_prob=0.6", "reg.rate_basis=shared"]).reg.drop_prob == 0.6
    assert load_config(None, ["reg.drop_prob=0.6", "reg.variant=dropblock"]).reg.drop_prob == 0.6
    assert load_config(None, ["reg.drop_prob=0.6", "reg.variant=random_dml"]).reg.drop_prob == 0.6
    assert not load_config(None, ["reg.variant=random_dml"]).reg.doubles_shared_rate
    ramp = load_config(None, ["reg.ramp_epochs=10", "train.epochs=50"]).reg
    assert ramp.ramp_length(50) == ramp.ramp_length(200) == 10
    assert load_config(None, ["reg.ramp_fraction=0.25"]).reg.ramp_length(40) == 10
    assert load_config(None, ["reg.schedule=constant"]).reg.ramp_length(40) == 0
    # the ramp keys do not apply to the constant schedule (so a search may try both schedules)
    assert load_config(None, ["reg.schedule=constant", "reg.ramp_epochs=5"]).reg.ramp_length(40) == 0
    assert TrialConfig().model.resolved_shortcut == "A"
    assert load_config(None, ["model.name=preact_resnet18"]).model.resolved_shortcut == "B"
    assert load_config(None, ["model.name=vgg16"]).model.resolved_shortcut is None


@pytest.mark.parametrize(
    ("reg", "description", "unused"),
    [
        (
            {"variant": "none"},
            "none",
            {"alpha", "drop_prob", "block_size", "rate_basis", "schedule", "mask_sampler"},
        ),
        (
            {"variant": "dropout", "drop_prob": 0.25},
            "dropout p=0.25",
            {"alpha", "block_size", "rate_basis", "mask_sampler"},
        ),
        ({"variant": "dropblock", "block_size": 5}, "dropblock p=0.1 b=5", {"alpha", "rate_basis"}),
        ({"variant": "random_dml", "alpha": 2.0}, "random_dml a=2 p=0.1 b=3", {"rate_basis"}),
        (
            {"variant": "sdrop_dml", "alpha": 3.6123, "drop_prob": 0.4412, "block_size": 1},
            "sdrop_dml a=3.6 p=0.44 b=1",
            {"mask_sampler"},  # its blocks are grid cells, not DropBlock seeds
        ),
    ],
)
def test_a_runs_description_and_params_name_only_what_applies(
    reg: dict[str, Any], description: str, unused: set[str]
) -> None:
    config = config_from_dict({"reg": reg, "train": {"lr": 0.05}})
    assert describe_config(config) == description
    assert describe_config(config, ["train.lr", "reg.alpha", "seed"]) == description + " lr=0.05"
    big = with_overrides(config, {"train.weight_decay": 1e-4, "train.warmup_epochs": 150.0})
    shown = describe_config(big, ["train.weight_decay", "train.warmup_epochs"])
    assert shown == description + " weight_decay=0.0001 warmup_epochs=150"
    # the linear schedule takes its length from ramp_fraction (None: 1.0); none has no ramp at all
    ramp = {"ramp_epochs", "ramp_fraction"} if reg["variant"] == "none" else {"ramp_epochs"}
    assert set(not_applicable(config.reg)) == {f"reg.{k}" for k in unused | ramp}
    constant = with_overrides(config, {"reg.schedule": "constant"})
    if reg["variant"] != "none":  # no ramp at all with a constant schedule
        assert {"reg.ramp_fraction", "reg.ramp_epochs"} <= set(not_applicable(constant.reg))
