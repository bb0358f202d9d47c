"""Malformed requests over a real socket: what the application answers (an OperationOutcome)
and what granian refuses before the application sees the request (docs/api.md#known-limits)."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e


def exchange(server: Server, request: bytes, *, half_close: bool = False) -> tuple[int, bytes]:
    parts = urlsplit(server.base)
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=10) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _upload(server: Server, extra: bytes) -> bytes:
    token = server.token().encode()
    return (
        b"POST /fhir/Binary HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + b"\r\n"
        b"Content-Type: text/plain\r\n" + extra
    )


def _outcome(body: bytes) -> dict[str, object]:
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    issue: dict[str, object] = outcome["issue"][0]
    return issue


def test_a_malformed_chunked_body_is_a_400_outcome(server: Server) -> None:
    request = _upload(
        server, b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n"
    )
    status, body = exchange(server, request)
    assert status == 400
    assert "ended before it was complete" in str(_outcome(body)["diagnostics"])


def test_a_body_shorter_than_its_content_length_is_a_400_outcome(server: Server) -> None:
    request = _upload(server, b"Content-Length: 100\r\n\r\nabc")
    status, body = exchange(server, request, half_close=True)
    assert status == 400
    assert _outcome(body)["code"] == "invalid"


def test_headers_over_the_configured_limit_are_a_431_outcome(server: Server) -> None:
    request = (
        b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"a" * 70_000
        + b"\r\nConnection: close\r\n\r\n"
    )
    status, body = exchange(server, request)
    assert status == 431
    assert _outcome(body)["code"] == "too-long"


#: Refused by granian (hyper) before the application is called: no OperationOutcome is
#: possible. docs/api.md#known-limits lists these; if one starts reaching the application,
#: this test says so.
REFUSED_BY_THE_SERVER = {
    "control character in a header value": (b"X-A: a\x01b\r\n", 400),
    "NUL in a header value": (b"X-A: a\x00b\r\n", 400),
    "control character in a header name": (b"X\x01A: b\r\n", 400),
    "Content-Length not a number": (b"Content-Length: abc\r\n", 400),
    "negative Content-Length": (b"Content-Length: -1\r\n", 400),
    "two different Content-Lengths": (b"Content-Length: 1\r\nContent-Length: 2\r\n", 400),
    "obsolete line folding": (b"X-A: a\r\n b\r\n", 400),
    "more than 100 header fields": (b"".join(b"X-%d: a\r\n" % i for i in range(120)), 431),
    "headers beyond the 2 MiB read buffer": (b"X-A: " + b"a" * 3_000_000 + b"\r\n", 431),
}


@pytest.mark.parametrize("case", REFUSED_BY_THE_SERVER, ids=str)
def test_what_the_server_layer_refuses_before_the_application(server: Server, case: str) -> None:
    headers, expected = REFUSED_BY_THE_SERVER[case]
    request = (
        b"POST /fhir/metadata HTTP/1.1\r\nHost: x\r\n" + headers + b"Connection: close\r\n\r\n"
    )
    status, body = exchange(server, request)
    assert (status, body) == (expected, b"")


def test_a_uri_over_64_kib_is_refused_by_the_server_layer(server: Server) -> None:
    request = b"GET /fhir/" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert exchange(server, request) == (414, b"")
