"""Fused seeds: training throughput of k runs fused into one model against k separate runs.

For each variant and each k, times ``--steps`` optimisation steps of every member through
:meth:`FusedTrainer.train_step` (one fused model, k batches per step) and the same number of steps
of k separate :class:`Trainer` runs one after another (``Trainer.train_step``), on batches cut
beforehand, so both process the same images. Repeats are interleaved across k and arms so machine
drift hits all alike; prints img/s (min / median / max) and the speed-up of fusing (separate time
over fused time, medians), and saves the figures as JSON under ``benchmarks/results/``.

    python benchmarks/bench_fused.py                          # resnet20, CPU, none and bdrop_dml
    python benchmarks/bench_fused.py --device cuda --ks 1 2 4 8 16   # bf16 autocast + channels_last
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

from rblock_tune import __version__
from rblock_tune.config import TrialConfig, load_config
from rblock_tune.trainer import FusedTrainer, Trainer


def make_config(args: argparse.Namespace, variant: str, seed: int) -> TrialConfig:
    return load_config(
        None,
        [
            "data.name=synthetic",
            f"data.synthetic_size={max(2 * args.batch_size, 256)}",
            "data.val_size=64",
            f"model.name={args.model}",
            f"reg.variant={variant}",
            "reg.drop_prob=0.1",
            "reg.block_size=3",
            "reg.schedule=constant",
            f"train.batch_size={args.batch_size}",
            f"train.device={args.device}",
            "train.epochs=1000",
            f"seed={seed}",
        ],
    )


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


class FusedArm:
    def __init__(self, configs: list[TrialConfig]) -> None:
        self.trainer = FusedTrainer(configs)
        self.trainer.model.train()
        t = self.trainer
        self.batches = [list(t.train_loader.batches(g)) for g in t.data_generators]

    def run(self, steps: int) -> None:
        for s in range(steps):
            parts = [b[s % len(b)] for b in self.batches]
            self.trainer.train_step([p[0] for p in parts], [p[1] for p in parts])


class SeparateArm:
    def __init__(self, configs: list[TrialConfig]) -> None:
        self.trainers = [Trainer(c) for c in configs]
        self.batches = [list(t.train_loader.batches(t.data_generator)) for t in self.trainers]
        for t in self.trainers:
            t.model.train()

    def run(self, steps: int) -> None:
        for trainer, batches in zip(self.trainers, self.batches, strict=True):
            for s in range(steps):
                trainer.train_step(*batches[s % len(batches)])


def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    cuda = args.device == "cuda"
    results = []
    for variant in args.variants:
        arms: dict[tuple[int, str], FusedArm | SeparateArm] = {}
        for k in args.ks:
            configs = [make_config(args, variant, seed) for seed in range(k)]
            arms[(k, "fused")] = FusedArm(configs)
            arms[(k, "separate")] = SeparateArm(configs)
        memory: dict[tuple[int, str], float] = {}
        for key, arm in arms.items():  # warm-up (and the peak memory of one step, on a GPU)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            arm.run(args.warmup)
            _sync(cuda)
            if cuda:
                memory[key] = torch.cuda.max_memory_allocated() / 2**20
        seconds: dict[tuple[int, str], list[float]] = {key: [] for key in arms}
        for _ in range(args.repeats):
            for key, arm in arms.items():
                _sync(cuda)
                start = time.perf_counter()
                arm.run(args.steps)
                _sync(cuda)
                seconds[key].append(time.perf_counter() - start)
        for k in args.ks:
            row: dict[str, Any] = {"variant": variant, "k": k}
            images = k * args.steps * args.batch_size
            for mode in ("fused", "separate"):
                rates = sorted(images / s for s in seconds[(k, mode)])
                row[f"{mode}_img_s"] = [rates[0], statistics.median(rates), rates[-1]]
                row[f"{mode}_seconds"] = seconds[(k, mode)]
                if (k, mode) in memory:
                    row[f"{mode}_peak_mib"] = memory[(k, mode)]
            row["speedup"] = statistics.median(seconds[(k, "separate")]) / statistics.median(
                seconds[(k, "fused")]
            )
            results.append(row)
        del arms
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--variants", "--variant", nargs="+", default=["bdrop_dml", "none"])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per member per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    results = bench(args)
    print(
        f"{args.model}, batch {args.batch_size} per member, device {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; "
        f"{args.steps} steps x {args.repeats} interleaved repeats"
    )
    header = ("variant", "k", "fused img/s (min/med/max)", "separate img/s (min/med/max)", "speed-up")
    print(f"{header[0]:<10} {header[1]:>3} {header[2]:>28} {header[3]:>30} {header[4]:>9}")
    for r in results:
        fused = "/".join(f"{v:.0f}" for v in r["fused_img_s"])
        separate = "/".join(f"{v:.0f}" for v in r["separate_img_s"])
        mem = (
            f"  peak MiB {r['fused_peak_mib']:.0f} vs {r['separate_peak_mib']:.0f}"
            if "fused_peak_mib" in r
            else ""
        )
        print(f"{r['variant']:<10} {r['k']:>3} {fused:>28} {separate:>30} {r['speedup']:>8.2f}x{mem}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_fused-{args.model}-{args.device}.json"
    payload = {"version": __version__, "machine": platform.node(), "args": vars(args), "results": results}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
