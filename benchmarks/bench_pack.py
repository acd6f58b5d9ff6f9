"""Packing small trials onto one device: n concurrent Ray trials, each holding 1/n of it.

For each n in ``--concurrency`` the script starts n Ray Tune trials at once, each with
``resources {"gpu": 1/n}`` on CUDA (``{"cpu": cores/n}`` on CPU), each training the same small
CIFAR model (default resnet20, ``bdrop_dml``, batch 128, bf16 autocast + channels_last on CUDA)
through the trainer's own ``train_step`` on synthetic data. Every trial warms up until a common
start time, then counts the steps it completes in a common window of ``--seconds``, so the figure
is the throughput of n trials that really ran side by side (not their start-up). Per n it prints
the aggregate img/s, its ratio to one trial alone, each trial's img/s, and the device memory each
trial peaked at (``torch.cuda.max_memory_allocated``; the process's peak RSS on CPU). Saved as JSON
under ``benchmarks/results/``.

    python benchmarks/bench_pack.py --device cuda --concurrency 1 2 4 8
    python benchmarks/bench_pack.py --device cpu --concurrency 1 2 --seconds 5    # a rehearsal
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from rblock_tune import __version__


def trial(config: dict[str, Any]) -> None:
    """One packed trial: warm up until ``start``, then count steps until ``start + seconds``."""
    from ray import tune

    from rblock_tune.config import load_config
    from rblock_tune.trainer import Trainer

    overrides = [
        "data.name=synthetic",
        f"data.synthetic_size={4 * config['batch_size']}",
        "data.val_size=64",
        f"model.name={config['model']}",
        f"reg.variant={config['variant']}",
        "reg.drop_prob=0.1",
        "reg.schedule=constant",
        f"train.batch_size={config['batch_size']}",
        f"train.device={config['device']}",
        f"train.compile={str(config['compile']).lower()}",
        "train.amp=true",
        "train.channels_last=true",
        "train.epochs=100000",
    ]
    trainer = Trainer(load_config(None, overrides))
    trainer.model.train()
    batches = list(trainer.train_loader.batches(trainer.data_generator))
    cuda = trainer.on_cuda
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    step = 0

    def one() -> None:
        nonlocal step
        trainer.train_step(*batches[step % len(batches)])
        step += 1

    one()  # the first step pays the allocator's and cuDNN's set-up (and compilation)
    late = time.time() > config["start"]
    while time.time() < config["start"]:
        one()
    if cuda:
        torch.cuda.synchronize()
    began, counted = time.time(), 0
    end = config["start"] + config["seconds"]
    while time.time() < end:
        one()
        counted += 1
        if cuda and counted % 10 == 0:
            torch.cuda.synchronize()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.time() - began
    memory = (
        torch.cuda.max_memory_allocated() / 2**20
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    tune.report(
        {
            "images_per_second": counted * config["batch_size"] / max(elapsed, 1e-9),
            "window_seconds": elapsed,
            "late": int(late),
            "memory_mib": memory,
            "threads": torch.get_num_threads(),
        }
    )


def run_packed(args: argparse.Namespace, n: int, storage: Path) -> list[dict[str, Any]]:
    from ray import tune

    cuda = args.device == "cuda"
    cpus = max(1, os.cpu_count() or 1)
    resources = {"gpu": 1.0 / n, "cpu": max(cpus // n, 1) / 1.0} if cuda else {"cpu": cpus / n}
    config = {
        "model": args.model,
        "variant": args.variant,
        "batch_size": args.batch_size,
        "device": args.device,
        "compile": args.compile,
        "seconds": args.seconds,
        "start": time.time() + args.startup,
        "member": tune.grid_search(list(range(n))),
    }
    tuner = tune.Tuner(
        tune.with_resources(trial, resources),
        param_space=config,
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=n),
        run_config=tune.RunConfig(name=f"pack-{n}", storage_path=str(storage), verbose=0),
    )
    results = tuner.fit()
    rows = [dict(r.metrics or {}) for r in results]
    if any(r.error for r in results):
        raise SystemExit(f"a packed trial failed at n={n}: {next(r.error for r in results if r.error)}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--variant", default="bdrop_dml")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=20.0, help="the common timed window")
    parser.add_argument(
        "--startup", type=float, default=40.0, help="seconds from launch to the window's start"
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA device is available: use --device cpu")

    import tempfile

    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(num_gpus=1 if args.device == "cuda" else 0, include_dashboard=False, log_to_driver=False)
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.concurrency:
            rows = run_packed(args, n, Path(tmp))
            per = [float(r["images_per_second"]) for r in rows]
            table.append(
                {
                    "concurrent": n,
                    "aggregate_images_per_second": sum(per),
                    "per_trial_images_per_second": per,
                    "late_trials": sum(int(r["late"]) for r in rows),
                    "memory_mib": [float(r["memory_mib"]) for r in rows],
                    "threads": [int(r["threads"]) for r in rows],
                }
            )
    ray.shutdown()
    one = next((t["aggregate_images_per_second"] for t in table if t["concurrent"] == 1), None)
    print(
        f"{args.model}/{args.variant}, batch {args.batch_size}, device {args.device}, "
        f"compile {args.compile}, window {args.seconds:g} s, torch {torch.__version__}"
    )
    heads = f"{'aggregate img/s':>16} {'vs 1 trial':>11} {'median trial img/s':>19} {'peak MiB/trial':>15}"
    print(f"{'n':>3} {heads}")
    for t in table:
        ratio = t["aggregate_images_per_second"] / one if one else float("nan")
        t["relative_to_one"] = ratio
        late = f"  ({t['late_trials']} started late: raise --startup)" if t["late_trials"] else ""
        print(
            f"{t['concurrent']:>3} {t['aggregate_images_per_second']:>16.0f} {ratio:>10.2f}x "
            f"{statistics.median(t['per_trial_images_per_second']):>19.0f} "
            f"{max(t['memory_mib']):>15.0f}{late}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_pack-{args.model}-{args.variant}-{args.device}.json"
    payload = {"version": __version__, "machine": platform.node(), "args": vars(args), "results": table}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
