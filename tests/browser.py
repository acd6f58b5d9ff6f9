"""A small headless Chromium driver for the tests: the Chrome DevTools Protocol over a pipe, stdlib only.

Chromium started with ``--remote-debugging-pipe`` reads protocol messages on its file descriptor 3
and writes them on 4, each message one JSON object followed by a NUL byte. :class:`Browser` starts
it that way (headless, in a temporary profile, ``--no-sandbox`` since the tests may run as root),
opens one page and records what the page did:

* ``requests``: the URL of every request the page made (``Network.requestWillBeSent``);
* ``errors``: console errors (``Runtime.consoleAPICalled`` of type error or assert), uncaught
  exceptions (``Runtime.exceptionThrown``) and the browser's own error entries, such as a resource
  that failed to load (``Log.entryAdded`` at level error).

Every wait has a time limit and raises :class:`BrowserError` when it runs out; leaving the ``with``
block kills the browser and removes its profile. Host names do not resolve (``offline=True``, the
default; localhost and 127.0.0.1 still do), so a page that asks for anything outside makes a
request that is recorded and fails without leaving the machine.

:func:`check_report_page` is the report test's check. From the command line::

    python tests/browser.py screenshot URL OUT.png [--width 1600] [--height 1000]
        [--wait-for JS_EXPR] [--click-text TEXT] ...   # steps run in the order given
    python tests/browser.py check-report REPORT.html

Chromium is found by :func:`find_chromium`: ``$RBLOCK_CHROMIUM``, else ``chromium``,
``chromium-browser``, ``google-chrome`` on the PATH (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["Browser", "BrowserError", "check_report_page", "find_chromium"]

NAMES = ("chromium", "chromium-browser", "google-chrome")
LOAD_TIMEOUT = 30.0  # seconds for a page to load and for a wait (--wait-for, --click-text) to come true
COMMAND_TIMEOUT = 30.0  # seconds for Chromium to answer one protocol command (starting up included)


class BrowserError(RuntimeError):
    """Chromium did not start, died, or did not answer in time."""


def find_chromium() -> str | None:
    """``$RBLOCK_CHROMIUM`` when set (a path or a name on the PATH), else the first of :data:`NAMES`
    on the PATH; None when there is none."""
    explicit = os.environ.get("RBLOCK_CHROMIUM")
    if explicit:
        return shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
    return next((found for name in NAMES if (found := shutil.which(name))), None)


class Browser:
    """One headless Chromium with one page (a tab), driven over the DevTools pipe.

    ``with Browser() as b: b.open(url); b.evaluate("document.title")``. ``send`` sends any
    protocol command to the page and returns its result. ``width`` and ``height`` are the viewport's;
    ``timeout`` is the seconds a page may take to load and a wait (:meth:`wait_until`,
    :meth:`click_text`) to come true; ``offline`` makes every host name but localhost unresolvable."""

    def __init__(
        self,
        executable: str | None = None,
        *,
        width: int = 1280,
        height: int = 900,
        timeout: float = LOAD_TIMEOUT,
        offline: bool = True,
    ) -> None:
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise BrowserError(f"no Chromium found: set RBLOCK_CHROMIUM or install one of {NAMES}")
        self.width, self.height, self.timeout, self.offline = width, height, timeout, offline
        self.requests: list[str] = []
        self.errors: list[str] = []
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._replies: dict[int, dict[str, Any]] = {}
        self._replied = threading.Condition()
        self._next_id = 0
        self._closed = False
        self._session: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._root: Path | None = None
        self._log: Any = None

    # ------------------------------------------------------------------ start and stop
    def __enter__(self) -> Browser:
        self._root = Path(tempfile.mkdtemp(prefix="rbt-chromium-"))
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _start(self) -> None:
        executable = str(self.executable)
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def on_fds_3_and_4() -> None:  # in the child, before exec: the pipe ends become fds 3 and 4
            low_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            low_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(low_r, 3)
            os.dup2(low_w, 4)
            os.close(low_r)
            os.close(low_w)

        args = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
            f"--user-data-dir={self._root / 'profile'}", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
            f"--window-size={self.width},{self.height}",
        ]  # fmt: skip
        if self.offline:
            args.append("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1")
        self._log = (self._root / "chromium.log").open("wb")
        self._proc = subprocess.Popen(
            [executable, *args, "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            close_fds=False,  # our fds are non-inheritable (PEP 446); 3 and 4 must stay open
            preexec_fn=on_fds_3_and_4,  # before the reader thread starts
            start_new_session=True,  # its own process group, killed as one on close
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        threading.Thread(target=self._read, name="chromium-pipe", daemon=True).start()
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)
        self._session = attached["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.set_viewport(self.width, self.height)

    def close(self) -> None:
        """Close the browser (politely, then by force) and remove its profile. Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(BrowserError, OSError):
                self._write({"id": -1, "method": "Browser.close"})
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group we started: renderers, zygotes
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            for fd in (self._to_browser, self._from_browser):
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def log_tail(self, n: int = 2000) -> str:
        """The last ``n`` characters of Chromium's own output (stdout and stderr)."""
        if self._root is None:
            return ""
        with contextlib.suppress(OSError):
            return (self._root / "chromium.log").read_text(errors="replace")[-n:]
        return ""

    # ------------------------------------------------------------------ the pipe
    def _write(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data) :]

    def _read(self) -> None:
        buffer = b""
        try:
            while chunk := os.read(self._from_browser, 1 << 16):
                *messages, buffer = (buffer + chunk).split(b"\0")
                for raw in messages:
                    self._dispatch(json.loads(raw))
        except (OSError, ValueError):  # closed, or not the protocol: either way the end
            pass
        with self._replied:
            self._closed = True
            self._replied.notify_all()
        self._events.put({"method": "_closed"})

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            with self._replied:
                self._replies[message["id"]] = message
                self._replied.notify_all()
            return
        method, params = message.get("method", ""), message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.errors.append(f"exception: {text}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"{entry.get('source', 'log')} error: {entry['text']} {entry.get('url', '')}")
        self._events.put(message)

    def send(self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False) -> Any:
        """Send one protocol command (to the page, or to the browser itself) and wait for its result
        (at most :data:`COMMAND_TIMEOUT` seconds)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if not browser and self._session is not None:
            message["sessionId"] = self._session
        try:
            self._write(message)
        except OSError as e:
            raise BrowserError(f"{method}: Chromium is gone ({e}); its log:\n{self.log_tail()}") from e
        deadline = time.monotonic() + COMMAND_TIMEOUT
        with self._replied:
            while message["id"] not in self._replies:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    why = (
                        "Chromium closed the pipe" if self._closed else f"no answer in {COMMAND_TIMEOUT:g} s"
                    )
                    raise BrowserError(f"{method}: {why}; its log:\n{self.log_tail()}")
                self._replied.wait(left)
            reply = self._replies.pop(message["id"])
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')} {reply['error'].get('data', '')}")
        return reply.get("result", {})

    def wait_for_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        """The params of the next event called ``method`` (events before it are dropped)."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            left = deadline - time.monotonic()
            try:
                event = self._events.get(timeout=max(left, 0.001)) if left > 0 else None
            except queue.Empty:
                event = None
            if event is None:
                raise BrowserError(f"no {method} in {limit:g} s")
            if event["method"] == "_closed":
                raise BrowserError(f"Chromium closed before {method}; its log:\n{self.log_tail()}")
            if event["method"] == method:
                return event.get("params", {})

    # ------------------------------------------------------------------ what a test does with a page
    def set_viewport(self, width: int, height: int) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.width, self.height = width, height

    def open(self, url: str) -> None:
        """Navigate to ``url`` and wait for its load event (images included)."""
        while not self._events.empty():  # forget the load events of earlier pages
            self._events.get_nowait()
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"cannot open {url}: {result['errorText']}")
        self.wait_for_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited, JSON-able values)."""
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"{expression!r} threw: {details.get('exception', {}).get('description')}")
        return result["result"].get("value")

    def wait_until(self, expression: str, timeout: float | None = None) -> Any:
        """Poll ``expression`` every 0.1 s until it is truthy (one that throws, say on an element not
        there yet, counts as false); its value, or BrowserError in time."""
        limit = self.timeout if timeout is None else timeout
        deadline, threw = time.monotonic() + limit, ""
        while True:
            try:
                if value := self.evaluate(expression):
                    return value
            except BrowserError as e:
                if self._closed:
                    raise
                threw = f" (last: {e})"
            if time.monotonic() > deadline:
                raise BrowserError(f"{expression!r} was not true within {limit:g} s{threw}")
            time.sleep(0.1)

    def click_text(self, text: str, timeout: float | None = None) -> None:
        """Click, with the mouse, the innermost visible element whose innerText is ``text`` (waiting for
        one to appear)."""
        find = f"""(() => {{
            const hits = [...document.querySelectorAll('body *')].filter(
                e => e.innerText && e.innerText.trim() === {json.dumps(text)} && e.getClientRects().length);
            const el = hits.find(e => !hits.some(o => o !== e && e.contains(o)));
            if (!el) return null;
            el.scrollIntoView({{block: 'center'}});
            const r = el.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2];
        }})()"""
        try:
            x, y = self.wait_until(find, timeout)
        except BrowserError as e:
            raise BrowserError(f"no element with the text {text!r} to click") from e
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}
            )

    def screenshot(self, out: str | Path) -> Path:
        """Save a PNG of the viewport to ``out``."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path = Path(out)
        path.write_bytes(base64.b64decode(data))
        return path


