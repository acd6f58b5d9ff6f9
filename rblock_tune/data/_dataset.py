"""The in-memory dataset: uint8 image tensors plus labels for train, val and test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

__all__ = ["Dataset", "RawSplits"]


class RawSplits(NamedTuple):
    """A dataset as decoded from its source (and as cached): the full train and test sets.

    Attributes:
        train_x: uint8 ``(N, C, H, W)`` training images.
        train_y: int64 ``(N,)`` training labels in ``[0, len(class_names))``.
        test_x: uint8 ``(M, C, H, W)`` test images.
        test_y: int64 ``(M,)`` test labels.
        class_names: one name per class, in label order.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: tuple[str, ...]


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Train, validation and test images of one dataset, held in CPU memory.

    Images are uint8 ``(N, C, H, W)`` contiguous CPU tensors, labels int64 ``(N,)``.
    The validation set is carved out of the training set by ``data.split_seed``;
    it may be empty (``V = 0``).

    Attributes:
        name: dataset name (``cifar10``, ``cifar100``, ``tinyimagenet``, ``imagefolder``,
            ``synthetic``).
        train_x: uint8 ``(N, C, H, W)`` training images (after the validation split and subset).
        train_y: int64 ``(N,)`` training labels.
        val_x: uint8 ``(V, C, H, W)`` validation images; ``V`` may be 0.
        val_y: int64 ``(V,)`` validation labels.
        test_x: uint8 ``(M, C, H, W)`` test images.
        test_y: int64 ``(M,)`` test labels.
        num_classes: number of classes.
        class_names: one name per class, in label order.
        mean: per-channel mean in ``[0, 1]`` of ``train_x``.
        std: per-channel (population) standard deviation in ``[0, 1]`` of ``train_x``,
            at least ``1 / 255``.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def in_channels(self) -> int:
        """Number of image channels ``C``."""
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """Image height and width ``(H, W)``."""
        return int(self.train_x.shape[2]), int(self.train_x.shape[3])

    def __repr__(self) -> str:
        c = self.in_channels
        h, w = self.image_size
        return (
            f"Dataset(name={self.name!r}, train={len(self.train_y)}, val={len(self.val_y)}, "
            f"test={len(self.test_y)}, image={c}x{h}x{w}, num_classes={self.num_classes})"
        )
