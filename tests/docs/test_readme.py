"""The documentation holds: README.md and docs/*.md.

Every ```python block of every page runs, the config reference (docs/config.md) covers every
config key and `rblock-tune train` option, and every relative link points to a file that exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rblock_tune.config import valid_keys

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIG_DOC = DOCS / "config.md"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
PAGE_IDS = [str(page.relative_to(ROOT)) for page in PAGES]

FENCE = re.compile(r"^```.*?^```", flags=re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def relative_links(page: Path) -> list[str]:
    """Link targets outside fenced code, without web addresses and in-page anchors."""
    text = FENCE.sub("", page.read_text())
    targets = [target for target in LINK.findall(text) if not target.startswith("#")]
    return [target for target in targets if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def test_docs_pages_exist() -> None:
    for name in ("config", "studies", "analysis", "benchmarks", "cluster", "regularizers"):
        assert (DOCS / f"{name}.md").is_file(), name


def test_readme_has_a_python_example() -> None:
    assert python_blocks(README)


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_python_examples_run(page: Path) -> None:
    for block in python_blocks(page):
        exec(compile(block, str(page), "exec"), {})


def test_every_config_key_is_documented() -> None:
    text = CONFIG_DOC.read_text()
    missing = [key for key in valid_keys() if f"`{key}`" not in text]
    assert not missing, f"docs/config.md lacks: {missing}"


def test_every_train_option_is_documented() -> None:
    text = CONFIG_DOC.read_text()
    for option in ("--config", "--set", "--out", "--resume", "--no-progress"):
        assert option in text


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_relative_links_point_to_existing_files(page: Path) -> None:
    broken = [target for target in relative_links(page) if not (page.parent / target.split("#")[0]).exists()]
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_readme_links_every_docs_page() -> None:
    linked = {(README.parent / target.split("#")[0]).resolve() for target in relative_links(README)}
    missing = [page.name for page in sorted(DOCS.glob("*.md")) if page.resolve() not in linked]
    assert not missing, f"README.md does not link: {missing}"


def test_link_check_sees_links() -> None:
    """The link pattern finds the README's links, so an empty result above means no broken links."""
    assert "docs/config.md" in relative_links(README)
