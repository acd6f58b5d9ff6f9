"""Decode image files into one uint8 ``(N, 3, H, W)`` tensor, in parallel.

JPEGs are decoded by ``torchvision.io.decode_jpeg`` (libjpeg-turbo, about twice as fast as
Pillow on 32x32 images), other formats by ``torchvision.io.decode_image``, with Pillow as
the fallback (and the only decoder where torchvision has no image decoders: they are
deprecated since torchvision 0.29). Every image is converted to RGB. Threads work on
chunks of files, overlapping file reads and decoding.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from rblock_tune.errors import DataError

if TYPE_CHECKING:
    import types

__all__ = ["IMAGE_EXTENSIONS", "decode_images"]

logger = logging.getLogger("rblock_tune.data")


@functools.cache
def _torchvision_io() -> types.ModuleType | None:
    """``torchvision.io``, imported on the first decode: importing torchvision pulls in its models
    and ops (and torch's compiler), about 2.5 s that a study's driver and every trial worker would
    otherwise pay at start although they read the decoded cache. None where it has no decoders."""
    try:
        import torchvision.io
    except ImportError:  # pragma: no cover - a torchvision without image decoders
        return None
    return torchvision.io


IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
"""File name endings (lower case) taken as images in image-folder layouts."""

_JPEG_MAGIC = b"\xff\xd8\xff"
_CHUNK = 512


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _read(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            parts = []
            while part := os.read(fd, 1 << 20):
                parts.append(part)
        finally:
            os.close(fd)
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {_one_line(exc)}") from None
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    if not data:
        raise DataError(f"cannot read image {path}: the file is empty; replace or delete it")
    return data


def _decode_pil(path: Path, data: torch.Tensor) -> torch.Tensor:
    try:
        with Image.open(io.BytesIO(data.numpy().tobytes())) as im:
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path}: {_one_line(exc)}; replace or delete the file") from None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def _decode_one(path: Path, data: torch.Tensor) -> torch.Tensor:
    tvio = _torchvision_io()
    if tvio is None:
        return _decode_pil(path, data)
    try:
        img: torch.Tensor = tvio.decode_image(data, mode=tvio.ImageReadMode.RGB)
        return img
    except (RuntimeError, ValueError):
        return _decode_pil(path, data)


def _resize(img: torch.Tensor, size: int) -> torch.Tensor:
    if img.shape[1] == size and img.shape[2] == size:
        return img
    out = F.interpolate(
        img[None].float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    return out[0].round_().clamp_(0, 255).to(torch.uint8)


def _decode_chunk(paths: Sequence[Path]) -> list[torch.Tensor]:
    raw = [_read(p) for p in paths]
    # one buffer for the chunk, split into views: much cheaper than a tensor per file
    flat = torch.frombuffer(bytearray(b"".join(raw)), dtype=torch.uint8)
    data = list(torch.split(flat, [len(r) for r in raw]))
    tvio = _torchvision_io()
    if tvio is not None and all(r[:3] == _JPEG_MAGIC for r in raw):
        try:
            return list(tvio.decode_jpeg(data, mode=tvio.ImageReadMode.RGB))
        except RuntimeError:
            pass  # find the bad file (or decode it with Pillow) one by one below
    return [_decode_one(p, d) for p, d in zip(paths, data, strict=True)]


def decode_images(
    paths: Sequence[Path],
    *,
    size: int | None = None,
    expect: tuple[int, int] | None = None,
    workers: int | None = None,
) -> torch.Tensor:
    """Decode image files into one tensor, converting every image to RGB.

    Args:
        paths: image files, in the order of the output rows; at least one.
        size: resize every image to ``size x size`` (bilinear, antialiased); ``None`` keeps
            the decoded size, which must then be the same for every image.
        expect: required ``(height, width)`` when ``size`` is ``None``; ``None`` takes the
            size of the first image.
        workers: decoding threads (default: the number of CPU cores, at most 4).

    Returns:
        uint8 tensor ``(len(paths), 3, H, W)``.

    Raises:
        DataError: an unreadable image, or an image whose size differs (naming the file
            and both sizes).
    """
    if not paths:
        raise ValueError("decode_images needs at least one path")
    with warnings.catch_warnings():
        # torchvision >= 0.29 warns on every decode call that its decoders are deprecated
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
        return _decode_all(paths, size, expect, workers or min(os.cpu_count() or 1, 4))


def _decode_all(
    paths: Sequence[Path], size: int | None, expect: tuple[int, int] | None, n_workers: int
) -> torch.Tensor:
    first = _decode_chunk([paths[0]])[0]
    if size is not None:
        first = _resize(first, size)
    height, width = int(first.shape[1]), int(first.shape[2])
    if size is None and expect is not None and (height, width) != expect:
        raise DataError(
            f"image {paths[0]} is {width}x{height} pixels, expected {expect[1]}x{expect[0]}; "
            "the folder does not hold this dataset"
        )
    out = torch.empty((len(paths), 3, height, width), dtype=torch.uint8)

    def work(start: int) -> None:
        chunk = paths[start : start + _CHUNK]
        images = _decode_chunk(chunk)
        if size is not None:
            images = [_resize(img, size) for img in images]
        for path, img in zip(chunk, images, strict=True):
            if img.shape[1] != height or img.shape[2] != width:
                raise DataError(
                    f"image {path} is {img.shape[2]}x{img.shape[1]} pixels but "
                    f"{paths[0]} is {width}x{height}; all images must have one size "
                    "(for an image folder, set data.image_size to resize them)"
                )
        torch.stack(images, out=out[start : start + len(chunk)])

    starts = range(0, len(paths), _CHUNK)
    if n_workers <= 1 or len(starts) <= 1:
        for start in starts:
            work(start)
        return out
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="rblock-decode") as pool:
        futures = [pool.submit(work, start) for start in starts]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return out
