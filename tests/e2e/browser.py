"""Headless Chromium for the browser tests, and a second origin for them to embed from.

Chromium (Debian's ``chromium``, installed by scripts/system-deps.sh) runs once per page with
``--dump-dom``: it loads the page, lets its scripts run for ``--virtual-time-budget`` of
virtual time (or ``--timeout`` of real time, for a navigation that never renders a page), and
prints the DOM. The background-networking flags keep it from calling home, which this
machine's closed network would refuse. Its HOME is the test's folder, so downloads land there.

:class:`PageServer` is the other origin: a plain HTTP server on another localhost port that
serves the test's pages and counts the hits on its ``/beacon`` (a script that runs calls it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Debian's chromium is not installed: run scripts/system-deps.sh (make test)")
    return found


def dump_dom(
    url: str,
    home: Path,
    *,
    budget_ms: int = 3000,
    timeout_ms: int | None = None,
    required: bool = True,
) -> str:
    """The DOM Chromium ends with after loading ``url`` (a new profile every time); with
    ``required`` False, "" when it printed none (a navigation that became a download prints no
    document on some Chromium builds).

    Chromium does not always exit once it has printed the DOM (after a download its helper
    processes linger), so it runs in a session of its own, which is killed once the DOM is
    complete or a minute has passed.
    """
    home.mkdir(parents=True, exist_ok=True)
    runs = len(list(home.glob("profile-*")))
    profile, output = home / f"profile-{runs}", home / f"dom-{runs}.html"
    wait = [f"--timeout={timeout_ms}"] if timeout_ms else [f"--virtual-time-budget={budget_ms}"]
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *wait, "--dump-dom", url],
            stdout=sink,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "HOME": str(home)},
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if output.read_bytes().rstrip().endswith(b"</html>"):
                with suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.5)
                break
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the session this call started
        process.wait()
    dom = output.read_text(encoding="utf-8")
    if not required and not dom.strip():
        return ""
    assert dom.rstrip().endswith("</html>"), f"Chromium printed no DOM for {url}"
    return dom


class PageServer:
    """Serves ``pages`` (path → (content type, body)) and records ``/beacon`` hits."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, bytes]] = {}
        self.beacons: list[str] = []
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                path = urlsplit(self.path).path
                if path == "/beacon":
                    server.beacons.append(self.path)
                    self.send_response(204)
                    self.end_headers()
                    return
                if path not in server.pages:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                content_type, body = server.pages[path]
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the test reads ``requests`` instead

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[PageServer]:
        thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()
            thread.join(timeout=5)
