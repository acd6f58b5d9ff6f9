"""Horizontal fusion of k models of one architecture into one model (HFTA, Wang et al., MLSys 2021).

The fused model is the members' module tree with every leaf replaced by its fused form; the
containers keep their own ``forward`` (residual additions, pooling, flattening), which are
channel-agnostic. Activations are stacked member-major along the channel axis: a member's
(B, C, H, W) feature map is channels ``[i * C, (i + 1) * C)`` of the fused (B, k * C, H, W) one,
and its logits are columns ``[i * K, (i + 1) * K)`` of the fused (B, k * K) ones.

* ``Conv2d`` -> one grouped convolution (``groups * k``): member i's filters see only its channels.
* ``BatchNorm2d`` -> ``BatchNorm2d(k * C)``: statistics are per channel, hence per member, exactly.
* ``Linear`` -> :class:`FusedLinear`, one batched matmul over the members.
* stateless channel-local leaves (ReLU, pooling, identity) are shared as they are.
* member-wise leaves (:class:`~rblock_tune.models.PadShortcut`, which pads channels, and the types a
  caller names, e.g. drop layers, which draw each member's masks) -> :class:`Memberwise`: each
  member's own module on its channel slice.

No operation mixes members: a member's outputs and gradients depend on its own parameters and
inputs only, so a member whose weights become NaN cannot affect the others.

Every fused tensor (parameter or buffer) is the members' tensors concatenated along dim 0, so
member i's part is ``tensor.chunk(k)[i]`` (scalars, such as BatchNorm's ``num_batches_tracked``,
are shared: every member counts the same steps). The fused state dict has the members' keys, in
the same order (:func:`member_state`, :func:`load_member_state`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rblock_tune.errors import ConfigError
from rblock_tune.models._resnet import PadShortcut

__all__ = ["FusedLinear", "Memberwise", "fuse_models", "load_member_state", "member_state", "member_tensor"]

_SHARED_LEAVES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.Identity,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
"""Leaves without state that act on each channel alone: one instance serves every member."""


class FusedLinear(nn.Module):
    """k linear layers ``in -> out`` as one batched matmul on member-major stacked features.

    Args:
        members: the k ``nn.Linear`` layers (same shapes).

    Shapes: input (B, k * in), output (B, k * out). ``weight`` is (k * out, in) and ``bias``
    (k * out,): member i's rows are ``[i * out, (i + 1) * out)``.
    """

    def __init__(self, members: Sequence[nn.Linear]) -> None:
        super().__init__()
        first = members[0]
        self.k = len(members)
        self.in_features = first.in_features
        self.out_features = first.out_features
        self.weight = nn.Parameter(torch.cat([m.weight.detach() for m in members]))
        self.bias = (
            nn.Parameter(torch.cat([m.bias.detach() for m in members])) if first.bias is not None else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, n_in, n_out = self.k, self.in_features, self.out_features
        xs = x.reshape(x.shape[0], k, n_in).transpose(0, 1)  # (k, B, in)
        w = self.weight.view(k, n_out, n_in).transpose(1, 2)  # (k, in, out)
        out = torch.bmm(xs, w) if self.bias is None else torch.baddbmm(self.bias.view(k, 1, n_out), xs, w)
        return out.transpose(0, 1).reshape(x.shape[0], k * n_out)

    def extra_repr(self) -> str:
        return f"k={self.k}, in_features={self.in_features}, out_features={self.out_features}"


class Memberwise(nn.Module):
    """Each member's own module applied to its channel slice of a member-major stacked input.

    Args:
        members: the k modules, each mapping a (B, C, H, W) map to a (B, C', H', W') one.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.chunk(len(self.members), dim=1)
        return torch.cat([m(part) for m, part in zip(self.members, parts, strict=True)], dim=1)


def _cat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach() for t in tensors])


