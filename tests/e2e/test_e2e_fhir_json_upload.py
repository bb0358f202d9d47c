"""A ~200 MiB FHIR JSON Binary upload over real HTTP: the base64 ``data`` streams, so the
server's memory grows by less than 96 MiB, whichever comes first, ``data`` or ``contentType``."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_e2e_seed_flow import PeakRss, bearer

pytestmark = pytest.mark.e2e

PIECE = os.urandom(3 * 256 * 1024)  # a multiple of 3: its base64 has no padding
CONTENT = 150 * 1024 * 1024  # 200 MiB of base64
LIMIT = 96 * 1024 * 1024


def content() -> Iterator[bytes]:
    sent = 0
    while sent < CONTENT:
        piece = PIECE[: CONTENT - sent]
        sent += len(piece)
        yield piece


def fhir_json(data_first: bool) -> Iterator[bytes]:
    content_type = b'"contentType":"application/octet-stream"'
    yield b'{"resourceType":"Binary",'
    if not data_first:
        yield content_type + b","
    yield b'"data":"'
    for piece in content():
        yield base64.b64encode(piece)
    yield b'"'
    if data_first:
        yield b"," + content_type
    yield b"}"


@pytest.mark.parametrize("data_first", [True, False], ids=["data-first", "contentType-first"])
def test_a_200_mib_fhir_json_upload_keeps_server_memory_under_96_mib(
    server: Server, data_first: bool
) -> None:
    headers = bearer(server.token())
    baseline = PeakRss(server.process.pid).current()
    began = time.monotonic()
    with PeakRss(server.process.pid) as rss:
        created = httpx.post(
            f"{server.base}/Binary",
            content=fhir_json(data_first),
            headers={
                **headers,
                "Content-Type": "application/fhir+json",
                "Prefer": "return=minimal",
            },
            timeout=600,
        )
    assert created.status_code == 201, created.text
    growth = rss.peak - baseline
    took = time.monotonic() - began
    print(f"\n200 MiB FHIR JSON upload: {took:.1f} s, server RSS growth {growth / 2**20:.1f} MiB")
    assert growth < LIMIT
    binary_id = created.headers["location"].split("/Binary/")[1].split("/")[0]
    expected = hashlib.sha256()
    for piece in content():
        expected.update(piece)
    got = hashlib.sha256()
    size = 0
    url = f"{server.base}/Binary/{binary_id}"
    with httpx.stream("GET", url, headers=headers, timeout=300) as response:
        assert response.headers["content-type"] == "application/octet-stream"
        for piece in response.iter_bytes():
            got.update(piece)
            size += len(piece)
    assert (size, got.hexdigest()) == (CONTENT, expected.hexdigest())
