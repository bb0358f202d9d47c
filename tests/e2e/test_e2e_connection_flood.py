"""Thousands of idle and slowloris connections must not lock a new client out.

Bounded: 2,000 idle sockets and 200 slowloris sockets (one header byte a second) on 127.0.0.1,
for about 10 seconds; the server's file limit is raised for the test (a server needs one
descriptor per connection)."""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.e2e

IDLE = 2000
SLOWLORIS = 200
BOUND = 5.0  # seconds: a lock-out test, not a speed test


@pytest.fixture(scope="module")
def flooded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * (IDLE + SLOWLORIS) + 1024  # ours, the server's, and room to spare
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))  # inherited
    started = start_server(tmp_path_factory.mktemp("flood"), {})
    try:
        yield started
    finally:
        stop_server(started)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _open(address: tuple[str, int], count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(address)  # completes in the kernel's backlog, accepted or not
        sockets.append(sock)
    return sockets


def _slowloris(sockets: list[socket.socket], stop: threading.Event) -> None:
    """A request line, then one more header byte a second, never finishing the headers."""
    start = b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nX-Slow: "
    sent = 0
    while not stop.is_set():
        piece = start if sent == 0 else b"a"
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.send(piece)
        sent += 1
        stop.wait(1.0)


def test_a_new_client_is_served_promptly_while_thousands_of_connections_idle(
    flooded_server: Server,
) -> None:
    parts = urlsplit(flooded_server.base)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    stop = threading.Event()
    idle = _open(address, IDLE)
    slow = _open(address, SLOWLORIS)
    loris = threading.Thread(target=_slowloris, args=(slow, stop), daemon=True)
    loris.start()
    try:
        time.sleep(2.0)  # let the server take what it takes of them
        began = time.monotonic()
        try:
            response = httpx.get(f"{flooded_server.base}/metadata", timeout=60)
            status = response.status_code
        except httpx.TransportError as exc:
            status = type(exc).__name__  # type: ignore[assignment]
        took = time.monotonic() - began
        print(f"\nnew client with {IDLE} idle + {SLOWLORIS} slowloris open: {took:.2f} s")
        assert status == 200
        assert took < BOUND
    finally:
        stop.set()
        loris.join()
        for sock in idle + slow:
            sock.close()


def test_the_server_is_still_healthy_afterwards(flooded_server: Server) -> None:
    assert httpx.get(f"{flooded_server.base}/metadata", timeout=10).status_code == 200
    assert Path(flooded_server.log).exists()
