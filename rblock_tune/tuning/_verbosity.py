"""How much a study prints (``rblock-tune -q`` / default / ``-v``); no Ray import, so that the CLI and
:mod:`rblock_tune.tuning._study` can name the levels before Ray is loaded."""

from __future__ import annotations

from typing import Final

__all__ = ["NORMAL", "QUIET", "VERBOSE"]

QUIET: Final = 0
"""Failed trials and phase summaries only."""
NORMAL: Final = 1
"""The study's display: a progress line on a terminal, one line per trial event elsewhere."""
VERBOSE: Final = 2
"""The display's trial events, with Ray's own tables and logs on the terminal as well."""
