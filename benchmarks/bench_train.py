"""Training throughput of every regularizer variant, and the share of mask sampling.

Measures, on this machine, optimisation steps of one model (default ``resnet20``, batch
128) through the trainer's own ``train_step`` for ``none``, ``dropblock``, ``random_dml``,
``bdrop_dml`` and ``sdrop_dml``, plus ``none@2B``: a plain step on 2B rows, the floor of the
two-sub-model variants (their [x; x] batch has 2B rows). For every variant it prints
min / median / max over the repeats of: seconds per step, images per second, the ratio to
``none`` and to the 2B floor, the share of the step spent sampling masks and the share spent in
the drop layers' forward (sampling, rescaling and the mask multiply). Figures are printed and
saved as JSON under ``benchmarks/results/``.

Every arm runs in one worker process per code tree; each repeat runs ``--steps`` steps of every
(tree, arm) in an order that rotates from repeat to repeat, and the ratios are taken within each
repeat, so drift of a shared machine hits the numerator and the denominator alike. The medians are
the figures to read. ``--compare LABEL=PATH`` adds another checkout of rblock-tune (for instance
the commit before a change) to the same interleaving and prints each variant's step time in this
tree over that one's.

    python benchmarks/bench_train.py                           # CPU, resnet20
    python benchmarks/bench_train.py --compare base=/tmp/base  # this tree against another, interleaved
    python benchmarks/bench_train.py --device cuda             # bf16 autocast + channels_last
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

VARIANTS = ("none", "dropblock", "random_dml", "bdrop_dml", "sdrop_dml")
FLOOR = "none@2B"
"""A plain (``none``) step on 2B rows: the floor of the paired variants' [x; x] step."""
THIS_TREE = Path(__file__).resolve().parent.parent
PREFIX = "@@bench "
"""Marks the worker's answers on its stdout (anything else there is passed through)."""


# ------------------------------------------------------------------------------------ worker
class _Timed:
    """Wraps a function of the drop-layer module and adds up its wall time."""

    def __init__(self, fn: Callable[..., Any], cuda: bool) -> None:
        self.fn = fn
        self.cuda = cuda
        self.seconds = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = self.fn(*args, **kwargs)
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        return out


def _make_trainer(args: argparse.Namespace, variant: str, batch_size: int) -> Any:
    from rblock_tune.config import load_config
    from rblock_tune.trainer import Trainer

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
    if args.mask_sampler is not None:  # only then: a tree before reg.mask_sampler knows no such key
        overrides.append(f"reg.mask_sampler={args.mask_sampler}")
    trainer = Trainer(load_config(None, overrides))
    trainer.model.train()
    return trainer


def worker(args: argparse.Namespace) -> None:
    """Build every arm's trainer in this process, then run the driver's commands from stdin:
    ``ARM STEPS`` runs that many steps of that arm and answers its timings on stdout."""
    import torch

    import rblock_tune.regularizers._layers as layers_module

    arms = {v: (v, args.batch_size) for v in args.variants}
    arms[FLOOR] = ("none", 2 * args.batch_size)
    trainers = {label: _make_trainer(args, v, bs) for label, (v, bs) in arms.items()}
    batches = {label: list(t.train_loader.batches(t.data_generator)) for label, t in trainers.items()}
    cuda = any(t.on_cuda for t in trainers.values())
    # the masks' sampler the drop layers call (sample_dropped since the paired-step rework,
    # sample_masks before it) and the drop layers' whole forward
    sampler_name = "sample_dropped" if hasattr(layers_module, "sample_dropped") else "sample_masks"
    sampler = _Timed(getattr(layers_module, sampler_name), cuda)
    # the forward calls the mask step through _masks_fn (since compile_model), _apply_masks before
    step_name = "_masks_fn" if hasattr(layers_module, "_masks_fn") else "_apply_masks"
    layer = _Timed(getattr(layers_module, step_name), cuda)
    setattr(layers_module, sampler_name, sampler)
    # under --compile the timer stays out of the graph, as the mask step it wraps does: traced, its
    # clock calls would add graph breaks that the training itself does not have
    setattr(layers_module, step_name, torch.compiler.disable(layer.__call__) if args.compile else layer)
    position = dict.fromkeys(trainers, 0)
    _answer({"ready": True, "threads": torch.get_num_threads(), "sampler": sampler_name})
    for line in sys.stdin:
        label, steps = line.split()
        trainer, data = trainers[label], batches[label]
        sampler.seconds = layer.seconds = 0.0
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(int(steps)):
            trainer.train_step(*data[position[label] % len(data)])
            position[label] += 1
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        # on a GPU, the peak allocated while this arm ran (with the other arms' few MB of weights)
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
        _answer(
            {
                "seconds": elapsed,
                "mask_seconds": sampler.seconds,
                "layer_seconds": layer.seconds,
                "peak_mib": peak,
            }
        )


