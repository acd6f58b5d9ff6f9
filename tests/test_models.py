"""Model registry: shapes, sizes, drop-layer placement."""

from __future__ import annotations

import pytest
import torch

from rblock_tune.config import MODELS, ModelConfig, RegConfig
from rblock_tune.errors import ConfigError
from rblock_tune.models import build_model
from rblock_tune.regularizers import drop_factory, drop_layers

REG = RegConfig(variant="dropblock", drop_prob=0.1, block_size=3)


@pytest.mark.parametrize(
    ("name", "params", "n_drop"),
    [
        # CIFAR ResNets: He et al. 2016 report 0.27M / 0.46M / 0.85M / 1.7M parameters
        ("resnet8", 0.078, 2),
        ("resnet20", 0.27, 6),
        ("resnet32", 0.47, 10),
        ("resnet56", 0.86, 18),
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
