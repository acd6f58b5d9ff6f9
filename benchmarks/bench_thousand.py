"""A thousand short trials: a study's wall time against the ideal, its driver's memory and stores.

A user sweep of many short trials: TPE (the project's search default) over ``reg.variant``
(``bdrop_dml`` or its DropBlock baseline), ``reg.alpha`` (R-Block only) and ``reg.drop_prob``,
ASHA (grace 1 epoch; with the default 1 epoch it stops nothing), ``resnet8`` on a few hundred
synthetic images, one CPU per trial, ``--concurrent`` at a time. The study runs as
``rblock-tune -q study run`` in a child process (its driver); a thread here samples the
driver's RSS (``/proc/PID/status``) and how many trials the Optuna store has finished, so
memory can be read against trials done. Then it reports:

- the study's wall time against the ideal: the same trainings' in-process time (``Trainer`` on
  the same config, one thread, a sample of ``--sample`` trainings per variant timed here before
  and after the study, weighted by the variants and epochs the study ran) divided by the
  concurrency; also the sum of the trial runs' MLflow durations / concurrency;
- the CPU time the driver process used itself (``/proc/PID/stat``; not its children: Ray's processes,
  the trials), in all and per trial: the platform's own work in the driver, measured without the noise
  of the wall time;
- trials per minute (whole study, first and last tenth of the trials);
- the driver's RSS at the start (trial 1 done), at trial 20, at the end, and its growth per trial
  (least-squares slope of RSS over trials done, from trial 20 on);
- the size on disk of the MLflow store (sqlite db + artifacts), the Optuna store and Ray's folder;
- the wall time of ``rblock-tune study status NAME`` and ``rblock-tune report --experiment NAME``
  on the finished study (each as a user runs it: a fresh process);
- beside it (unless ``--skip-bare``), a bare Ray Tune function trainable doing the same training
  (``Trainer`` on the same configs, ``tune.report`` each epoch, no MLflow or Optuna, same
  concurrency, ASHA, search space sampled by Ray), so the platform's own share is visible.

``--heap`` also samples, inside the driver, glibc's count of its C heap (in use, and free but kept
in its arenas) and Python's small-object blocks, per trial: what of the RSS growth the driver holds.
``--malloc-arena-max N`` runs the driver with ``MALLOC_ARENA_MAX=N`` instead of its own limit of two
arenas (16 is glibc's default on 2 cores), to compare.

Prints a table and saves JSON under ``benchmarks/results/``. The machine may be shared: the
figures are as noisy as its load (the load average is recorded with them).

    python benchmarks/bench_thousand.py --trials 100
    python benchmarks/bench_thousand.py                 # 1,000 trials, 2 at a time
    python benchmarks/bench_thousand.py --trials 60 --epochs 2 --subset 192 --skip-bare --heap
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rblock_tune import __version__

RSS_INTERVAL_S = 0.5
"""How often the driver's RSS and the finished-trial count are sampled."""

FROM_TRIAL = 20
"""Growth per trial is measured from this many finished trials on (imports and first-use caches of
the driver are done by then)."""

VARIANTS = ("bdrop_dml", "dropblock")


def base_config(epochs: int, subset: int) -> dict[str, Any]:
    """The trial config every trial starts from (the study's ``base``)."""
    return {
        "seed": 0,
        "data": {"name": "synthetic", "synthetic_size": subset, "val_size": 64},
        "model": {"name": "resnet8"},
        "reg": {"variant": "bdrop_dml", "alpha": 1.0, "drop_prob": 0.1, "block_size": 3},
        "train": {"epochs": epochs, "batch_size": 64, "lr": 0.05, "device": "cpu", "eval_batch_size": 256},
    }


def sweep_spec(name: str, trials: int, concurrent: int, epochs: int, subset: int) -> dict[str, Any]:
    """The study spec of the sweep (see the module docstring)."""
    return {
        "name": name,
        "base": base_config(epochs, subset),
        "metric": "val_acc",
        "space": {
            "reg.variant": {"type": "categorical", "values": list(VARIANTS)},
            "reg.alpha": {
                "type": "loguniform",
                "low": 0.1,
                "high": 10,
                "when": {"reg.variant": ["bdrop_dml"]},
            },
            "reg.drop_prob": {"type": "uniform", "low": 0.05, "high": 0.45},
        },
        "search": {"algorithm": "tpe", "num_samples": trials, "max_concurrent": concurrent, "seed": 0},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpus": 1, "gpus": 0},
    }