def _answer(record: dict[str, Any]) -> None:
    sys.stdout.write(PREFIX + json.dumps(record) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------------------ driver
class Worker:
    """One worker process: this script with ``--worker``, rblock-tune imported from ``tree``."""

    def __init__(self, label: str, tree: Path, args: argparse.Namespace) -> None:
        self.label = label
        self.tree = tree
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", *_worker_args(args)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree
        )
        self.info = self._read()

    def run(self, arm: str, steps: int) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{arm} {steps}\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(PREFIX):
                record: dict[str, Any] = json.loads(line[len(PREFIX) :])
                return record
            sys.stdout.write(line)
        raise SystemExit(f"bench_train: the worker for {self.label} ({self.tree}) ended early")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def _worker_args(args: argparse.Namespace) -> list[str]:
    out = ["--model", args.model, "--batch-size", str(args.batch_size), "--device", args.device]
    out += ["--variants", *args.variants]
    out += ["--mask-sampler", args.mask_sampler] if args.mask_sampler is not None else []
    return out + (["--compile"] if args.compile else [])


def _git_commit(tree: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except OSError:
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def bench(args: argparse.Namespace, trees: dict[str, Path]) -> dict[str, Any]:
    """Run the interleaved repeats; return the raw figures per tree, arm and repeat."""
    arms = [*args.variants, FLOOR]
    rows = {arm: args.batch_size * (2 if arm == FLOOR else 1) for arm in arms}
    workers = {label: Worker(label, tree, args) for label, tree in trees.items()}
    order = [(label, arm) for label in trees for arm in arms]
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {t: {a: [] for a in arms} for t in trees}
    try:
        for label, arm in order:
            workers[label].run(arm, args.warmup)
        for r in range(args.repeats):
            shift = r % len(order)
            for label, arm in order[shift:] + order[:shift]:
                got = workers[label].run(arm, args.steps)
                raw[label][arm].append(
                    {
                        "step_seconds": got["seconds"] / args.steps,
                        "mask_share": got["mask_seconds"] / got["seconds"],
                        "layer_share": got["layer_seconds"] / got["seconds"],
                        "peak_mib": got.get("peak_mib"),
                    }
                )
            print(f"repeat {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    finally:
        for w in workers.values():
            w.close()
    return {
        "rows": rows,
        "raw": raw,
        "workers": {label: {"tree": str(trees[label]), **w.info} for label, w in workers.items()},
    }


def summarise(measured: dict[str, Any], repeats: int) -> dict[str, dict[str, dict[str, Any]]]:
    """Per tree and arm, min / median / max over repeats; ratios are taken within each repeat."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for tree, arms in measured["raw"].items():
        summary[tree] = {}
        for arm, records in arms.items():
            step = [rec["step_seconds"] for rec in records]
            entry: dict[str, Any] = {
                "rows": measured["rows"][arm],
                "step_seconds": _spread(step),
                "images_per_second": _spread([measured["rows"][arm] / s for s in step]),
                "mask_share": _spread([rec["mask_share"] for rec in records]),
                "layer_share": _spread([rec["layer_share"] for rec in records]),
            }
            peaks = [rec["peak_mib"] for rec in records if rec.get("peak_mib") is not None]
            if peaks:
                entry["peak_mib"] = max(peaks)
            for name, base in (("vs_none", "none"), ("vs_floor", FLOOR)):
                if base in arms:
                    entry[name] = _spread([step[r] / arms[base][r]["step_seconds"] for r in range(repeats)])
            summary[tree][arm] = entry
    return summary


def _fmt(spread: dict[str, float], scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    lo, mid, hi = (scale * spread[k] for k in ("min", "median", "max"))
    return f"{mid:.{digits}f}{unit} ({lo:.{digits}f}-{hi:.{digits}f})"


def report(
    summary: dict[str, dict[str, dict[str, Any]]], measured: dict[str, Any], repeats: int
) -> list[str]:
    lines = ["median (min-max) over the repeats; ratios are taken within each repeat"]
    for tree, arms in summary.items():
        lines.append(f"-- {tree}: {measured['workers'][tree]['tree']}")
        lines.append(
            f"{'variant':<11} {'rows':>4} {'ms/step':>19} {'img/s':>16} {'vs none':>19} "
            f"{'vs 2B floor':>19} {'mask share':>19} {'drop layers':>19}"
        )
        for arm, e in arms.items():
            lines.append(
                f"{arm:<11} {e['rows']:>4} {_fmt(e['step_seconds'], 1000, 0):>19} "
                f"{_fmt(e['images_per_second'], 1, 0):>16} {_fmt(e['vs_none'], unit='x'):>19} "
                f"{_fmt(e['vs_floor'], unit='x'):>19} {_fmt(e['mask_share'], 100, 1, '%'):>19} "
                f"{_fmt(e['layer_share'], 100, 1, '%'):>19}"
                + (f" {e['peak_mib']:>8.0f} MiB peak" if "peak_mib" in e else "")
            )
    first, *others = list(measured["raw"])
    for other in others:
        lines.append(f"-- step time, {first} over {other} (within each repeat)")
        for arm, records in measured["raw"][first].items():
            theirs = measured["raw"][other][arm]
            ratio = [records[r]["step_seconds"] / theirs[r]["step_seconds"] for r in range(repeats)]
            lines.append(f"{arm:<11} {_fmt(_spread(ratio), unit='x')}")
    return lines


def _trees(pairs: Sequence[str]) -> dict[str, Path]:
    trees = {"this": THIS_TREE}
    for pair in pairs:
        label, sep, path = pair.partition("=")
        tree = Path(path).expanduser().resolve()
        if not sep or not label or label in trees:
            raise SystemExit(f"bench_train: --compare wants LABEL=PATH with a new label, but got {pair!r}")
        if not (tree / "rblock_tune" / "__init__.py").is_file():
            raise SystemExit(f"bench_train: --compare {pair!r}: {tree} holds no rblock_tune package")
        trees[label] = tree
    return trees


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--steps", type=int, default=2, help="timed steps of each arm per repeat")
    parser.add_argument("--repeats", type=int, default=20, help="interleaved repeats")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each arm first")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument(
        "--mask-sampler",
        choices=("auto", "sparse", "dense"),
        help="reg.mask_sampler of every arm (default: the config's, auto; a --compare tree must know it)",
    )
    parser.add_argument(
        "--compare", action="append", default=[], metavar="LABEL=PATH", help="another rblock-tune tree"
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if min(args.steps, args.repeats) < 1 or args.warmup < 0:
        raise SystemExit("bench_train: --steps and --repeats must be >= 1 and --warmup >= 0")
    if "none" not in args.variants:
        args.variants = ["none", *args.variants]
    trees = _trees(args.compare)

    started = time.time()
    measured = bench(args, trees)
    summary = summarise(measured, args.repeats)
    info = measured["workers"]["this"]
    print(
        f"{args.model}, batch {args.batch_size}, device {args.device}, {info['threads']} threads, "
        f"{platform.processor() or platform.machine()}, {args.repeats} repeats x {args.steps} steps, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(f"{FLOOR} = a plain step on 2B rows: the floor of the paired variants' [x; x] step")
    lines = report(summary, measured, args.repeats)
    print("\n".join(lines))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if len(trees) == 1 else "-compare"
    path = out / f"bench_train-{args.model}-{args.device}{suffix}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    payload = {
        "machine": platform.node(),
        "args": {k: v for k, v in vars(args).items() if k != "worker"},
        "trees": {label: {"path": str(t), "commit": _git_commit(t)} for label, t in trees.items()},
        "seconds": time.time() - started,
        "summary": summary,
        "measured": measured,
        "printed": lines,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