def _fuse_conv(members: Sequence[nn.Conv2d]) -> nn.Conv2d:
    first, k = members[0], len(members)
    if first.padding_mode != "zeros":
        raise ConfigError(f"cannot fuse a Conv2d with padding_mode={first.padding_mode!r}: only zeros")
    weight = members[0].weight
    fused = nn.utils.skip_init(  # type: ignore[no-untyped-call]
        nn.Conv2d,
        first.in_channels * k,
        first.out_channels * k,
        first.kernel_size,
        stride=first.stride,
        padding=first.padding,  # type: ignore[arg-type]
        dilation=first.dilation,
        groups=first.groups * k,
        bias=first.bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    fused.weight = nn.Parameter(_cat([m.weight for m in members]))
    if first.bias is not None:
        fused.bias = nn.Parameter(_cat([m.bias for m in members if m.bias is not None]))
    return fused


def _fuse_batch_norm(members: Sequence[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    first, k = members[0], len(members)
    device = first.running_mean.device if first.running_mean is not None else None
    fused = nn.utils.skip_init(  # type: ignore[no-untyped-call]
        nn.BatchNorm2d,
        first.num_features * k,
        eps=first.eps,
        momentum=first.momentum,
        affine=first.affine,
        track_running_stats=first.track_running_stats,
        device=device,
    )
    if first.affine:
        fused.weight = nn.Parameter(_cat([m.weight for m in members]))
        fused.bias = nn.Parameter(_cat([m.bias for m in members]))
    if first.track_running_stats:
        fused.running_mean = _cat([m.running_mean for m in members])  # type: ignore[misc]
        fused.running_var = _cat([m.running_var for m in members])  # type: ignore[misc]
        fused.num_batches_tracked = first.num_batches_tracked.detach().clone()  # type: ignore[union-attr,misc]
    return fused


def _fuse_leaf(members: Sequence[nn.Module], memberwise: tuple[type[nn.Module], ...], path: str) -> nn.Module:
    first = members[0]
    if any(type(m) is not type(first) for m in members):
        raise ConfigError(f"cannot fuse {path}: the members' modules differ in type")
    if isinstance(first, nn.Conv2d) and type(first) is nn.Conv2d:
        return _fuse_conv(members)  # type: ignore[arg-type]
    if type(first) is nn.BatchNorm2d:
        return _fuse_batch_norm(members)  # type: ignore[arg-type]
    if type(first) is nn.Linear:
        return FusedLinear(members)  # type: ignore[arg-type]
    if isinstance(first, (PadShortcut, *memberwise)):
        return Memberwise(members)
    if isinstance(first, _SHARED_LEAVES):
        return first
    raise ConfigError(
        f"cannot fuse {path or 'the model'} ({type(first).__name__}): fused training supports Conv2d, "
        "BatchNorm2d, Linear, ReLU, pooling and drop layers; train this model unfused (seeds.fuse: 1)"
    )


def _fuse(members: Sequence[nn.Module], memberwise: tuple[type[nn.Module], ...], path: str) -> nn.Module:
    first = members[0]
    children = dict(first.named_children())
    if not children or isinstance(first, memberwise):
        return _fuse_leaf(members, memberwise, path)
    if any(True for _ in first.parameters(recurse=False)) or any(True for _ in first.buffers(recurse=False)):
        raise ConfigError(f"cannot fuse {path} ({type(first).__name__}): a container with its own tensors")
    fused = copy.copy(first)  # the container's attributes and forward; fresh module dicts below
    fused.__dict__["_modules"] = {}
    fused.__dict__["_parameters"] = {}
    fused.__dict__["_buffers"] = {}
    for name in children:
        parts = [getattr(m, name) for m in members]
        fused._modules[name] = _fuse(parts, memberwise, f"{path}.{name}" if path else name)
    return fused


def fuse_models(models: Sequence[nn.Module], memberwise: Sequence[type[nn.Module]] = ()) -> nn.Module:
    """One fused model computing ``models`` side by side on member-major stacked channels.

    Args:
        models: k >= 1 models of one architecture (the same module tree and shapes), on one device.
        memberwise: further leaf types applied per member on its channel slice (the very
            instances of ``models`` are kept, with their attributes, e.g. drop layers and their
            generators); :class:`~rblock_tune.models.PadShortcut` always is.

    Returns:
        The fused model: input (B, k * C_in, H, W), member i's image in channels
        ``[i * C_in, (i + 1) * C_in)``; output (B, k * num_classes). Its state dict has the
        members' keys with member-major tensors (:func:`member_state`).

    Raises:
        ConfigError: a module the fusion does not know, or members of different architectures.
    """
    if not models:
        raise ConfigError("fuse_models needs at least one model")
    keys = [[(n, tuple(t.shape)) for n, t in m.state_dict().items()] for m in models]
    if any(k != keys[0] for k in keys[1:]):
        raise ConfigError("cannot fuse models of different architectures: their state dicts differ")
    with torch.no_grad():
        fused = _fuse(list(models), tuple(memberwise), "")
    fused.train(models[0].training)
    return fused


def member_tensor(tensor: torch.Tensor, k: int, i: int) -> torch.Tensor:
    """Member ``i``'s part of a fused tensor (a view; the tensor itself when it is a shared scalar)."""
    return tensor if tensor.dim() == 0 else tensor.chunk(k)[i]


def member_state(state: Mapping[str, torch.Tensor], k: int, i: int) -> dict[str, torch.Tensor]:
    """Member ``i``'s state dict (cloned tensors) cut out of a fused model's ``state``."""
    return {name: member_tensor(t, k, i).clone() for name, t in state.items()}


def load_member_state(fused: nn.Module, k: int, i: int, state: Mapping[str, Any]) -> None:
    """Copy a member's state dict (the solo model's format) into member ``i``'s part of ``fused``.

    Shared scalars (``num_batches_tracked``) are set from it too: every member counts the same steps.
    """
    own = fused.state_dict(keep_vars=True)
    if list(own) != list(state):
        raise ConfigError("a member state must have the fused model's keys, in its order")
    with torch.no_grad():
        for name, target in own.items():
            member_tensor(target, k, i).copy_(state[name])
