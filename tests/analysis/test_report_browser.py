"""``report.html`` in a real browser: headless Chromium (``tests/browser.py``) opens a real study's
report and finds every figure decoded, nothing fetched from outside and no console errors.

Skipped where no Chromium is installed (``apt-get install chromium``), unless
``RBLOCK_REQUIRE_BROWSER=1`` (CI sets it), which turns a missing browser into a failure.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import browser as cdp
import pytest
from PIL import Image

# a 1x1 PNG
PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def chromium() -> str:
    found = cdp.find_chromium()
    if found:
        return found
    message = "no Chromium to test report.html with (apt-get install chromium, or set RBLOCK_CHROMIUM)"
    if os.environ.get("RBLOCK_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.mark.slow
def test_a_real_study_report_renders_in_a_browser(tiny_study: Any, chromium: str) -> None:
    """The tiny study's report.html: every figure decodes, only file: and data: URLs are requested,
    and the console stays clean."""
    page = tiny_study.report / "report.html"
    assert cdp.check_report_page(page, chromium) == []
    # and the figures the page decoded are the report's figures, all of them
    with cdp.Browser(chromium) as browser:
        browser.open(page.as_uri())
        sizes = browser.evaluate("[...document.images].map(i => [i.naturalWidth, i.naturalHeight])")
    figures = sorted((tiny_study.report / "figures").glob("*.png"))
    assert len(sizes) == len(figures) >= 5
    assert sorted(map(tuple, sizes)) == sorted(Image.open(f).size for f in figures)
    assert not [u for u in browser.requests if u.startswith(("http:", "https:"))]


def test_the_check_finds_a_broken_image_an_outside_fetch_and_console_errors(
    tmp_path: Path, chromium: str
) -> None:
    """The check can fail: a missing image, one from the web (never fetched: host names do not
    resolve), a console.error and an uncaught exception are each reported; the good image is not."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!doctype html><html><head><meta charset="utf-8"><title>bad</title></head><body>'
        f'<img src="missing.png"><img src="https://example.com/x.png"><img src="{PIXEL}">'
        "<script>console.error('a figure went missing', 3)</script>"
        "<script>undefinedFunction()</script></body></html>"
    )
    problems = cdp.check_report_page(bad, chromium)
    text = "\n".join(problems)
    assert "image 0 did not decode: src='missing.png'" in text
    assert "image 1 did not decode: src='https://example.com/x.png'" in text and "image 2" not in text
    assert "fetched from outside: https://example.com/x.png" in problems
    assert "console.error: a figure went missing 3" in problems
    assert any(p.startswith("exception: ReferenceError: undefinedFunction") for p in problems), text
    # a clean page passes, and a page without images does not
    good = tmp_path / "good.html"
    good.write_text(f'<!doctype html><html><head><title>good</title></head><body><img src="{PIXEL}">')
    assert cdp.check_report_page(good, chromium) == []
    empty = tmp_path / "empty.html"
    empty.write_text("<!doctype html><html><head><title>empty</title></head><body><p>no figures</p>")
    assert cdp.check_report_page(empty, chromium) == ["the page has no <img>"]


def test_screenshot_command_clicks_waits_and_saves_a_png(
    tmp_path: Path, chromium: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python tests/browser.py screenshot``: the steps run in order (the click's effect comes late,
    so the wait is needed), the PNG has the viewport's size; a click or a wait that never comes true
    fails in time with a clear message."""
    page = tmp_path / "ui.html"
    page.write_text(
        "<!doctype html><html><head><title>ui</title></head><body>"
        "<div><button onclick=\"setTimeout(() => document.title = 'clicked', 300)\"><span>Runs</span>"
        "</button></div><p>Runs and more</p></body></html>"
    )
    out = tmp_path / "shot.png"
    argv = ["screenshot", page.as_uri(), str(out), "--width", "640", "--height", "360"]
    steps = ["--click-text", "Runs", "--wait-for", "document.title === 'clicked'"]
    assert cdp._main([*argv, *steps]) == 0, capsys.readouterr().err
    assert Image.open(out).size == (640, 360)
    assert cdp._main([*argv, "--timeout", "0.5", "--click-text", "Nothing"]) == 2
    assert "no element with the text 'Nothing' to click" in capsys.readouterr().err
    with cdp.Browser(chromium, timeout=5) as browser:
        with pytest.raises(cdp.BrowserError, match=r"'false' was not true within 0\.5 s"):
            browser.wait_until("false", timeout=0.5)
        with pytest.raises(cdp.BrowserError, match=r"cannot open .*ERR_NAME_NOT_RESOLVED"):
            browser.open("http://rblock-tune.invalid/")  # host names do not resolve
