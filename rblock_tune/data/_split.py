"""Stratified validation split, stratified subset and per-channel statistics."""

from __future__ import annotations

import torch

__all__ = ["PROBE_SEED_OFFSET", "allocate", "channel_stats", "probe_rows", "stratified_pick"]

PROBE_SEED_OFFSET = 20230728
"""Added to ``data.split_seed`` to seed the draw of the fixed probe batch (:func:`probe_rows`): a
stream of its own, apart from the split's."""


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


def probe_rows(labels: torch.Tensor, num_classes: int, size: int, split_seed: int) -> torch.Tensor:
    """Rows of the fixed probe batch of a split: a seeded, class-stratified random sample.

    The consistency metrics measure every trial on these rows. They depend only on the split's
    labels, ``size`` and ``split_seed``, so every trial with the same split sees the same images,
    whatever its own seed; on a class-ordered split (image folders are read class by class) the
    batch still holds every class in proportion, unlike the split's first rows.

    Args:
        labels: int64 ``(V,)`` labels of the split (the validation split).
        num_classes: number of classes.
        size: rows wanted; at most ``V`` are returned.
        split_seed: the dataset's ``data.split_seed``.

    Returns:
        Sorted int64 row indices, ``min(size, V)`` of them.
    """
    generator = torch.Generator().manual_seed(split_seed + PROBE_SEED_OFFSET)
    picked, _ = stratified_pick(labels, num_classes, min(size, int(labels.shape[0])), generator)
    return picked


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
