"""Platform overhead: k trials as a study (Ray Tune + Optuna + MLflow) vs plain ``rblock-tune train``.

The same k trial configs (a grid over ``reg.alpha``) run (1) one after another as separate
``rblock-tune train`` processes, as a user would run them by hand, (2) as a study with one
trial at a time (FIFO, ``max_concurrent=1``: the pure overhead), and (3) as a study with
``--concurrent`` trials at a time. Wall times include Ray's start and MLflow's set-up. Prints
and saves the figures under ``benchmarks/results/``.

    python benchmarks/bench_study_overhead.py --trials 4 --epochs 2
    python benchmarks/bench_study_overhead.py --data-root /data/cifar10-jpeg --subset 2000
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rblock_tune import __version__


def base_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.data_root:
        data: dict[str, Any] = {
            "name": "cifar10",
            "root": args.data_root,
            "subset": args.subset,
            "val_size": 1000,
            "download": False,
        }
    else:
        data = {"name": "synthetic", "synthetic_size": args.subset, "val_size": 128}
    return {
        "seed": 0,
        "data": data,
        "model": {"name": "resnet8"},
        "reg": {"variant": "bdrop_dml", "drop_prob": 0.1, "block_size": 3},
        "train": {"epochs": args.epochs, "batch_size": 128, "lr": 0.05, "device": "cpu"},
    }


def alphas(k: int) -> list[float]:
    return [round(0.25 * 2**i, 4) for i in range(k)]


def plain(args: argparse.Namespace, work: Path) -> float:
    base = base_config(args)
    sets = [
        f"{section}.{k}={json.dumps(v)}"
        for section, sub in base.items()
        if isinstance(sub, dict)
        for k, v in sub.items()
    ]
    start = time.perf_counter()
    for i, alpha in enumerate(alphas(args.trials)):
        cmd = [sys.executable, "-m", "rblock_tune.cli", "-q", "train", "--out", str(work / f"plain{i}")]
        for s in [*sets, f"reg.alpha={alpha}"]:
            cmd += ["--set", s]
        subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def study(args: argparse.Namespace, work: Path, concurrent: int) -> float:
    spec = {
        "name": f"overhead-c{concurrent}",
        "base": base_config(args),
        "space": {"reg.alpha": {"type": "categorical", "values": alphas(args.trials)}},
        "search": {"algorithm": "grid", "max_concurrent": concurrent},
        "scheduler": {"type": "fifo"},
        "resources": {"cpus": 1},
    }
    path = work / f"{spec['name']}.yaml"
    path.write_text(json.dumps(spec))
    start = time.perf_counter()
    cmd = [
        sys.executable,
        "-m",
        "rblock_tune.cli",
        "-q",
        "study",
        "run",
        str(path),
        "--workdir",
        str(work / "study"),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--subset", type=int, default=2000, help="training images (synthetic size or CIFAR subset)"
    )
    parser.add_argument("--data-root", help="CIFAR-10 image folder (default: synthetic data)")
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t_plain = plain(args, work)
        t_study1 = study(args, work, 1)
        t_study2 = study(args, work, args.concurrent)
    data = "cifar10" if args.data_root else "synthetic"
    print(
        f"{args.trials} trials of resnet8/bdrop_dml, {args.epochs} epochs, {args.subset} {data} images, CPU"
    )
    print(f"plain rblock-tune train, one after another: {t_plain:7.1f} s")
    print(f"study, 1 trial at a time:                   {t_study1:7.1f} s  ({t_study1 / t_plain:.2f}x plain)")
    print(
        f"study, {args.concurrent} trials at a time:                  {t_study2:7.1f} s  "
        f"({t_study2 / t_plain:.2f}x plain)"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_study_overhead-{data}.json"
    path.write_text(
        json.dumps(
            {
                "version": __version__,
                "machine": platform.node(),
                "args": vars(args),
                "plain_seconds": t_plain,
                "study_1_seconds": t_study1,
                "study_n_seconds": t_study2,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
