"""Training throughput of every regularizer variant, and the share of mask sampling.

Measures, on this machine, optimisation steps of one model (default ``resnet20``, batch
128) through the trainer's own ``train_step`` for ``none``, ``dropblock``, ``random_dml``,
``bdrop_dml`` and ``sdrop_dml``, and prints images per second, each variant's time per
step relative to ``none`` (two-sub-model variants process 2B rows, so their floor is
about 2x) and the share of step time spent sampling masks. Figures are printed and
saved as JSON under ``benchmarks/results/``.

    python benchmarks/bench_train.py                      # CPU, resnet20
    python benchmarks/bench_train.py --device cuda        # bf16 autocast + channels_last
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import rblock_tune.regularizers._layers as layers_module
from rblock_tune import __version__
from rblock_tune.config import load_config
from rblock_tune.regularizers import sample_masks
from rblock_tune.trainer import Trainer

VARIANTS = ("none", "dropblock", "random_dml", "bdrop_dml", "sdrop_dml")


class MaskTimer:
    """Wraps ``sample_masks`` inside the drop layers and adds up its wall time."""

    def __init__(self, cuda: bool) -> None:
        self.seconds = 0.0
        self.cuda = cuda

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, ...]:
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        masks = sample_masks(*args, **kwargs)
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        return masks


def make_trainer(args: argparse.Namespace, variant: str, batch_size: int) -> Trainer:
    overrides = [
        "data.name=synthetic",
        f"data.synthetic_size={max(4 * batch_size, 256)}",
        "data.val_size=64",
        f"model.name={args.model}",
        f"reg.variant={variant}",
        "reg.drop_prob=0.1",
        "reg.block_size=3",
        "reg.schedule=constant",
        f"train.batch_size={batch_size}",
        f"train.device={args.device}",
        f"train.compile={str(args.compile).lower()}",
        "train.epochs=1000",
    ]
    trainer = Trainer(load_config(None, overrides))
    trainer.model.train()
    return trainer


def time_steps(trainer: Trainer, batches: list[Any], steps: int, timer: MaskTimer) -> tuple[float, float]:
    """Seconds per step and the share of it spent sampling masks."""
    timer.seconds = 0.0
    if trainer.on_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        trainer.train_step(*batches[i % len(batches)])
    if trainer.on_cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return elapsed / steps, timer.seconds / elapsed


def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Time every arm; repeats are interleaved across arms so machine drift hits all alike."""
    arms = [(v, v, args.batch_size) for v in args.variants]
    # The floor of the two-sub-model variants: a plain step on 2B rows, as [x; x] has.
    arms.append(("none@2B", "none", 2 * args.batch_size))
    trainers = {label: make_trainer(args, variant, bs) for label, variant, bs in arms}
    batches = {label: list(t.train_loader.batches(t.data_generator)) for label, t in trainers.items()}
    timer = MaskTimer(any(t.on_cuda for t in trainers.values()))
    original = layers_module.sample_masks
    layers_module.sample_masks = timer  # type: ignore[assignment]
    steps: dict[str, list[float]] = {label: [] for label in trainers}
    shares: dict[str, list[float]] = {label: [] for label in trainers}
    try:
        for label, trainer in trainers.items():
            time_steps(trainer, batches[label], args.warmup, timer)
        for _ in range(args.repeats):
            for label, trainer in trainers.items():
                step, share = time_steps(trainer, batches[label], args.steps, timer)
                steps[label].append(step)
                shares[label].append(share)
    finally:
        layers_module.sample_masks = original
    results = []
    for label, _, batch_size in arms:
        step = statistics.median(steps[label])
        results.append(
            {
                "variant": label,
                "batch_size": batch_size,
                "step_seconds": step,
                "images_per_second": batch_size / step,
                "mask_share": statistics.median(shares[label]),
                "step_seconds_all": steps[label],
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    results = bench(args)
    base = next((r for r in results if r["variant"] == "none"), results[0])
    print(
        f"{args.model}, batch {args.batch_size}, device {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print("none@2B = a plain step on 2B rows: the floor of the paired variants' [x; x] step")
    print(f"{'variant':<12} {'img/s':>8} {'ms/step':>9} {'vs none':>8} {'mask share':>11}")
    for r in results:
        r["relative_to_none"] = r["step_seconds"] / base["step_seconds"]
        print(
            f"{r['variant']:<12} {r['images_per_second']:>8.0f} {1000 * r['step_seconds']:>9.1f} "
            f"{r['relative_to_none']:>7.2f}x {100 * r['mask_share']:>10.1f}%"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_train-{args.model}-{args.device}.json"
    payload = {"version": __version__, "machine": platform.node(), "args": vars(args), "results": results}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
