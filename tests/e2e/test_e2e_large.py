"""A 1 GiB Binary over real HTTP: ranges, an interrupted download resumed, flat memory."""

from __future__ import annotations

import hashlib
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_e2e_seed_flow import PeakRss, bearer, chunks_of

pytestmark = pytest.mark.e2e

GIB = 1024 * 1024 * 1024
SLICE = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def big(server: Server) -> tuple[str, str, dict[str, str]]:
    headers = bearer(server.token())
    created = httpx.post(
        f"{server.base}/Binary",
        content=chunks_of(GIB),
        headers={**headers, "Content-Type": "application/octet-stream"},
        timeout=600,
    )
    assert created.status_code == 201, created.text
    binary_id = created.headers["location"].split("/Binary/")[1].split("/")[0]
    expected = hashlib.sha256()
    for piece in chunks_of(GIB):
        expected.update(piece)
    return binary_id, expected.hexdigest(), headers


def test_one_gib_fetched_by_ranges_is_byte_exact_with_flat_memory(
    server: Server, big: tuple[str, str, dict[str, str]]
) -> None:
    binary_id, digest, headers = big
    url = f"{server.base}/Binary/{binary_id}"
    got = hashlib.sha256()
    baseline = PeakRss(server.process.pid).current()
    with PeakRss(server.process.pid) as rss, httpx.Client(timeout=120) as client:
        for start in range(0, GIB, SLICE):
            end = min(start + SLICE, GIB) - 1
            with client.stream(
                "GET", url, headers={**headers, "Range": f"bytes={start}-{end}"}
            ) as r:
                assert r.status_code == 206
                assert r.headers["content-range"] == f"bytes {start}-{end}/{GIB}"
                for piece in r.iter_bytes():
                    got.update(piece)
    assert got.hexdigest() == digest
    growth = rss.peak - baseline
    print(f"\n1 GiB by 64 MiB ranges: server RSS growth {growth / 2**20:.1f} MiB")
    assert growth < 64 * 1024 * 1024


def test_interrupted_download_resumes_with_range_and_if_range(
    server: Server, big: tuple[str, str, dict[str, str]]
) -> None:
    binary_id, digest, headers = big
    url = f"{server.base}/Binary/{binary_id}"
    got = hashlib.sha256()
    received = 0
    with httpx.Client(timeout=120) as client:
        with client.stream("GET", url, headers=headers) as first:
            assert first.status_code == 200
            etag = first.headers["etag"]
            for piece in first.iter_raw(1024 * 1024):
                got.update(piece)
                received += len(piece)
                if received >= 300 * 1024 * 1024:
                    break  # the connection is dropped mid-body
        resume = {**headers, "Range": f"bytes={received}-", "If-Range": etag}
        with client.stream("GET", url, headers=resume) as rest:
            assert rest.status_code == 206
            assert rest.headers["content-range"] == f"bytes {received}-{GIB - 1}/{GIB}"
            for piece in rest.iter_bytes():
                got.update(piece)
                received += len(piece)
    assert received == GIB
    assert got.hexdigest() == digest


def test_full_one_gib_download_keeps_memory_flat(
    server: Server, big: tuple[str, str, dict[str, str]]
) -> None:
    binary_id, digest, headers = big
    got = hashlib.sha256()
    baseline = PeakRss(server.process.pid).current()
    with (
        PeakRss(server.process.pid) as rss,
        httpx.stream(
            "GET", f"{server.base}/Binary/{binary_id}", headers=headers, timeout=300
        ) as response,
    ):
        for piece in response.iter_bytes():
            got.update(piece)
    assert got.hexdigest() == digest
    assert rss.peak - baseline < 64 * 1024 * 1024


def raw_request(server: Server, request: bytes) -> bytes:
    parts = urlsplit(server.base)
    with socket.create_connection(
        (parts.hostname or "127.0.0.1", parts.port or 80), timeout=10
    ) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


@pytest.mark.parametrize("dots", ["..", "."])
def test_dot_segment_ids_are_refused_on_write(server: Server, dots: str) -> None:
    token = server.token()
    request = (
        f"PUT /fhir/Binary/{dots} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: text/plain\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
    ).encode()
    status_line = raw_request(server, request).split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"400", status_line
