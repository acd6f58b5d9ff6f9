"""Trial configuration: frozen dataclasses built from YAML and ``key=value`` overrides.

A trial config is validated once, when it is built. Every bad key or value raises
:class:`~rblock_tune.errors.ConfigError` with one line that names the dotted key,
the value and what is allowed, for example::

    reg.drop_prob=1.5 is out of range: must be in [0, 1)
    unknown key 'reg.alpah' (did you mean 'reg.alpha'?)

Keys, types and defaults come from the dataclass fields (:func:`rblock_tune._schema.build`);
ranges and choices are checked in each dataclass's ``__post_init__``, so a config built in code
is validated too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rblock_tune._files import DuplicateKeyError, UniqueKeyLoader, read_yaml
from rblock_tune._schema import build, check_choice, out_of_range, unknown_key
from rblock_tune.errors import ConfigError
from rblock_tune.variants import (
    PAIRED_VARIANTS,
    RATE_BASES,
    SPLIT_VARIANTS,
    VARIANTS,
    check_drop_prob,
    get_variant,
)

# VARIANTS, PAIRED_VARIANTS, SPLIT_VARIANTS and RATE_BASES are re-exported from rblock_tune.variants,
# the one table of the regularizer variants.
__all__ = [
    "DATASETS",
    "DEFAULT_SHORTCUTS",
    "MODELS",
    "PAIRED_VARIANTS",
    "RATE_BASES",
    "MASK_SAMPLERS",
    "SCHEDULES",
    "SHORTCUTS",
    "SPLIT_VARIANTS",
    "VARIANTS",
    "DataConfig",
    "ModelConfig",
    "RegConfig",
    "TrainConfig",
    "TrialConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "describe_config",
    "flatten_config",
    "load_config",
    "not_applicable",
    "parse_override",
    "valid_keys",
    "with_overrides",
]

SHORTCUTS: tuple[str, ...] = ("A", "B")
"""Residual shortcuts that change shape: ``A`` identity with stride-2 subsampling and zero-padded
channels (He et al. 2016's CIFAR ResNets), ``B`` a 1x1 convolution (+ BN in post-activation blocks)."""

DEFAULT_SHORTCUTS: dict[str, str] = {
    **{name: "A" for name in ("resnet8", "resnet20", "resnet32", "resnet56", "resnet110")},
    "preact_resnet18": "B",
}
"""Each architecture's published shortcut, used when ``model.shortcut`` is null: option A for He et al.'s
CIFAR ResNets, the 1x1 projection for pre-activation ResNet-18. VGG-16 has none."""

MODELS: tuple[str, ...] = (
    "resnet8",
    "resnet20",
    "resnet32",
    "resnet56",
    "resnet110",
    "preact_resnet18",
    "vgg16",
)
DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "tinyimagenet", "imagefolder", "synthetic")
SCHEDULES: tuple[str, ...] = ("linear", "constant")
MASK_SAMPLERS: tuple[str, ...] = ("auto", "sparse", "dense")
"""How DropBlock's seeds are drawn (``reg.mask_sampler``): ``sparse`` draws the gaps between seeds
(about gamma * N random numbers for N seed positions), ``dense`` one uniform per position (the draws
of rblock-tune before ``sparse`` existed); both are the same independent Bernoulli(gamma) seeds, but
a seed gives other masks under each. ``auto``: ``sparse`` on CPU, ``dense`` on other devices."""
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


