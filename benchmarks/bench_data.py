"""Benchmark of ``rblock_tune.data``: CIFAR-10 cold decode, warm cache hit, loader throughput.

Loads CIFAR-10 from an image-folder copy twice through :func:`rblock_tune.data.load_dataset`:
first into an empty cache folder (decode every JPEG and write the cache), then again (cache
hit). Then measures :class:`rblock_tune.data.DeviceLoader` training batches per second
(random crop + flip + normalisation) on the chosen device.

Usage::

    mkdir -p /tmp/cifar && tar xzf ../shared/datasets/cifar10-jpeg.tar.gz -C /tmp/cifar
    python benchmarks/bench_data.py --root /tmp/cifar

``--root`` is a data root as ``data.root`` takes it (the folder holding ``cifar10-jpeg/``,
or that folder itself). ``--cache-dir`` must be empty or new; by default a temporary folder
is used and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rblock_tune.config import DataConfig
from rblock_tune.data import Dataset, DeviceLoader, load_dataset


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="data root holding the CIFAR-10 image folder")
    parser.add_argument("--cache-dir", help="empty or new cache folder (default: a temporary one)")
    parser.add_argument("--device", default="cpu", help="device for the loader benchmark (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size (default: 128)")
    parser.add_argument("--epochs", type=int, default=2, help="loader epochs to time (default: 2)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--verbose", action="store_true", help="show the data module's log lines")
    return parser.parse_args(argv)


def _time_load(config: DataConfig) -> tuple[float, Dataset]:
    start = time.perf_counter()
    dataset = load_dataset(config)
    return time.perf_counter() - start, dataset


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _loader_rate(dataset: Dataset, device: torch.device, batch_size: int, epochs: int, **kw: Any) -> float:
    loader = DeviceLoader(
        dataset.train_x,
        dataset.train_y,
        batch_size=batch_size,
        device=device,
        mean=dataset.mean,
        std=dataset.std,
        train=True,
        crop_padding=4,
        flip=True,
        **kw,
    )
    generator = torch.Generator().manual_seed(0)
    for _ in zip(range(5), loader.batches(generator), strict=False):  # warm-up
        pass
    _sync(device)
    start = time.perf_counter()
    images = 0
    for _ in range(epochs):
        for x, _y in loader.batches(generator):
            images += x.shape[0]
    _sync(device)
    return images / (time.perf_counter() - start)


def _run(args: argparse.Namespace, cache_dir: Path) -> dict[str, Any]:
    if cache_dir.exists() and any(cache_dir.iterdir()):
        raise SystemExit(f"--cache-dir {cache_dir} is not empty: give an empty or new folder")
    config = DataConfig(name="cifar10", root=str(args.root), cache_dir=str(cache_dir), download=False)
    cold, _ = _time_load(config)
    warm, dataset = _time_load(config)
    device = torch.device(args.device)
    rate = _loader_rate(dataset, device, args.batch_size, args.epochs)
    rate_cl = _loader_rate(dataset, device, args.batch_size, args.epochs, channels_last=True)
    return {
        "cold_load_s": round(cold, 3),
        "warm_load_s": round(warm, 3),
        "train_images": len(dataset.train_y),
        "loader_images_per_s": round(rate),
        "loader_channels_last_images_per_s": round(rate_cl),
        "batch_size": args.batch_size,
        "device": str(device),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the results."""
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(relativeCreated)8.0f ms %(message)s",
    )
    if args.cache_dir:
        results = _run(args, Path(args.cache_dir))
    else:
        with tempfile.TemporaryDirectory(prefix="rblock-bench-cache-") as tmp:
            results = _run(args, Path(tmp))
    m = results["machine"]
    print(
        f"machine: {m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads)"
    )
    print(f"cifar10 cold load (decode + write cache): {results['cold_load_s']:.2f} s")
    print(f"cifar10 warm load (cache hit):            {results['warm_load_s']:.2f} s")
    print(
        f"DeviceLoader train batches on {results['device']} (batch {results['batch_size']}, crop 4 + flip): "
        f"{results['loader_images_per_s']:,} images/s; channels_last: "
        f"{results['loader_channels_last_images_per_s']:,} images/s"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
