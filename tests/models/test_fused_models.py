"""fuse_models: k models of one architecture as one grouped model, member by member exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rblock_tune.config import load_config
from rblock_tune.errors import ConfigError
from rblock_tune.models import build_model, fuse_models, load_member_state, member_state


@pytest.mark.parametrize(
    ("name", "shortcut"), [("resnet8", "A"), ("resnet8", "B"), ("preact_resnet18", "B"), ("vgg16", None)]
)
def test_fused_outputs_and_states_are_the_members(name: str, shortcut: str | None) -> None:
    overrides = [f"model.name={name}"] + ([f"model.shortcut={shortcut}"] if shortcut else [])
    config = load_config(None, overrides)
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model(config.model, 10, in_channels=3).double())
    fused = fuse_models(models)
    size = 32 if name == "vgg16" else 16  # VGG pools five times
    xs = [torch.randn(2, 3, size, size, dtype=torch.float64) for _ in models]
    for train in (False, True):  # batch statistics in train mode: per member too
        fused.train(train)
        for m in models:
            m.train(train)
        out = fused(torch.cat(xs, dim=1)).view(2, 3, 10)
        for i, (model, x) in enumerate(zip(models, xs, strict=True)):
            torch.testing.assert_close(out[:, i], model(x), rtol=1e-10, atol=1e-12)
    for i, model in enumerate(models):  # running statistics updated member by member
        state = member_state(fused.state_dict(), 3, i)
        assert list(state) == list(model.state_dict())
        for key, value in model.state_dict().items():
            torch.testing.assert_close(state[key], value, rtol=1e-10, atol=1e-12)
    load_member_state(fused, 3, 2, models[0].state_dict())
    assert torch.equal(member_state(fused.state_dict(), 3, 2)["fc.weight"], models[0].fc.weight)


def test_unknown_modules_and_mixed_architectures_are_refused() -> None:
    with pytest.raises(ConfigError, match="cannot fuse 1 \\(GELU\\)"):
        fuse_models([nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU())] * 2)
    with pytest.raises(ConfigError, match="different architectures"):
        fuse_models([nn.Conv2d(3, 4, 3), nn.Conv2d(3, 5, 3)])
    with pytest.raises(ConfigError, match="at least one"):
        fuse_models([])
