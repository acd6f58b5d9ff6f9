"""What a study's driver, a trial worker and ``rblock-tune train`` import at start.

torch's compiler (``torch._dynamo``) and torchvision (its models and ops, which import the compiler
too) cost about 2.5 s of start-up per process; neither is needed unless a model is compiled or images
are decoded, so importing the package must not pull them in. A study's driver needs no torch at all
(it hands trials to Ray; its workers train): about 2.5 s more of its start, and a few hundred MB.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch._dynamo", "torchvision")


@pytest.mark.parametrize(
    "module", ["rblock_tune.trainer", "rblock_tune.tuning._phases", "rblock_tune.tuning._trainable"]
)
def test_import_leaves_out_the_compiler_and_torchvision(module: str) -> None:
    code = f"import sys, {module}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing {module} imported {out.stdout.strip()}"


def test_decoding_imports_torchvision_when_needed() -> None:
    """The decoder still reaches torchvision's JPEG decoder, on the first decode."""
    code = (
        "import sys\n"
        "from rblock_tune.data import _decode\n"
        "assert 'torchvision' not in sys.modules\n"
        "print(_decode._torchvision_io() is not None and 'torchvision' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize(
    "module", ["rblock_tune.tuning._phases", "rblock_tune.tuning", "rblock_tune.cli", "rblock_tune.data"]
)
def test_a_studys_driver_modules_import_no_torch(module: str) -> None:
    code = f"import sys, {module}\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", f"importing {module} imported torch"


@pytest.mark.slow
def test_a_study_runs_without_torch_in_its_driver(tmp_path: Path) -> None:
    """A whole study (search and seeds, data checked before Ray starts) from the CLI: its trials train
    in Ray's workers, and the driver process never imports torch."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: light\n"
        "base:\n"
        "  data: {name: synthetic, synthetic_size: 64, val_size: 16}\n"
        "  model: {name: resnet8}\n"
        "  train: {epochs: 1, batch_size: 32, device: cpu}\n"
        "space: {reg.drop_prob: [0.05, 0.1]}\n"
        "search: {algorithm: grid, max_concurrent: 1}\n"
        "seeds: {top_k: 1, n_seeds: 1}\n"
    )
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('driver imported torch:', 'torch' in sys.modules))\n"
        "from rblock_tune.cli import main\n"
        f"main(['-q', 'study', 'run', {str(spec)!r}, '--workdir', {str(tmp_path / 'runs')!r}])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "driver imported torch: False" in out.stdout