def check_report_page(path: str | Path, executable: str | None = None) -> list[str]:
    """Open a report page in headless Chromium; what is wrong with it, one line a problem (empty when
    all is well): an image that did not decode (not complete, or naturalWidth 0), no image at all,
    a request for anything but a ``file:`` or ``data:`` URL, a console error or uncaught exception."""
    page = Path(path).resolve()
    with Browser(executable) as browser:
        browser.open(page.as_uri())
        images = browser.evaluate(
            "[...document.images].map(i => ({src: i.getAttribute('src').slice(0, 60),"
            " complete: i.complete, width: i.naturalWidth}))"
        )
        time.sleep(0.2)  # the last console messages on their way
        problems = [
            f"image {n} did not decode: src={img['src']!r} complete={img['complete']} width={img['width']}"
            for n, img in enumerate(images)
            if not (img["complete"] and img["width"] > 0)
        ]
        if not images:
            problems.append("the page has no <img>")
        problems += [
            f"fetched from outside: {url[:200]}"
            for url in browser.requests
            if url.split(":", 1)[0] not in ("file", "data")
        ]
        problems += browser.errors
    return problems


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    shot = verbs.add_parser("screenshot", help="open URL, run the steps in order, save a PNG")
    shot.add_argument("url")
    shot.add_argument("out")
    shot.add_argument("--width", type=int, default=1600)
    shot.add_argument("--height", type=int, default=1000)
    shot.add_argument("--timeout", type=float, default=LOAD_TIMEOUT, help="seconds for each wait")
    shot.add_argument("--settle", type=float, default=0.5, help="seconds to wait before the shot")
    shot.add_argument("--online", action="store_true", help="resolve host names (default: localhost only)")

    class Step(argparse.Action):
        def __call__(self, parser: Any, namespace: Any, value: Any, option: Any = None) -> None:
            namespace.steps = [*(namespace.steps or []), (self.dest, value)]

    shot.add_argument("--wait-for", action=Step, metavar="JS_EXPR", help="poll until it is truthy")
    shot.add_argument(
        "--click-text", action=Step, metavar="TEXT", help="click the innermost element with this innerText"
    )
    shot.set_defaults(steps=[])
    check = verbs.add_parser("check-report", help="print what is wrong with a report page")
    check.add_argument("page")
    args = parser.parse_args(argv)
    try:
        if args.verb == "check-report":
            problems = check_report_page(args.page)
            print("\n".join(problems) or "ok")
            return 1 if problems else 0
        browser = Browser(width=args.width, height=args.height, timeout=args.timeout, offline=not args.online)
        with browser as b:
            b.open(args.url)
            for kind, value in args.steps:
                b.wait_until(value) if kind == "wait_for" else b.click_text(value)
            time.sleep(args.settle)
            print(b.screenshot(args.out))
            for error in b.errors:
                print(error, file=sys.stderr)
    except BrowserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
