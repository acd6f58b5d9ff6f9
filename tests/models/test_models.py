"""Model registry: shapes, sizes, drop-layer placement."""

from __future__ import annotations

import pytest
import torch

from rblock_tune.config import MODELS, ModelConfig, RegConfig
from rblock_tune.errors import ConfigError
from rblock_tune.models import PadShortcut, build_model
from rblock_tune.regularizers import drop_factory, drop_layers

REG = RegConfig(variant="dropblock", drop_prob=0.1, block_size=3)


@pytest.mark.parametrize(
    ("name", "params", "n_drop"),
    [
        # CIFAR ResNets (option-A shortcuts by default): He et al. 2016 report 0.27M / 0.46M / 0.85M / 1.7M
        ("resnet8", 0.075, 2),
        ("resnet20", 0.27, 6),
        ("resnet32", 0.46, 10),
        ("resnet56", 0.85, 18),
        ("resnet110", 1.73, 36),
        ("preact_resnet18", 11.17, 4),
        ("vgg16", 14.72, 9),
    ],
)
def test_sizes_and_default_drop_placement(name: str, params: float, n_drop: int) -> None:
    model = build_model(ModelConfig(name=name), 10, drop_factory(REG))
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert count == pytest.approx(params, rel=0.02)
    assert len(drop_layers(model)) == n_drop


SHAPE_CASES = [(name, 32) for name in MODELS] + [
    (name, 64) for name in ("resnet8", "resnet20", "preact_resnet18", "vgg16")
]


@pytest.mark.parametrize(("name", "size"), SHAPE_CASES)
def test_output_shape_for_cifar_and_tinyimagenet_sizes(name: str, size: int) -> None:
    model = build_model(ModelConfig(name=name), 200 if size == 64 else 100, drop_factory(REG))
    model.train()
    x = torch.randn(2, 3, size, size)
    assert model(torch.cat([x, x])).shape == (4, 200 if size == 64 else 100)


def test_configurable_stages_and_no_drop() -> None:
    model = build_model(ModelConfig(name="resnet20", drop_stages=(1, 2, 3)), 10, drop_factory(REG))
    assert len(drop_layers(model)) == 9
    assert (
        len(drop_layers(build_model(ModelConfig(name="resnet20", drop_stages=(3,)), 10, drop_factory(REG))))
        == 3
    )
    assert drop_layers(build_model(ModelConfig(name="resnet20"), 10, None)) == []
    vgg = build_model(ModelConfig(name="vgg16", drop_stages=(5,)), 10, drop_factory(REG))
    assert len(drop_layers(vgg)) == 3


def test_drop_layers_follow_each_block_of_the_named_stages() -> None:
    model = build_model(ModelConfig(name="resnet20"), 10, drop_factory(REG))
    names = [n for n, m in model.named_modules() if m in drop_layers(model)]
    assert names == ["stage2.1", "stage2.3", "stage2.5", "stage3.1", "stage3.3", "stage3.5"]


def test_grayscale_input_and_unknown_name() -> None:
    model = build_model(ModelConfig(name="resnet8"), 10, None, in_channels=1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ConfigError):
        ModelConfig(name="resnet18")


def test_shortcut_option_a_by_default_for_cifar_resnets() -> None:
    """He et al. 2016's CIFAR ResNets use option A (zero-padded identity): ResNet-20 has 269,722
    parameters (0.27M); option B's 1x1 projections add 2,752."""

    def count(config: ModelConfig) -> int:
        return sum(p.numel() for p in build_model(config, 10, drop_factory(REG)).parameters())

    assert count(ModelConfig(name="resnet20")) == count(ModelConfig(name="resnet20", shortcut="A")) == 269722
    assert count(ModelConfig(name="resnet20", shortcut="B")) == 272474
    # pre-act ResNet-18 keeps its usual 1x1 projection shortcuts unless asked for option A
    preact_b = count(ModelConfig(name="preact_resnet18", shortcut="B"))
    assert (
        count(ModelConfig(name="preact_resnet18"))
        == preact_b
        > count(ModelConfig(name="preact_resnet18", shortcut="A"))
    )
    with pytest.raises(ConfigError, match="does not apply to vgg16"):
        ModelConfig(name="vgg16", shortcut="A")
    with pytest.raises(ConfigError, match=r"model\.shortcut='C' is not allowed"):
        ModelConfig(name="resnet20", shortcut="C")


def test_option_a_shortcut_subsamples_and_zero_pads() -> None:
    x = torch.randn(2, 16, 8, 8)
    out = PadShortcut(16, 32, 2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert not out[:, :8].any() and not out[:, 24:].any()
    for name in ("resnet20", "preact_resnet18"):
        model = build_model(ModelConfig(name=name, shortcut="A"), 10, drop_factory(REG)).train()
        x = torch.randn(2, 3, 32, 32)
        assert model(torch.cat([x, x])).shape == (4, 10)
