"""What a study's driver, a trial worker and ``rblock-tune train`` import at start.

torch's compiler (``torch._dynamo``) and torchvision (its models and ops, which import the compiler
too) cost about 2.5 s of start-up per process; neither is needed unless a model is compiled or images
are decoded, so importing the package must not pull them in.
"""

from __future__ import annotations

import subprocess
import sys

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
