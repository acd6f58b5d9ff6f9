"""Platform overhead: k trials as a study (Ray Tune + Optuna + MLflow) vs plain ``rblock-tune train``.

The same k trial configs (a grid over ``reg.alpha``) run (1) one after another as separate
``rblock-tune train`` processes, as a user would run them by hand, (2) as a study with one
trial at a time (FIFO, ``max_concurrent=1``), and (3) as a study with ``--concurrent`` trials at
a time. Wall times include Ray's start and MLflow's set-up. ``--repeats`` rounds run the three
side by side, interleaved (the order rotates each round); the ratios are printed as
min/median/max over the rounds. Ray runs its workers at niceness 15: on a busy machine a plain run
at niceness 0 would get a larger share of the CPUs than a trial, so the plain runs run at 15 too
(``--plain-nice``; the difference vanishes on a quiet machine).

Each study runs with ``RBLOCK_PROFILE_DIR`` set, so every trial writes its per-phase wall times
(:mod:`rblock_tune.tuning._profile`); the script splits each study's wall time into where it went
(driver start, worker start, data, MLflow, checkpoints, reports, training, gaps between trials)
and prints the table of the median round. "Platform time per trial" is the wall time that is not
training (the trials' ``epoch_seconds``, divided by the concurrency), per trial, for the plain
runs and the studies alike. Prints and saves the figures under ``benchmarks/results/``.

    python benchmarks/bench_study_overhead.py --trials 4 --epochs 2 --repeats 3
    python benchmarks/bench_study_overhead.py --epochs 3 --subset 4000
    python benchmarks/bench_study_overhead.py --trials 12 --epochs 1 --subset 512   # short trials
    python benchmarks/bench_study_overhead.py --threads 1     # trials held to Ray's one thread
    python benchmarks/bench_study_overhead.py --data-root /data/cifar10-jpeg --subset 2000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rblock_tune import __version__
from rblock_tune.tuning._profile import PHASES, PROFILE_DIR_ENV

ROWS = (
    ("driver", "driver start: imports, Ray start, set-up (until the 1st worker exists)"),
    ("worker_start", "worker start and imports (new worker processes)"),
    ("data", "data load"),
    ("mlflow_run", "MLflow run creation"),
    ("build", "trainer build (model, loaders, optimiser)"),
    ("restore", "restore check"),
    ("train_measured", "training itself (epoch_seconds)"),
    ("train_rest", "rest of the epochs loop (test pass, generator)"),
    ("checkpoint", "checkpoint writes (save + own copy)"),
    ("mlflow_epoch", "per-epoch MLflow logging"),
    ("report", "reporting (tune.report)"),
    ("report_checkpoint", "reporting with a checkpoint (tune.report, Ray's copy)"),
    ("finish", "MLflow run finish"),
    ("in_trial_other", "in the trial, unattributed"),
    ("between", "between trials (Ray scheduling, actor reuse)"),
    ("after", "driver after the last trial (records, Ray shutdown)"),
    ("unexplained", "unexplained (wall - rows above)"),
)


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
    train: dict[str, Any] = {"epochs": args.epochs, "batch_size": 128, "lr": 0.05, "device": "cpu"}
    if args.checkpoint_every is not None:
        train["checkpoint_every"] = args.checkpoint_every
    return {
        "seed": 0,
        "data": data,
        "model": {"name": "resnet8"},
        "reg": {"variant": "bdrop_dml", "drop_prob": 0.1, "block_size": 3},
        "train": train,
    }


def alphas(k: int) -> list[float]:
    return [round(0.25 * 2**i, 4) for i in range(k)]


def plain(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    base = base_config(args)
    sets = [
        f"{section}.{k}={json.dumps(v)}"
        for section, sub in base.items()
        if isinstance(sub, dict)
        for k, v in sub.items()
    ]
    outs = []
    start = time.perf_counter()
    for i, alpha in enumerate(alphas(args.trials)):
        out = work / f"plain{i}-{time.monotonic_ns()}"
        cmd = [sys.executable, "-m", "rblock_tune.cli", "-q", "train", "--out", str(out)]
        for s in [*sets, f"reg.alpha={alpha}"]:
            cmd += ["--set", s]
        subprocess.run(cmd, check=True, capture_output=True, preexec_fn=lambda: os.nice(args.plain_nice))
        outs.append(out)
    wall = time.perf_counter() - start
    trained = sum(
        r["epoch_seconds"] for out in outs for r in json.loads((out / "metrics.json").read_text())["epochs"]
    )
    return {"wall": wall, "epoch_seconds": trained}


def study(args: argparse.Namespace, work: Path, concurrent: int, round_: int) -> dict[str, Any]:
    name = f"overhead-c{concurrent}-r{round_}"
    spec = {
        "name": name,
        "base": base_config(args),
        "space": {"reg.alpha": {"type": "categorical", "values": alphas(args.trials)}},
        "search": {"algorithm": "grid", "max_concurrent": concurrent},
        "scheduler": {"type": "fifo"},
        "resources": {"cpus": args.cpus, "threads": args.threads},
    }
    path = work / f"{name}.yaml"
    path.write_text(json.dumps(spec))
    profile_dir = work / f"profile-{name}"
    env = {**os.environ, PROFILE_DIR_ENV: str(profile_dir)}
    cmd = [sys.executable, "-m", "rblock_tune.cli", "-q", "study", "run", str(path)]
    cmd += ["--workdir", str(work / f"study-{name}")]
    t0 = time.time()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    t_end = time.time()
    trials = [
        json.loads(line) for f in sorted(profile_dir.glob("*.jsonl")) for line in f.read_text().splitlines()
    ]
    return {"wall": t_end - t0, **breakdown(trials, t0, t_end, concurrent)}


def breakdown(trials: list[dict[str, Any]], t0: float, t_end: float, concurrent: int) -> dict[str, Any]:
    """Split a study's wall time. Study-level rows are seconds of the study's timeline; in-trial
    rows are summed over the trials and divided by the concurrency (trials overlap). One at a
    time the rows add up to the wall time; with several at once the remainder is "unexplained"."""
    trials = sorted(trials, key=lambda t: t["entered"])
    rows = dict.fromkeys((key for key, _ in ROWS), 0.0)
    first = trials[0]
    started = max(first["process_started"] or t0, t0)
    rows["driver"] = started - t0
    rows["worker_start"] = first["entered"] - started
    idle = 0.0  # no trial running, between the first start and the last end
    busy_until = first["entered"]
    for t in trials:
        seconds = t["seconds"]
        for phase in PHASES:
            if phase != "train":
                rows[phase] += seconds[phase] / concurrent
        trained = t.get("epoch_seconds", 0.0)
        rows["train_measured"] += trained / concurrent
        rows["train_rest"] += (seconds["train"] - trained) / concurrent
        rows["in_trial_other"] += (t["left"] - t["entered"] - sum(seconds.values())) / concurrent
        if t["entered"] > busy_until:
            gap = t["entered"] - busy_until
            if concurrent == 1 and t["earlier_trials"] == 0:  # a new worker: its start, in the gap
                new_worker = t["entered"] - max(t["process_started"] or t0, busy_until)
                rows["worker_start"] += new_worker
                gap -= new_worker
            idle += gap
        busy_until = max(busy_until, t["left"])
    rows["between"] = idle
    rows["after"] = t_end - busy_until
    rows["unexplained"] = (t_end - t0) - sum(v for k, v in rows.items() if k != "unexplained")
    return {
        "rows": rows,
        "trials": len(trials),
        "worker_processes": len({t["pid"] for t in trials}),
        "threads": sorted({t["threads"] for t in trials}),
        "epoch_seconds": sum(t.get("epoch_seconds", 0.0) for t in trials),
        "checkpoints": sum(t.get("checkpoints", 0) for t in trials) / concurrent,
        "epochs": sum(t.get("epochs", 0) for t in trials) / concurrent,
    }


def _stats(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--subset", type=int, default=2000, help="training images (synthetic size or CIFAR subset)"
    )
    parser.add_argument("--data-root", help="CIFAR-10 image folder (default: synthetic data)")
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--cpus", type=float, default=1.0, help="resources.cpus of each trial")
    parser.add_argument("--threads", default="auto", help="resources.threads: auto or a count")
    parser.add_argument("--checkpoint-every", type=int, help="train.checkpoint_every (default: the default)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds")
    parser.add_argument(
        "--plain-nice",
        type=int,
        default=15,
        help="niceness of the plain runs (default 15: Ray runs its workers at niceness 15, so on a busy "
        "machine the plain runs get the same share of the CPUs; 0 gives them the user's own priority)",
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.threads != "auto":
        args.threads = int(args.threads)
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for r in range(args.repeats):
            runs = {
                "plain": lambda: plain(args, work),
                "study_1": lambda r=r: study(args, work, 1, r),
                "study_n": lambda r=r: study(args, work, args.concurrent, r),
            }
            order = list(runs)
            order = order[r % 3 :] + order[: r % 3]
            rounds.append({key: runs[key]() for key in order})
            got = rounds[-1]
            print(
                f"round {r + 1}: plain {got['plain']['wall']:.1f} s, "
                f"1 at a time {got['study_1']['wall']:.1f} s, "
                f"{args.concurrent} at a time {got['study_n']['wall']:.1f} s",
                flush=True,
            )
    data = "cifar10" if args.data_root else "synthetic"
    k = args.trials
    print(
        f"\n{k} trials of resnet8/bdrop_dml, {args.epochs} epochs, {args.subset} {data} images, CPU "
        f"({os.cpu_count()} cores), resources.cpus={args.cpus:g}, threads={args.threads}, "
        f"{args.repeats} interleaved rounds (min / median / max)"
    )
    plain_walls = [r["plain"]["wall"] for r in rounds]
    print(f"plain rblock-tune train, one after another: {_stats(plain_walls)} s")
    ratios: dict[str, list[float]] = {}
    for key, label in (("study_1", "1 trial at a time"), ("study_n", f"{args.concurrent} trials at a time")):
        walls = [r[key]["wall"] for r in rounds]
        ratios[key] = [r[key]["wall"] / r["plain"]["wall"] for r in rounds]
        print(f"study, {label:<19}: {_stats(walls)} s   ratio to plain {_stats(ratios[key])}x")
    # the breakdown of the median round of each study
    print("\nwhere a study's wall time goes (median round; seconds; in-trial rows / concurrency)")
    medians = {}
    for key in ("study_1", "study_n"):
        ordered = sorted(rounds, key=lambda r, key=key: r[key]["wall"])
        medians[key] = ordered[len(ordered) // 2][key]
    c1, cn = medians["study_1"], medians["study_n"]
    print(f"{'':<68}{'1 at a time':>12}{f'{args.concurrent} at a time':>14}")
    for key, label in ROWS:
        print(f"{label:<68}{c1['rows'][key]:>12.2f}{cn['rows'][key]:>14.2f}")
    print(f"{'study wall time':<68}{c1['wall']:>12.2f}{cn['wall']:>14.2f}")
    for name, m in (("1 at a time", c1), (f"{args.concurrent} at a time", cn)):
        print(
            f"{name}: {m['trials']} trials in {m['worker_processes']} worker processes, "
            f"torch threads per trial {m['threads']}"
        )
    per_trial: dict[str, list[float]] = {"plain": [], "study_1": [], "study_n": []}
    for r in rounds:
        per_trial["plain"].append((r["plain"]["wall"] - r["plain"]["epoch_seconds"]) / k)
        per_trial["study_1"].append((r["study_1"]["wall"] - r["study_1"]["epoch_seconds"]) / k)
        per_trial["study_n"].append(
            (r["study_n"]["wall"] - r["study_n"]["epoch_seconds"] / args.concurrent) / k
        )
    for name, m in (("1 at a time", c1), (f"{args.concurrent} at a time", cn)):
        cost = (m["rows"]["checkpoint"] + m["rows"]["report_checkpoint"]) / max(m["checkpoints"], 1)
        epoch = m["rows"]["train_measured"] / max(m["epochs"], 1)
        print(
            f"{name}: a checkpoint (save, own copy, report with it) costs {cost:.3f} s, "
            f"{100 * cost / epoch:.1f}% of an epoch ({epoch:.2f} s, per concurrency slot)"
        )
    print("\nplatform time per trial (wall - epoch_seconds / concurrency, per trial), min / median / max:")
    print(f"  plain runs:          {_stats(per_trial['plain'])} s")
    print(f"  study, 1 at a time:  {_stats(per_trial['study_1'])} s")
    print(f"  study, {args.concurrent} at a time:  {_stats(per_trial['study_n'])} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{data}-t{k}-e{args.epochs}-n{args.subset}"
    path = out / f"bench_study_overhead-{tag}.json"
    path.write_text(
        json.dumps(
            {
                "version": __version__,
                "machine": platform.node(),
                "cpus": os.cpu_count(),
                "args": vars(args),
                "rounds": rounds,
                "ratios": ratios,
                "platform_seconds_per_trial": per_trial,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
