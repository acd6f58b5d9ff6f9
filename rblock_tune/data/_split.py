"""Stratified validation split, stratified subset and per-channel statistics."""

from __future__ import annotations

import torch

__all__ = ["allocate", "channel_stats", "stratified_pick"]


def allocate(counts: list[int], total: int) -> list[int]:
    """Share ``total`` among classes in proportion to ``counts`` (largest remainder).

    Exact integer arithmetic; ties go to the lower class index. No class gets more than
    its count.

    Args:
        counts: images per class.
        total: images to pick, ``0 <= total <= sum(counts)``.

    Returns:
        Images to pick per class, summing to ``total``.
    """
    n = sum(counts)
    if not 0 <= total <= n:
        raise ValueError(f"total must be in [0, {n}], but got {total=}")
    if n == 0:
        return [0] * len(counts)
    base = [c * total // n for c in counts]
    remainders = [c * total % n for c in counts]
    extra = total - sum(base)
    for k in sorted(range(len(counts)), key=lambda k: (-remainders[k], k))[:extra]:
        base[k] += 1
    return base


def stratified_pick(
    labels: torch.Tensor, num_classes: int, total: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick ``total`` rows at random, stratified by class.

    For every class in label order, one permutation of that class's rows is drawn from
    ``generator`` (even when the class contributes nothing, so the draws do not depend on
    ``total``); the first rows of each permutation are picked.

    Args:
        labels: int64 ``(N,)`` labels in ``[0, num_classes)``.
        num_classes: number of classes.
        total: rows to pick, ``0 <= total <= N``.
        generator: CPU generator for the permutations.

    Returns:
        ``(picked, rest)``: sorted int64 row indices, disjoint, together ``0..N-1``.
    """
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    quota = allocate(counts, total)
    order = torch.argsort(labels, stable=True)
    picked: list[torch.Tensor] = []
    rest: list[torch.Tensor] = []
    start = 0
    for k in range(num_classes):
        rows = order[start : start + counts[k]]
        start += counts[k]
        rows = rows[torch.randperm(counts[k], generator=generator)]
        picked.append(rows[: quota[k]])
        rest.append(rows[quota[k] :])
    return torch.cat(picked).sort().values, torch.cat(rest).sort().values


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population standard deviation of uint8 images, in ``[0, 1]``.

    Exact: computed from a 256-bin histogram per channel in float64. The std is floored
    at ``1 / 255`` (one intensity level), so a constant channel normalises to 0 instead of
    dividing by zero.

    Args:
        x: uint8 ``(N, C, H, W)`` images, ``N >= 1``.

    Returns:
        ``(mean, std)``, one value per channel.
    """
    if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[0] == 0:
        raise ValueError(f"x must be non-empty uint8 (N, C, H, W), but got {x.dtype} {tuple(x.shape)}")
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means: list[float] = []
    stds: list[float] = []
    for c in range(x.shape[1]):
        hist = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        n = hist.sum()
        mean = (hist * values).sum() / n
        var = (hist * (values - mean) ** 2).sum() / n
        means.append(float(mean))
        stds.append(max(float(var.sqrt()), 1.0 / 255.0))
    return tuple(means), tuple(stds)