def _rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) process ``pid`` has used itself, not its children (``/proc/PID/stat``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: 14, 15 of proc(5)


def _finished_trials(optuna_db: Path) -> int | None:
    """Trials the Optuna store holds as finished (complete, pruned or failed); None before it exists."""
    if not optuna_db.is_file():
        return None
    try:
        with sqlite3.connect(f"file:{optuna_db}?mode=ro", uri=True, timeout=0.2) as db:
            row = db.execute(
                "SELECT count(*) FROM trials WHERE state != 'RUNNING' AND state != 'WAITING'"
            ).fetchone()
    except sqlite3.Error:
        return None
    return int(row[0])


@dataclass
class DriverRun:
    """What :func:`run_driver` saw: wall time, exit code, (seconds, RSS bytes, trials done) samples, and
    the CPU seconds the driver process had used itself at the last sample (its children not counted)."""

    seconds: float
    returncode: int
    samples: list[tuple[float, int, int | None]] = field(default_factory=list)
    output: str = ""
    cpu_seconds: float | None = None


def run_driver(cmd: list[str], optuna_db: Path | None, env: dict[str, str] | None = None) -> DriverRun:
    """Run ``cmd`` (a study's driver) as a child process and sample its RSS and, with ``optuna_db``,
    the trials done, every :data:`RSS_INTERVAL_S` until it exits."""
    samples: list[tuple[float, int, int | None]] = []
    cpu: list[float] = []
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                rss = _rss_bytes(proc.pid)
                used = _cpu_seconds(proc.pid)
                if used is not None:
                    cpu.append(used)
                done = _finished_trials(optuna_db) if optuna_db is not None else None
                if rss is not None:
                    samples.append((time.perf_counter() - start, rss, done))
                stop.wait(RSS_INTERVAL_S)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        code = proc.wait()
        seconds = time.perf_counter() - start
        stop.set()
        thread.join()
        out.seek(0)
        return DriverRun(seconds, code, samples, out.read(), max(cpu, default=None))


def driver_command(args: list[str], prelude: str = "") -> list[str]:
    """``rblock-tune ARGS`` in a fresh interpreter, after ``prelude`` (Python code; the tests use it
    to run a deliberately leaking driver)."""
    code = f"{prelude}\nimport sys\nfrom rblock_tune.cli import main\nsys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, *args]


def rss_by_trials(samples: list[tuple[float, int, int | None]]) -> list[tuple[int, int]]:
    """(trials done, the driver's RSS) pairs, one per sample once the Optuna store exists."""
    return [(done, rss) for _, rss, done in samples if done is not None]


def growth_per_trial(samples: list[tuple[float, int, int | None]], from_trial: int = FROM_TRIAL) -> float:
    """Least-squares slope (bytes per finished trial) of the driver's RSS over trials done, from
    ``from_trial`` trials done on and before the last trial finished (after it, the driver ends the
    study: its memory then is no per-trial cost, and how many samples fall there depends on how long
    the ending takes); nan with fewer than two distinct counts there."""
    counts = rss_by_trials(samples)
    last = max((d for d, _ in counts), default=0)
    points = [(d, r) for d, r in counts if from_trial <= d < last]
    if len({d for d, _ in points}) < 2:
        return float("nan")
    mean_d = statistics.fmean(d for d, _ in points)
    mean_r = statistics.fmean(r for _, r in points)
    num = sum((d - mean_d) * (r - mean_r) for d, r in points)
    den = sum((d - mean_d) ** 2 for d, _ in points)
    return num / den


def rss_at(samples: list[tuple[float, int, int | None]], trials: int) -> int | None:
    """The driver's RSS at the first sample with at least ``trials`` trials done."""
    return next((r for d, r in rss_by_trials(samples) if d >= trials), None)


def size_of(path: Path) -> int:
    """Bytes on disk of a file, or of every file under a folder (0 when missing)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _trial_config(variant: str, alpha: float, drop_prob: float, epochs: int, subset: int) -> Any:
    from rblock_tune.config import config_from_dict

    raw = base_config(epochs, subset)
    raw["reg"] = {**raw["reg"], "variant": variant, "drop_prob": drop_prob}
    if variant == "bdrop_dml":
        raw["reg"]["alpha"] = alpha
    else:
        raw["reg"].pop("alpha")
    return config_from_dict(raw)


def time_in_process(variant: str, epochs: int, subset: int) -> tuple[float, float]:
    """One training in this process, as a trial runs it (one thread): (set-up s, per-epoch s)."""
    from rblock_tune.trainer import Trainer

    start = time.perf_counter()
    trainer = Trainer(_trial_config(variant, 1.0, 0.1, epochs, subset))
    built = time.perf_counter()
    for _ in trainer.epochs(test=False):
        pass
    return built - start, (time.perf_counter() - built) / epochs


def sample_in_process(k: int, epochs: int, subset: int) -> dict[str, list[tuple[float, float]]]:
    """``k`` timed trainings per variant, interleaved."""
    import torch

    torch.set_num_threads(1)  # as a trial with resources.cpus 1 runs
    times: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    for _ in range(k):
        for variant in VARIANTS:
            times[variant].append(time_in_process(variant, epochs, subset))
    return times


def bare_trainable(config: dict[str, Any]) -> None:
    """The same training as a study's trial, bare: ``Trainer`` and ``tune.report`` each epoch."""
    from ray import tune

    from rblock_tune.trainer import Trainer

    cfg = _trial_config(
        config["variant"], config["alpha"], config["drop_prob"], config["epochs"], config["subset"]
    )
    for record in Trainer(cfg).epochs(test=False):
        tune.report({k: v for k, v in record.items() if isinstance(v, (int, float))})


def bare_main(trials: int, concurrent: int, epochs: int, subset: int, storage: str) -> None:
    """The bare Ray Tune run (in its own process: ``--bare-child``)."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    class _Memory(tune.Callback):  # type: ignore[misc]
        """This driver's RSS at each finished trial, as the study's is sampled against trials done."""

        def __init__(self) -> None:
            self.points: list[tuple[int, int]] = []

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.points.append((len(self.points) + 1, _rss_bytes(os.getpid()) or 0))

    memory = _Memory()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    tuner = tune.Tuner(
        tune.with_resources(bare_trainable, {"cpu": 1}),
        param_space={
            "variant": tune.choice(list(VARIANTS)),
            "alpha": tune.loguniform(0.1, 10),
            "drop_prob": tune.uniform(0.05, 0.45),
            "epochs": epochs,
            "subset": subset,
        },
        tune_config=tune.TuneConfig(
            num_samples=trials,
            max_concurrent_trials=concurrent,
            reuse_actors=True,
            scheduler=ASHAScheduler(
                time_attr="epoch",
                metric="val_acc",
                mode="max",
                max_t=epochs,
                grace_period=1,
                reduction_factor=2,
            ),
        ),
        run_config=tune.RunConfig(name="bare", storage_path=storage, verbose=0, callbacks=[memory]),
    )
    results = tuner.fit()
    variants = [r.config["variant"] for r in results]
    epochs_done = [int((r.metrics or {}).get("epoch", 0)) for r in results]
    print(json.dumps({"variants": variants, "epochs_done": epochs_done, "rss_by_trials": memory.points}))


def ideal_seconds(
    times: dict[str, list[tuple[float, float]]], runs: list[tuple[str, int]], concurrent: int
) -> float:
    """In-process time of ``runs`` ((variant, epochs done) each), from the median sample per variant,
    divided by the concurrency."""
    setup = {v: statistics.median(s for s, _ in ts) for v, ts in times.items()}
    epoch = {v: statistics.median(e for _, e in ts) for v, ts in times.items()}
    return sum(setup[v] + n * epoch[v] for v, n in runs) / concurrent


def study_runs(tracking_uri: str, name: str) -> list[Any]:
    """The search trial runs of study ``name``."""
    from mlflow.tracking import MlflowClient

    from rblock_tune.layout import ROLE_TAG, ROLE_TRIAL

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    return list(
        client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}'", max_results=50000
        )
    )


def timed(cmd: list[str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    return time.perf_counter() - start, done.returncode, done.stdout + done.stderr


def _rate(samples: list[tuple[float, int, int | None]], lo: int, hi: int) -> float:
    """Trials per minute between ``lo`` and ``hi`` trials done."""
    t_lo = next((t for t, _, d in samples if d is not None and d >= lo), None)
    t_hi = next((t for t, _, d in samples if d is not None and d >= hi), None)
    if t_lo is None or t_hi is None or t_hi <= t_lo:
        return float("nan")
    return (hi - lo) / (t_hi - t_lo) * 60


def _done_code(optuna_db: Path, missing: int | None) -> str:
    """Driver code of ``_done()``: the trials the Optuna store holds as finished (``missing`` while it
    cannot be read), for the preludes below."""
    return f"""def _done():
    try:
        with sqlite3.connect("file:{optuna_db}?mode=ro", uri=True, timeout=0.2) as db:
            sql = "SELECT count(*) FROM trials WHERE state NOT IN ('RUNNING', 'WAITING')"
            return db.execute(sql).fetchone()[0]
    except sqlite3.Error:
        return {missing}
"""


def tracemalloc_prelude(optuna_db: Path, out: Path, first: int = FROM_TRIAL) -> str:
    """Driver code that traces Python allocations (tracemalloc, 25 frames), snapshots them once
    ``first`` trials are done and again at exit, and writes to ``out`` the 40 allocation sites that grew
    most in between, with the trials done at each snapshot: where a per-trial growth of the driver's
    memory is allocated (native memory, which tracemalloc does not see, is the RSS growth left over)."""
    return f"""
import atexit, sqlite3, threading, time, tracemalloc
tracemalloc.start(25)
_marks = {{}}
{_done_code(optuna_db, 0)}def _watch():
    while _done() < {first}:
        time.sleep(0.5)
    _marks["first"] = (_done(), tracemalloc.take_snapshot())
threading.Thread(target=_watch, daemon=True).start()
def _dump():
    if "first" not in _marks:
        return
    n0, s0 = _marks["first"]
    n1, s1 = _done(), tracemalloc.take_snapshot()
    stats = s1.compare_to(s0, "traceback")
    grown = sum(s.size_diff for s in stats)
    with open({str(out)!r}, "w") as f:
        f.write(f"trials {{n0}} -> {{n1}}: traced Python memory grew {{grown / 1024:.0f}} KiB, "
                f"{{grown / 1024 / max(n1 - n0, 1):.1f}} KiB per trial\\n\\n")
        for s in stats[:40]:
            f.write(f"{{s.size_diff / 1024:+.0f}} KiB in {{s.count_diff:+d}} blocks "
                    f"({{s.size_diff / 1024 / max(n1 - n0, 1):.2f}} KiB per trial)\\n")
            for line in s.traceback.format(limit=8):
                f.write(f"    {{line}}\\n")
atexit.register(_dump)
"""


def heap_prelude(optuna_db: Path, out: Path) -> str:
    """Driver code that samples, every :data:`RSS_INTERVAL_S`, the trials done and glibc's count of
    the driver's C heap (``mallinfo2``: bytes in use, free bytes kept in its arenas) and of Python's
    small-object allocator (blocks in use), and writes the samples to ``out`` (JSON) at exit: what
    of the RSS growth is memory the driver holds, and what the allocator keeps after it was freed.
    glibc only."""
    return f"""
import atexit, ctypes, json, sqlite3, sys, threading, time
class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
_mallinfo2 = ctypes.CDLL(None).mallinfo2
_mallinfo2.restype = _Mallinfo2
_heap = []
{_done_code(optuna_db, None)}def _sample():
    while True:
        m = _mallinfo2()
        _heap.append((_done(), m.uordblks + m.hblkhd, m.fordblks, sys.getallocatedblocks()))
        time.sleep({RSS_INTERVAL_S})
threading.Thread(target=_sample, daemon=True).start()
atexit.register(lambda: open({str(out)!r}, "w").write(json.dumps(_heap)))
"""


def heap_growth(heap: list[list[int | None]]) -> dict[str, float]:
    """Per finished trial (least-squares slopes, the same trials as :func:`growth_per_trial`): bytes
    of C heap in use, free bytes the arenas keep, and Python small-object blocks in use."""
    out = {}
    for i, key in ((1, "c_heap_in_use"), (2, "c_heap_free"), (3, "python_blocks")):
        out[key] = growth_per_trial([(0.0, int(row[i] or 0), row[0]) for row in heap])
    return out


def run_study_bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from rblock_tune.layout import EPOCHS_DONE_TAG, VARIANT_TAG
    from rblock_tune.tuning._workdir import ARTIFACTS_DIR, MLFLOW_DB, OPTUNA_DB, RAY_DIR

    name = f"thousand-{args.trials}"
    spec_file = work / "spec.json"
    spec_file.write_text(json.dumps(sweep_spec(name, args.trials, args.concurrent, args.epochs, args.subset)))
    workdir = Path(args.keep) if args.keep else work / "study"
    prelude = ""
    if args.profile:  # the driver's main thread (Tune's loop, its callbacks and searcher) under cProfile
        stats = str(Path(args.profile).resolve())
        prelude = (
            "import atexit, cProfile\n_profile = cProfile.Profile()\n_profile.enable()\n"
            f"atexit.register(lambda: (_profile.disable(), _profile.dump_stats({stats!r})))"
        )
    if args.tracemalloc:
        prelude += "\n" + tracemalloc_prelude(workdir / OPTUNA_DB, Path(args.tracemalloc).resolve())
    heap_file = work / "heap.json"
    if args.heap:
        prelude += "\n" + heap_prelude(workdir / OPTUNA_DB, heap_file)
    env = None
    if args.malloc_arena_max is not None:  # glibc reads it at start; the driver then keeps it
        env = {**os.environ, "MALLOC_ARENA_MAX": str(args.malloc_arena_max)}
    run = run_driver(
        driver_command(["-q", "study", "run", str(spec_file), "--workdir", str(workdir)], prelude),
        workdir / OPTUNA_DB,
        env,
    )
    if run.returncode != 0:
        raise SystemExit(f"the study failed (exit {run.returncode}):\n{run.output[-4000:]}")
    tracking_uri = f"sqlite:///{workdir / MLFLOW_DB}"
    runs = study_runs(tracking_uri, name)
    durations = [(r.info.end_time - r.info.start_time) / 1000 for r in runs if r.info.end_time]
    done = [(r.data.tags[VARIANT_TAG], int(r.data.tags.get(EPOCHS_DONE_TAG, args.epochs))) for r in runs]
    status = [
        timed(driver_command(["study", "status", name, "--workdir", str(workdir)]))
        for _ in range(args.repeats)
    ]
    report = [
        timed(
            driver_command(["report", "--experiment", name, "--workdir", str(workdir), "--metric", "val_acc"])
        )
        for _ in range(args.repeats)
    ]
    for what, results in (("status", status), ("report", report)):
        if any(code != 0 for _, code, _ in results):
            raise SystemExit(f"study {what} failed:\n{results[-1][2][-4000:]}")
    n = args.trials
    tenth = max(n // 10, 1)
    return {
        "seconds": run.seconds,
        "driver_cpu_s": run.cpu_seconds,
        "trial_runs": len(runs),
        "runs": done,
        "mlflow_duration_sum_s": sum(durations),
        "trials_per_minute": n / run.seconds * 60,
        "trials_per_minute_first_tenth": _rate(run.samples, 1, tenth),
        "trials_per_minute_last_tenth": _rate(run.samples, n - tenth, n),
        "rss_start": rss_at(run.samples, 1),
        "rss_at_20": rss_at(run.samples, FROM_TRIAL),
        "rss_end": rss_at(run.samples, n),
        "rss_max": max(r for _, r, _ in run.samples),
        "growth_per_trial": growth_per_trial(run.samples),
        "heap_growth_per_trial": heap_growth(json.loads(heap_file.read_text())) if args.heap else None,
        "rss_by_trials": rss_by_trials(run.samples)[:: max(len(run.samples) // 200, 1)],
        "mlflow_bytes": size_of(workdir / MLFLOW_DB) + size_of(workdir / ARTIFACTS_DIR),
        "mlflow_db_bytes": size_of(workdir / MLFLOW_DB),
        "optuna_bytes": size_of(workdir / OPTUNA_DB),
        "ray_bytes": size_of(workdir / RAY_DIR),
        "status_s": [t for t, _, _ in status],
        "report_s": [t for t, _, _ in report],
        "status_output": status[-1][2],
        "load_average_after": os.getloadavg(),
    }


def run_bare_bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--bare-child",
        "--trials",
        str(args.trials),
        "--concurrent",
        str(args.concurrent),
        "--epochs",
        str(args.epochs),
        "--subset",
        str(args.subset),
        "--out",
        str(work / "bare"),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    run = run_driver(cmd, None, env=env)
    if run.returncode != 0:
        raise SystemExit(f"the bare Ray Tune run failed:\n{run.output[-4000:]}")
    last = [line for line in run.output.splitlines() if line.startswith("{")][-1]
    outcome = json.loads(last)
    rss = [r for _, r, _ in run.samples]
    points = [(0.0, r, d) for d, r in outcome["rss_by_trials"]]
    return {
        "seconds": run.seconds,
        "driver_cpu_s": run.cpu_seconds,
        "runs": list(zip(outcome["variants"], outcome["epochs_done"], strict=True)),
        "trials_per_minute": args.trials / run.seconds * 60,
        "rss_first": rss[0] if rss else None,
        "rss_end": rss[-1] if rss else None,
        "rss_max": max(rss) if rss else None,
        "rss_at_20": rss_at(points, FROM_TRIAL),
        "rss_end_of_trials": rss_at(points, args.trials),
        "growth_per_trial": growth_per_trial(points),
        "ray_bytes": size_of(work / "bare"),
        "load_average_after": os.getloadavg(),
    }


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.0f} MiB"


def _cpu(seconds: float | None, trials: int) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s ({seconds / trials * 1000:.0f} ms)"


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--subset", type=int, default=512, help="synthetic training images per trial")
    parser.add_argument(
        "--sample", type=int, default=5, help="in-process trainings per variant, before and after"
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs of study status and of report")
    parser.add_argument("--skip-bare", action="store_true", help="no bare Ray Tune run beside the study")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument(
        "--keep", metavar="DIR", help="work directory of the study, kept (default: a temporary one)"
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="run the study's driver under cProfile, stats to FILE"
    )
    parser.add_argument(
        "--tracemalloc",
        metavar="FILE",
        help="trace the driver's Python allocations: the sites that grew most after trial 20, to FILE",
    )
    parser.add_argument(
        "--heap",
        action="store_true",
        help="sample the driver's C heap (in use, free in its arenas) and Python blocks per trial (glibc)",
    )
    parser.add_argument(
        "--malloc-arena-max",
        type=int,
        metavar="N",
        help="run the driver with MALLOC_ARENA_MAX=N (default: the driver's own limit of 2; 16 is "
        "glibc's default on 2 cores)",
    )
    parser.add_argument("--bare-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_child:
        bare_main(args.trials, args.concurrent, args.epochs, args.subset, args.out)
        return
    load_before = os.getloadavg()
    times = sample_in_process(args.sample, args.epochs, args.subset)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        study = run_study_bench(args, work)
        bare = None if args.skip_bare else run_bare_bench(args, work)
    after = sample_in_process(args.sample, args.epochs, args.subset)
    for variant in VARIANTS:
        times[variant] += after[variant]
    load_after = os.getloadavg()
    ideal = ideal_seconds(times, study.pop("runs"), args.concurrent)
    mlflow_ideal = study["mlflow_duration_sum_s"] / args.concurrent
    n = args.trials
    print(
        f"{n} trials of resnet8 (TPE over bdrop_dml/dropblock, alpha, p; ASHA), {args.epochs} epoch(s) on "
        f"{args.subset} synthetic images, {args.concurrent} at a time, 1 CPU each; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (a shared machine: noisy figures)"
    )
    for variant, ts in times.items():
        total = [s + args.epochs * e for s, e in ts]
        print(f"  in-process training, {variant:9s} (min / median / max of {len(ts)}): {_spread(total)}")
    rows = [
        ("study wall time", f"{study['seconds']:.1f} s"),
        ("ideal (in-process time / concurrency)", f"{ideal:.1f} s"),
        ("study / ideal", f"{study['seconds'] / ideal:.2f}x"),
        (
            "MLflow run durations / concurrency",
            f"{mlflow_ideal:.1f} s  (study / that: {study['seconds'] / mlflow_ideal:.2f}x)",
        ),
        ("platform time per trial", f"{(study['seconds'] - ideal) * args.concurrent / n:.2f} s"),
        ("driver CPU time (its own; per trial)", _cpu(study["driver_cpu_s"], n)),
        (
            "trials per minute (all / first tenth / last tenth)",
            f"{study['trials_per_minute']:.1f} / {study['trials_per_minute_first_tenth']:.1f} / "
            f"{study['trials_per_minute_last_tenth']:.1f}",
        ),
        (
            "driver RSS at trial 1 / 20 / end (max)",
            f"{_mib(study['rss_start'])} / {_mib(study['rss_at_20'])} / {_mib(study['rss_end'])} "
            f"({_mib(study['rss_max'])})",
        ),
        ("driver RSS growth per trial (from trial 20)", f"{study['growth_per_trial'] / 1024:.1f} KiB"),
    ]
    heap = study["heap_growth_per_trial"]
    if heap is not None:
        rows.append(
            (
                "  of it: C heap in use / free in arenas / Python blocks",
                f"{heap['c_heap_in_use'] / 1024:.1f} KiB / {heap['c_heap_free'] / 1024:.1f} KiB / "
                f"{heap['python_blocks']:.0f} blocks",
            )
        )
    rows += [
        (
            "MLflow store (db + artifacts)",
            f"{_mib(study['mlflow_bytes'])} (db {_mib(study['mlflow_db_bytes'])})",
        ),
        ("Optuna store", _mib(study["optuna_bytes"])),
        ("Ray results folder", _mib(study["ray_bytes"])),
        ("rblock-tune study status (min / median / max)", _spread(study["status_s"])),
        ("rblock-tune report (min / median / max)", _spread(study["report_s"])),
    ]
    if bare is not None:
        bare_ideal = ideal_seconds(times, bare.pop("runs"), args.concurrent)
        bare["ideal_seconds"] = bare_ideal
        rows += [
            ("bare Ray Tune wall time", f"{bare['seconds']:.1f} s"),
            ("bare / its ideal", f"{bare['seconds'] / bare_ideal:.2f}x"),
            ("study / bare", f"{study['seconds'] / bare['seconds']:.2f}x"),
            ("bare trials per minute", f"{bare['trials_per_minute']:.1f}"),
            ("bare driver CPU time (its own; per trial)", _cpu(bare["driver_cpu_s"], n)),
            (
                "bare driver RSS at trial 20 / end (max)",
                f"{_mib(bare['rss_at_20'])} / {_mib(bare['rss_end_of_trials'])} ({_mib(bare['rss_max'])})",
            ),
            (
                "bare driver RSS growth per trial (from trial 20)",
                f"{bare['growth_per_trial'] / 1024:.1f} KiB",
            ),
        ]
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"  {label:{width}s}  {value}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_thousand-{n}.json"
    record = {
        "version": __version__,
        "machine": platform.node(),
        "cpus": os.cpu_count(),
        "load_average": [load_before, load_after],
        "args": vars(args),
        "in_process": times,
        "ideal_seconds": ideal,
        "study": study,
        "bare": bare,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