_fail = out_of_range
_check_choice = check_choice


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are split and augmented.

    Attributes:
        name: dataset (``cifar10``, ``cifar100``, ``tinyimagenet``, ``imagefolder``, ``synthetic``).
        root: folder holding the dataset; ``None`` means ``$RBLOCK_DATA_DIR``, else ``./data``.
        download: fetch torchvision's CIFAR release into ``root`` when it is missing.
        subset: stratified subset of the training images after the validation split:
            an int is a number of images, a float in (0, 1) a fraction; ``None`` keeps all.
        val_size: images held out of the training set for validation; ``None`` means the
            dataset's default (5000 for CIFAR, 10000 for TinyImageNet, 10% otherwise).
        split_seed: seed of the validation split and of ``subset``; independent of the trial seed.
        cache_dir: where decoded tensors are cached; ``None`` means ``$RBLOCK_CACHE_DIR``,
            else ``~/.cache/rblock-tune``.
        crop_padding: zero padding (pixels) of the random-crop augmentation; 0 disables it.
        flip: random horizontal flips.
        image_size: resize image-folder images to this square size; size of synthetic images.
        synthetic_size: number of synthetic training images (the test set is a quarter of it).
        synthetic_classes: number of synthetic classes.
    """

    name: str = "cifar10"
    root: str | None = None
    download: bool = True
    subset: int | float | None = None
    val_size: int | None = None
    split_seed: int = 0
    cache_dir: str | None = None
    crop_padding: int = 4
    flip: bool = True
    image_size: int | None = None
    synthetic_size: int = 1024
    synthetic_classes: int = 10

    def __post_init__(self) -> None:
        _check_choice("data.name", self.name, DATASETS)
        if self.subset is not None:
            if isinstance(self.subset, float) and not 0.0 < self.subset < 1.0:
                raise _fail("data.subset", self.subset, "an image count >= 1 or a fraction in (0, 1)")
            if isinstance(self.subset, int) and self.subset < 1:
                raise _fail("data.subset", self.subset, "an image count >= 1 or a fraction in (0, 1)")
        if self.val_size is not None and self.val_size < 0:
            raise _fail("data.val_size", self.val_size, ">= 0")
        if self.crop_padding < 0:
            raise _fail("data.crop_padding", self.crop_padding, ">= 0")
        if self.image_size is not None and self.image_size < 8:
            raise _fail("data.image_size", self.image_size, ">= 8")
        if self.synthetic_size < 16:
            raise _fail("data.synthetic_size", self.synthetic_size, ">= 16")
        if self.synthetic_classes < 2:
            raise _fail("data.synthetic_classes", self.synthetic_classes, ">= 2")


@dataclass(frozen=True)
class ModelConfig:
    """Which network, and where its drop layers go.

    Attributes:
        name: architecture (see :data:`MODELS`).
        drop_stages: 1-based stage indices that receive drop layers; ``None`` means the
            spec's defaults (CIFAR ResNets: 2, 3; pre-act ResNet-18: 3, 4; VGG-16: 3, 4, 5).
        shortcut: residual shortcuts that change shape (see :data:`SHORTCUTS`); ``None`` means
            each architecture's published form: ``A`` for the CIFAR ResNets (He et al. 2016,
            section 4.2; ResNet-20 then has 0.27M parameters), ``B`` for pre-act ResNet-18.
            VGG-16 has no shortcuts and takes none.
    """

    name: str = "resnet20"
    drop_stages: tuple[int, ...] | None = None
    shortcut: str | None = None

    def __post_init__(self) -> None:
        _check_choice("model.name", self.name, MODELS)
        if self.shortcut is not None:
            _check_choice("model.shortcut", self.shortcut, SHORTCUTS)
            if self.name not in DEFAULT_SHORTCUTS:
                raise ConfigError(
                    f"model.shortcut={self.shortcut!r} does not apply to {self.name}, which has no residual "
                    "shortcuts: leave model.shortcut unset"
                )
        if self.drop_stages is not None:
            n_stages = 5 if self.name == "vgg16" else 4 if self.name == "preact_resnet18" else 3
            for stage in self.drop_stages:
                if not 1 <= stage <= n_stages:
                    raise _fail(
                        "model.drop_stages",
                        list(self.drop_stages),
                        f"stage numbers in 1..{n_stages} for {self.name}",
                    )

    @property
    def resolved_shortcut(self) -> str | None:
        """The shortcut the model is built with: ``shortcut``, else the architecture's default
        (:data:`DEFAULT_SHORTCUTS`); None for VGG-16."""
        return self.shortcut or DEFAULT_SHORTCUTS.get(self.name)


@dataclass(frozen=True)
class RegConfig:
    """The regularizer (see ``shared/spec/rblock.md``).

    Attributes:
        variant: one of :data:`VARIANTS`.
        alpha: weight of the symmetric KL consistency term (two-sub-model variants only).
        drop_prob: target drop probability p.
        block_size: block size b (clipped to the feature map).
        rate_basis: what p means for ``bdrop_dml`` and ``sdrop_dml`` (:data:`RATE_BASES`):
            ``submodel`` (default) p is each sub-model's drop rate, so their shared mask runs at
            2p and p must be below 0.5; ``shared`` p is the rate of the shared mask, of which
            each sub-model drops about half. Other variants drop p per model either way.
        schedule: ``linear`` ramps p from 0 to its target over the ramp; ``constant`` uses p
            from the first step (the ramp keys then do not apply).
        ramp_fraction: linear ramp length as a share of all training steps; ``None`` means 1.0
            unless ``ramp_epochs`` is set.
        ramp_epochs: linear ramp length in epochs (may be fractional), the same whatever
            ``train.epochs`` is, so a short search trial and a long seed run share one ramp.
        mask_sampler: how DropBlock's seeds are drawn (:data:`MASK_SAMPLERS`; variants whose masks
            grow DropBlock seeds only): ``auto`` (default) is ``sparse`` on CPU and ``dense`` on
            other devices; ``dense`` reproduces runs of rblock-tune versions before ``sparse``.
    """

    variant: str = "bdrop_dml"
    alpha: float = 1.0
    drop_prob: float = 0.1
    block_size: int = 3
    rate_basis: str = "submodel"
    schedule: str = "linear"
    ramp_fraction: float | None = None
    ramp_epochs: float | None = None
    mask_sampler: str = "auto"

    def __post_init__(self) -> None:
        _check_choice("reg.variant", self.variant, VARIANTS)
        _check_choice("reg.rate_basis", self.rate_basis, RATE_BASES)
        _check_choice("reg.schedule", self.schedule, SCHEDULES)
        _check_choice("reg.mask_sampler", self.mask_sampler, MASK_SAMPLERS)
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise _fail("reg.alpha", self.alpha, ">= 0")
        check_drop_prob(
            self.drop_prob, self.variant, self.rate_basis, key="reg.drop_prob", basis_key="reg.rate_basis"
        )
        if self.block_size < 1:
            raise _fail("reg.block_size", self.block_size, ">= 1")
        if self.ramp_fraction is not None and not 0.0 < self.ramp_fraction <= 1.0:
            raise _fail("reg.ramp_fraction", self.ramp_fraction, "in (0, 1]")
        if self.ramp_epochs is not None and not (math.isfinite(self.ramp_epochs) and self.ramp_epochs > 0):
            raise _fail("reg.ramp_epochs", self.ramp_epochs, "> 0 (epochs)")
        if self.ramp_fraction is not None and self.ramp_epochs is not None:
            raise ConfigError(
                f"reg.ramp_fraction={self.ramp_fraction!r} and reg.ramp_epochs={self.ramp_epochs!r} both "
                "set the ramp length: set one of them"
            )

    @property
    def paired(self) -> bool:
        """True for the two-sub-model variants."""
        return get_variant(self.variant).paired

    @property
    def doubles_shared_rate(self) -> bool:
        """True when the shared mask runs at 2p (a split variant with ``rate_basis=submodel``)."""
        return get_variant(self.variant).rate_factor(self.rate_basis) > 1.0

    def ramp_length(self, epochs: float) -> float:
        """Epochs the linear ramp takes to reach the target in a run of ``epochs`` epochs (0 for
        the constant schedule)."""
        if self.schedule == "constant":
            return 0.0
        if self.ramp_epochs is not None:
            return self.ramp_epochs
        return (1.0 if self.ramp_fraction is None else self.ramp_fraction) * epochs


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and execution.

    Attributes:
        epochs: number of training epochs.
        batch_size: images per step (paired variants run 2x this many rows).
        lr: peak learning rate of SGD with Nesterov momentum.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        warmup_epochs: linear warm-up before the cosine decay (may be fractional).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        amp: bf16 autocast on CUDA (ignored on CPU).
        channels_last: channels-last memory format on CUDA (ignored on CPU).
        compile: wrap the model in ``torch.compile``.
        eval_batch_size: batch size for validation and test passes.
        consistency_batch: size of the fixed validation batch of the consistency metrics (a
            seeded, class-stratified sample of the validation split, fixed by ``data.split_seed``).
        probe_drop_prob: drop rate of the common DropBlock probe of ``consistency_kl_probe``.
        probe_block_size: block size of that probe.
        checkpoint_every: epochs between checkpoints (the last epoch is always checkpointed); a
            resumed or retried run repeats at most ``checkpoint_every - 1`` epochs.
    """

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    eval_batch_size: int = 512
    consistency_batch: int = 256
    probe_drop_prob: float = 0.1
    probe_block_size: int = 3
    checkpoint_every: int = 1

    def __post_init__(self) -> None:
        _check_choice("train.device", self.device, DEVICES)
        if self.epochs < 1:
            raise _fail("train.epochs", self.epochs, ">= 1")
        if self.batch_size < 2:
            raise _fail("train.batch_size", self.batch_size, ">= 2")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise _fail("train.lr", self.lr, "> 0")
        if not 0.0 <= self.momentum < 1.0:
            raise _fail("train.momentum", self.momentum, "in [0, 1)")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise _fail("train.weight_decay", self.weight_decay, ">= 0")
        if not (math.isfinite(self.warmup_epochs) and self.warmup_epochs >= 0):
            raise _fail("train.warmup_epochs", self.warmup_epochs, ">= 0")
        if self.eval_batch_size < 1:
            raise _fail("train.eval_batch_size", self.eval_batch_size, ">= 1")
        if self.consistency_batch < 1:
            raise _fail("train.consistency_batch", self.consistency_batch, ">= 1")
        if not 0.0 < self.probe_drop_prob < 1.0:
            raise _fail("train.probe_drop_prob", self.probe_drop_prob, "in (0, 1)")
        if self.probe_block_size < 1:
            raise _fail("train.probe_block_size", self.probe_block_size, ">= 1")
        if self.checkpoint_every < 1:
            raise _fail("train.checkpoint_every", self.checkpoint_every, ">= 1")


