"""Batches cut, augmented and normalised on the training device.

The whole split is moved to the device once as uint8 (a training split with crop padding
is zero-padded there once, too). Each epoch draws its permutation,
crop offsets and flip coins on the CPU from one ``torch.Generator`` and moves them to the
device, so the batches are reproducible from the generator's state and identical on every
device. Random crop (zero padding) and horizontal flip are one batched ``torch.gather``
over the flattened image planes; no per-sample Python loop, no worker processes, no PIL.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

__all__ = ["DeviceLoader"]


class DeviceLoader:
    """Iterate over mini-batches of a uint8 image tensor kept on the device.

    Args:
        x: uint8 images ``(N, C, H, W)``; copied to ``device`` once.
        y: int64 labels ``(N,)``; copied to ``device`` once.
        batch_size: images per batch (>= 1).
        device: where the data and the batches live.
        mean: per-channel mean in ``[0, 1]`` (``C`` values).
        std: per-channel standard deviation in ``[0, 1]`` (``C`` positive values).
        train: ``True``: shuffle, augment and drop the last partial batch (but if
            ``N < batch_size``, yield one batch of all ``N`` images). ``False``: all rows in
            order, without augmentation.
        crop_padding: random crop after zero padding by this many pixels on each side
            (training only; 0 disables it).
        flip: random horizontal flip with probability 0.5 per image (training only).
        channels_last: yield batches in ``torch.channels_last`` memory format.

    Batches are ``(images, labels)``: float ``(B, C, H, W)`` images (torch's default float dtype when
    the loader is built: float32 unless a test asks for float64) normalised as
    ``(x / 255 - mean) / std`` and int64 ``(B,)`` labels, both on ``device``.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        batch_size: int,
        device: torch.device | str,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        crop_padding: int = 4,
        flip: bool = True,
        channels_last: bool = False,
    ) -> None:
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"x must be uint8 (N, C, H, W), but got {x.dtype} {tuple(x.shape)}")
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"y must be (N,) with N = {x.shape[0]} labels, but got {tuple(y.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, but got {batch_size=}")
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, but got {crop_padding=}")
        channels = x.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(
                f"mean and std need {channels} values (one per channel), but got {len(mean)} and {len(std)}"
            )
        if any(not s > 0 for s in std):
            raise ValueError(f"std must be positive, but got {tuple(std)}")
        if train and x.shape[0] == 0:
            raise ValueError("a training loader needs at least one image")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.train = train
        self.crop_padding = crop_padding if train else 0
        self.flip = flip and train
        self.channels_last = channels_last
        self._n, self._c, self._h, self._w = (int(v) for v in x.shape)
        data = x.to(self.device).contiguous()
        if self.crop_padding > 0:
            # pad the whole split once, so a batch is one gather from the padded images
            p = self.crop_padding
            data = F.pad(data, (p, p, p, p))
        self._data = data
        self._y = y.to(self.device, dtype=torch.int64)
        std_t = torch.tensor(std, dtype=torch.float64)
        mean_t = torch.tensor(mean, dtype=torch.float64)
        # (x / 255 - mean) / std == x * scale + shift
        dtype = torch.get_default_dtype()
        self._scale = (1.0 / (255.0 * std_t)).to(self.device, dtype).view(1, -1, 1, 1)
        self._shift = (-mean_t / std_t).to(self.device, dtype).view(1, -1, 1, 1)

    def __len__(self) -> int:
        """Batches per epoch."""
        n = self._n
        if self.train:
            return max(1, n // self.batch_size)
        return -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        """Images yielded per epoch."""
        n = self._n
        if self.train and n >= self.batch_size:
            return n // self.batch_size * self.batch_size
        return n

    def _normalise(self, xb: torch.Tensor) -> torch.Tensor:
        out = xb.to(self._scale.dtype)  # keeps the memory format of xb
        return out.mul_(self._scale).add_(self._shift)

    def batches(
        self, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield one epoch of ``(images, labels)`` batches.

        Args:
            generator: CPU generator for the permutation, then the crop offsets, then the
                flip coins of the whole epoch (drawn when iteration starts); ``None`` uses
                the global torch RNG. Ignored when ``train`` is false.

        Yields:
            float normalised images ``(B, C, H, W)`` and int64 labels ``(B,)``, on the device.
        """
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(f"generator must be a CPU generator, but got one on {generator.device}")
        if self.train:
            yield from self._train_batches(generator)
        else:
            yield from self._eval_batches()

    def _eval_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, self._n, self.batch_size):
            xb = self._data[start : start + self.batch_size]
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield self._normalise(xb), self._y[start : start + self.batch_size]

    def _train_batches(
        self, generator: torch.Generator | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, c, h, w = self._n, self._c, self._h, self._w
        total = self.num_samples
        batch = min(self.batch_size, n)
        pad = self.crop_padding
        dev = self.device
        perm = torch.randperm(n, generator=generator)[:total].to(dev)
        offsets = torch.randint(0, 2 * pad + 1, (total, 2), generator=generator).to(dev) if pad else None
        flips = (torch.rand(total, generator=generator) < 0.5).to(dev) if self.flip else None
        if offsets is None and flips is None:
            for start in range(0, total, batch):
                idx = perm[start : start + batch]
                xb = self._data[idx]
                if self.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                yield self._normalise(xb), self._y[idx]
            return
        hp, wp = int(self._data.shape[2]), int(self._data.shape[3])
        ar_h = torch.arange(h, device=dev)
        ar_w = torch.arange(w, device=dev)
        for start in range(0, total, batch):
            idx = perm[start : start + batch]
            bsz = idx.shape[0]
            # rows and columns to read from the (padded) images: crop offset, then mirror
            if offsets is not None:
                oy, ox = offsets[start : start + bsz, 0:1], offsets[start : start + bsz, 1:2]
                rows, cols = oy + ar_h, ox + ar_w  # (B, H), (B, W)
            else:
                rows, cols = ar_h.expand(bsz, h), ar_w.expand(bsz, w)
            if flips is not None:
                cols = torch.where(flips[start : start + bsz, None], cols.flip(1), cols)
            # one gather over the flattened (padded) planes: ~5x faster than 4-D advanced indexing
            where = (rows[:, :, None] * wp + cols[:, None, :]).view(bsz, 1, h * w).expand(bsz, c, h * w)
            out = self._data[idx].view(bsz, c, hp * wp).gather(2, where).view(bsz, c, h, w)
            if self.channels_last:
                out = out.contiguous(memory_format=torch.channels_last)
            yield self._normalise(out), self._y[idx]
