"""The README's code runs and its key table covers every config key."""

from __future__ import annotations

import re
from pathlib import Path

from rblock_tune.config import valid_keys

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


def test_every_config_key_is_documented() -> None:
    text = README.read_text()
    missing = [key for key in valid_keys() if f"`{key}`" not in text]
    assert not missing, f"README lacks: {missing}"


def test_every_train_option_is_documented() -> None:
    text = README.read_text()
    for option in ("--config", "--set", "--out", "--resume", "--no-progress"):
        assert option in text