@dataclass(frozen=True)
class TrialConfig:
    """One training run: seed, data, model, regularizer and optimisation."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    reg: RegConfig = field(default_factory=RegConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        ramp = self.reg.ramp_epochs
        if ramp is not None and ramp > self.train.epochs:
            raise ConfigError(
                f"reg.ramp_epochs={ramp!r} is longer than train.epochs={self.train.epochs}: the drop rate "
                "would never reach its target; shorten the ramp or train longer"
            )


_SECTIONS: dict[str, type[Any]] = {
    "data": DataConfig,
    "model": ModelConfig,
    "reg": RegConfig,
    "train": TrainConfig,
}


def valid_keys() -> list[str]:
    """Every dotted key a trial config accepts, in declaration order."""
    keys = ["seed"]
    for section, cls in _SECTIONS.items():
        keys.extend(f"{section}.{f.name}" for f in dataclasses.fields(cls))
    return keys


def _unknown_key(where: str, key: Any, allowed: Sequence[Any] = ()) -> ConfigError:
    """``unknown key 'reg.alpah' (did you mean 'reg.alpha'?)``: the closest of all trial keys."""
    return unknown_key("", f"{where}.{key}" if where else str(key), valid_keys())


def _section_as_value(section: str, value: Any) -> ConfigError:
    """``data=5``: a whole section given one value."""
    keys = ", ".join(f"{section}.{f.name}" for f in dataclasses.fields(_SECTIONS[section]))
    return ConfigError(
        f"{section}={value!r}: {section} is a section of keys, not a value; set its keys one by one ({keys})"
    )


def config_from_dict(values: Mapping[str, Any] | None) -> TrialConfig:
    """Build and validate a :class:`TrialConfig` from a nested mapping.

    Args:
        values: nested mapping with the same keys as the YAML file; missing keys
            take their defaults.

    Raises:
        ConfigError: on an unknown key, a wrong type or an out-of-range value.
    """
    return build(TrialConfig, dict(values or {}), noun="a mapping of keys", unknown=_unknown_key)


def config_to_dict(config: TrialConfig) -> dict[str, Any]:
    """Nested plain-Python dict of ``config`` (tuples become lists), YAML/JSON safe."""
    out: dict[str, Any] = {"seed": config.seed}
    for section in _SECTIONS:
        sub = getattr(config, section)
        out[section] = {
            f.name: list(v) if isinstance(v := getattr(sub, f.name), tuple) else v
            for f in dataclasses.fields(sub)
        }
    return out


def flatten_config(config: TrialConfig) -> dict[str, Any]:
    """Flat dict with dotted keys (``reg.alpha``), as MLflow params and Ray configs use."""
    nested = config_to_dict(config)
    flat: dict[str, Any] = {"seed": nested.pop("seed")}
    for section, sub in nested.items():
        for key, value in sub.items():
            flat[f"{section}.{key}"] = value
    return flat


def not_applicable(reg: RegConfig) -> tuple[str, ...]:
    """The dotted ``reg.*`` keys whose values do not change what ``reg`` trains: ``none`` drops
    nothing, single-model variants have no KL term, only R-Block splits by ``rate_basis``, blocks
    only where the variant uses them, the mask sampler only where it draws DropBlock seeds, ramp
    keys only with the linear schedule (and only the one that sets its length)."""
    variant = get_variant(reg.variant)
    unused: list[str] = []
    if not variant.paired:
        unused.append("alpha")
    if not variant.drops:
        unused += ["drop_prob", "block_size", "rate_basis", "schedule", "ramp_fraction", "ramp_epochs"]
    else:
        if not variant.uses_block_size:
            unused.append("block_size")
        if not variant.split:
            unused.append("rate_basis")
        if reg.schedule != "linear":
            unused += ["ramp_fraction", "ramp_epochs"]
        else:  # the ramp is ramp_epochs when set, else ramp_fraction (None: 1.0)
            unused.append("ramp_fraction" if reg.ramp_epochs is not None else "ramp_epochs")
    if not variant.block_seeds:
        unused.append("mask_sampler")
    return tuple(f"reg.{key}" for key in unused)


_SHORT_REG = {"reg.alpha": "a", "reg.drop_prob": "p", "reg.block_size": "b"}


def _short(value: Any) -> str:
    """Two significant digits, as a run table's name column has room for (the params have it all);
    whole numbers from 100 up as they are (``100``, not ``1e+02``)."""
    if not isinstance(value, float):
        return str(value)
    shown = f"{value:.2g}"
    return f"{value:.0f}" if "e+" in shown else shown


def describe_config(config: TrialConfig, keys: Iterable[str] = ()) -> str:
    """One line saying what ``config`` trains: its variant with the R-Block values that apply
    (``sdrop_dml a=3.6 p=0.44 b=1``; ``none`` alone), then each other dotted key of ``keys`` (the
    values a search sampled, an arm's overrides) by its last part: ``lr=0.05``."""
    flat = flatten_config(config)
    unused = set(not_applicable(config.reg))
    parts = [config.reg.variant]
    parts += [f"{short}={_short(flat[key])}" for key, short in _SHORT_REG.items() if key not in unused]
    shown = {"reg.variant", *_SHORT_REG, "seed", "train.epochs"}
    for key in keys:
        if key in shown or key in unused or key not in flat:
            continue
        shown.add(key)
        parts.append(f"{key.rsplit('.', 1)[-1]}={_short(flat[key])}")
    return " ".join(parts)


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is read as YAML (``true``, ``0.1``, ``null``, ``[2, 3]``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r} is not key=value: write for example --set reg.alpha=1.0")
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader) if raw.strip() else ""
    except DuplicateKeyError as exc:
        raise ConfigError(f"--set {text!r} gives key {exc.key!r} twice: keep one of them") from None
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a deep copy of nested ``values`` with dotted ``overrides`` set.

    Unknown dotted keys raise :class:`ConfigError` with the closest valid key.
    """
    out: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in dict(values).items()}
    known = set(valid_keys())
    for key, value in overrides.items():
        if key in _SECTIONS:
            raise _section_as_value(key, value)
        if key not in known:
            raise _unknown_key("", key)
        if "." in key:
            section, name = key.split(".", 1)
            sub = out.get(section)
            if not isinstance(sub, dict):
                sub = {}
                out[section] = sub
            sub[name] = value
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrialConfig:
    """Build a config from an optional YAML file plus ``key=value`` override strings."""
    values = read_yaml(path) if path is not None else {}
    parsed = dict(parse_override(o) for o in overrides)
    return config_from_dict(apply_overrides(values, parsed))


def with_overrides(config: TrialConfig, overrides: Mapping[str, Any]) -> TrialConfig:
    """Return ``config`` with dotted ``overrides`` applied and everything re-validated."""
    return config_from_dict(apply_overrides(config_to_dict(config), overrides))
