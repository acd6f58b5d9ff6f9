"""Realised drop rate per sub-model of every variant, on both rate bases, on resnet20's drop layers.

For each nominal p and block size b, builds resnet20 (drop layers after each block of stages 2 and 3:
32 x 16 x 16 and 64 x 8 x 8 maps) with each variant on each ``reg.rate_basis``, runs training-mode
forward passes at a constant p, and prints the share of units the applied masks dropped per
sub-model, measured by the same counters the trainer logs (``drop_rate``, ``drop_rate_a/_b``), and
its ratio to dropblock's at the same p.

    python benchmarks/bench_drop_rates.py [--p 0.05 0.1 0.2] [--block-size 3] [--steps 10] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from rblock_tune import __version__
from rblock_tune.config import PAIRED_VARIANTS, RATE_BASES, VARIANTS, ModelConfig, RegConfig
from rblock_tune.models import build_model
from rblock_tune.regularizers import drop_factory, realised_drop_rates, reset_drop_rates


def measure(variant: str, p: float, b: int, basis: str, steps: int, batch: int, seed: int) -> float:
    """Mean realised per-sub-model drop rate over ``steps`` forward passes."""
    torch.manual_seed(seed)
    reg = RegConfig(variant=variant, drop_prob=p, block_size=b, rate_basis=basis)
    model = build_model(ModelConfig(name="resnet20"), 10, drop_factory(reg)).train()
    reset_drop_rates(model)
    with torch.no_grad():
        for _ in range(steps):
            x = torch.randn(batch, 3, 32, 32)
            model(torch.cat([x, x]) if variant in PAIRED_VARIANTS else x)
    rates = realised_drop_rates(model)
    assert rates is not None
    return sum(rates) / len(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--block-size", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="rblock_runs/bench-drop-rates", help="folder for results.json")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    variants = [v for v in VARIANTS if v != "none"]
    rows = []
    print(
        f"rblock-tune {__version__}, torch {torch.__version__}, {platform.machine()}; "
        f"resnet20, b={args.block_size}, {args.steps} steps of {args.batch} images per cell"
    )
    print(f"{'p':>5} {'variant':<16} " + " ".join(f"{basis:>9} {'/dropblk':>8}" for basis in RATE_BASES))
    for p in args.p:
        ref = measure("dropblock", p, args.block_size, "submodel", args.steps, args.batch, args.seed)
        for variant in variants:
            cells = []
            for basis in RATE_BASES:
                rate = measure(variant, p, args.block_size, basis, args.steps, args.batch, args.seed)
                rows.append(
                    {"p": p, "variant": variant, "basis": basis, "rate": rate, "vs_dropblock": rate / ref}
                )
                cells.append(f"{rate:9.4f} {rate / ref:8.2f}")
            print(f"{p:5.2f} {variant:<16} " + " ".join(cells))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = {"torch": torch.__version__, "machine": platform.machine(), "node": platform.node()}
    payload = {"version": __version__, **machine, "args": vars(args), "rows": rows}
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
