"""The seed's flow over real HTTP against `fhirbin serve` in a subprocess."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

PDF = b"%PDF-1.7\n" + os.urandom(20_000) + b"\n%%EOF\n"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_post_read_and_search(server: Server) -> None:
    headers = bearer(server.token())
    created = httpx.post(
        f"{server.base}/Binary", content=PDF, headers={**headers, "Content-Type": "application/pdf"}
    )
    assert created.status_code == 201
    location = created.headers["location"]
    binary_id = location.split("/Binary/")[1].split("/")[0]
    assert location == f"{server.base}/Binary/{binary_id}/_history/1"

    native = httpx.get(f"{server.base}/Binary/{binary_id}", headers=headers)
    assert native.status_code == 200
    assert native.content == PDF
    assert native.headers["content-type"] == "application/pdf"
    assert native.headers["etag"] == 'W/"1"'

    fhir = httpx.get(
        f"{server.base}/Binary/{binary_id}", headers={**headers, "Accept": "application/fhir+json"}
    )
    assert base64.b64decode(fhir.json()["data"]) == PDF

    bundle = httpx.get(f"{server.base}/Binary", params={"_id": binary_id}, headers=headers).json()
    assert bundle["total"] == 1
    assert bundle["entry"][0]["resource"]["id"] == binary_id


def test_every_status_code_over_http(server: Server) -> None:
    token = server.token()
    headers = bearer(token)
    base = server.base
    read_only = bearer(server.token("system/Binary.r"))
    statuses = {
        "400 malformed id": httpx.get(f"{base}/Binary/{'x' * 65}", headers=headers).status_code,
        "401 no token": httpx.get(f"{base}/Binary/abc").status_code,
        "401 forged": httpx.get(
            f"{base}/Binary/abc", headers=bearer(token[:-4] + "AAAA")
        ).status_code,
        "403 scope": httpx.get(f"{base}/Binary?_id=abc", headers=read_only).status_code,
        "404 unknown id": httpx.get(f"{base}/Binary/abc", headers=headers).status_code,
        "404 unknown route": httpx.get(f"{base}/Patient/abc", headers=headers).status_code,
        "405 method": httpx.patch(f"{base}/Binary/abc", headers=headers).status_code,
        "406 html": httpx.get(f"{base}/Binary/abc?_format=html", headers=headers).status_code,
        "413 too big": too_big(server, token),
        "415 search body": httpx.post(
            f"{base}/Binary/_search",
            content=b"{}",
            headers={**headers, "Content-Type": "application/json"},
        ).status_code,
    }
    assert statuses == {
        "400 malformed id": 400,
        "401 no token": 401,
        "401 forged": 401,
        "403 scope": 403,
        "404 unknown id": 404,
        "404 unknown route": 404,
        "405 method": 405,
        "406 html": 406,
        "413 too big": 413,
        "415 search body": 415,
    }


def test_client_revoke_from_the_cli_stops_its_tokens(server: Server) -> None:
    client_id, secret = server.new_client("system/Binary.r")
    token = httpx.post(
        f"{server.base}/auth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    ).json()["access_token"]
    assert httpx.get(f"{server.base}/Binary/abc", headers=bearer(token)).status_code == 404
    server.cli("client", "revoke", client_id)
    assert httpx.get(f"{server.base}/Binary/abc", headers=bearer(token)).status_code == 401
    listed = server.cli("client", "list", "--json").stdout
    assert client_id in listed
    assert secret not in listed


def too_big(server: Server, token: str) -> int:
    """Declare 2 GiB and send nothing: the 413 must come from Content-Length alone."""
    parts = urlsplit(server.base)
    request = (
        "POST /fhir/Binary HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {2 * 1024**3}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=10) as sock:
        sock.sendall(request)
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    return int(status_line.split()[1])


class PeakRss:
    """Samples the resident memory of the server and its worker processes."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def current(self) -> int:
        total = 0
        for process in [self.root, *self.root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


BLOCK = os.urandom(1024 * 1024)


def chunks_of(total: int, size: int = len(BLOCK)) -> Iterator[bytes]:
    """The same pseudo-random bytes each time it is called, without holding ``total`` bytes."""
    block = BLOCK[:size]
    sent = 0
    while sent < total:
        piece = block[: min(size, total - sent)]
        sent += len(piece)
        yield piece


def test_96_mib_round_trip_is_byte_exact_with_flat_server_memory(server: Server) -> None:
    headers = bearer(server.token())
    # 96 MiB: well above the fixed per-upload buffers (about 12 MiB, docs/operations.md), so
    # "a third of the content" tells holding the body from buffering a few batches of it.
    size = 96 * 1024 * 1024
    expected = hashlib.sha256()
    for piece in chunks_of(size):
        expected.update(piece)
    baseline = PeakRss(server.process.pid).current()
    with PeakRss(server.process.pid) as upload:
        created = httpx.post(
            f"{server.base}/Binary",
            content=chunks_of(size),
            headers={**headers, "Content-Type": "application/octet-stream"},
            timeout=120,
        )
    assert created.status_code == 201, created.text
    binary_id = created.headers["location"].split("/Binary/")[1].split("/")[0]
    got = hashlib.sha256()
    received = 0
    with (
        PeakRss(server.process.pid) as download,
        httpx.stream(
            "GET", f"{server.base}/Binary/{binary_id}", headers=headers, timeout=120
        ) as response,
    ):
        assert response.status_code == 200
        for piece in response.iter_bytes():
            got.update(piece)
            received += len(piece)
    assert received == size
    assert got.hexdigest() == expected.hexdigest()
    growth = max(upload.peak, download.peak) - baseline
    mib = 2**20
    print(
        f"\nserver RSS baseline {baseline / mib:.1f} MiB, upload peak {upload.peak / mib:.1f} MiB,"
        f" download peak {download.peak / mib:.1f} MiB"
    )
    # "far below the content size": the server must not hold the 96 MiB body.
    assert growth < size / 3, f"server memory grew by {growth / 2**20:.1f} MiB"
