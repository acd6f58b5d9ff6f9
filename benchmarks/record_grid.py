"""Record the grid that ``benchmarks/bench_search.py`` replays: run its study, then export it.

Runs ``rblock-tune study run benchmarks/data/grid_cifar10_resnet8.yaml`` in ``--workdir`` (48 points x
8 epochs of resnet8 on a 5,000-image CIFAR-10 subset: about an hour on 2 CPU cores), then writes
``benchmarks/data/grid_cifar10_resnet8.json`` with ``rblock-tune study export``'s library function,
noting the code version it started from and how long the study took. The CIFAR-10 image folders must
be under ``$RBLOCK_DATA_DIR`` (``cifar10-jpeg/`` or ``cifar10/``; see ``docs/config.md``).

An interrupted recording continues with the same command (the study resumes). To record a grid of your
own, run any study and export it: ``rblock-tune study export NAME --out FILE.json``.

    python benchmarks/record_grid.py [--workdir rblock_runs/grid-record] [--spec ...] [--out ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from rblock_tune.layout import STATE_FILE
from rblock_tune.tuning import export_study, load_study_spec
from rblock_tune.tuning._export import code_version
from rblock_tune.tuning._workdir import read_state

HERE = Path(__file__).parent / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=HERE / "grid_cifar10_resnet8.yaml")
    parser.add_argument("--workdir", type=Path, default=Path("rblock_runs/grid-record"))
    parser.add_argument("--out", type=Path, default=HERE / "grid_cifar10_resnet8.json")
    args = parser.parse_args()
    name = load_study_spec(args.spec).name
    code = code_version()  # the code the study starts from, before anything else changes the checkout
    exe = Path(sys.executable).with_name("rblock-tune")
    state_file = args.workdir / name / STATE_FILE
    state = read_state(state_file) if state_file.is_file() else {}
    action = ["resume", name] if state else ["run", str(args.spec)]
    start = time.time()
    if not state.get("search_done"):  # a finished one is only exported again
        done = subprocess.run([str(exe), "study", *action, "--workdir", str(args.workdir)], check=False)
        if done.returncode != 0:
            sys.exit(f"record_grid: the study stopped (exit {done.returncode}); run this again to resume it")
    recording = export_study(name, args.workdir, code=code)
    meta = {
        **recording.meta,
        "recorded_by": "benchmarks/record_grid.py",
        "this_call_seconds": time.time() - start,
    }
    replace(recording, meta=meta).save(args.out)
    print(
        f"recorded {len(recording.points)} points x {recording.budget} epochs in "
        f"{(recording.meta.get('search_wall_seconds') or 0) / 60:.1f} min of study time; wrote {args.out} "
        f"({args.out.stat().st_size / 1024:.0f} KiB)"
    )


if __name__ == "__main__":
    main()
