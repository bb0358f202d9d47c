"""A minimal HTTP/1.1 client for the single-request measurements (setup, large transfers).

One request per connection (``Connection: close``). Uploads from a file go out with
``socket.sendfile`` (zero copy, so the client costs the 2-core machine as little as possible);
downloads are received into one reused 1 MiB buffer and thrown away unless ``keep_body``. The
time measured runs from ``connect()`` to the last body byte, so it includes the server's time
to first byte and, for uploads, its fsync before it answers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path
from typing import TypeAlias

RECV_BUFFER = 1 << 20
Reader: TypeAlias = "BufferedReader[socket.SocketIO]"


class HttpError(Exception):
    """The exchange itself failed (connection refused, malformed response, short body)."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "
    body: bytes  # only when keep_body, else b""
    nbytes: int  # body bytes received (after de-chunking)
    seconds: float  # connect() to the last body byte

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


def request(
    host: str,
    port: int,
    method: str,
    target: str,
    headers: Mapping[str, str] | None = None,
    *,
    body: bytes | None = None,
    body_file: Path | None = None,
    keep_body: bool = False,
    timeout: float = 600.0,
) -> Response:
    """Send one request and read the whole response."""
    if body is not None and body_file is not None:
        raise ValueError("body and body_file are exclusive")
    length: int | None = None
    if body is not None:
        length = len(body)
    elif body_file is not None:
        length = body_file.stat().st_size
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if body_file is not None:
                sock.sendall(head)
                with body_file.open("rb") as file:
                    sock.sendfile(file)
            else:
                sock.sendall(head + (body or b""))
            with BufferedReader(socket.SocketIO(sock, "rb"), 1 << 16) as reader:
                status, response_headers = _read_head(reader)
                while 100 <= status < 200:  # interim answers (100 Continue): skip
                    status, response_headers = _read_head(reader)
                chunks: list[bytes] | None = [] if keep_body else None
                if method == "HEAD" or status in (204, 304):
                    nbytes = 0
                elif "chunked" in response_headers.get("transfer-encoding", "").lower():
                    nbytes = _read_chunked(reader, chunks)
                elif "content-length" in response_headers:
                    expected = int(response_headers["content-length"])
                    nbytes = _read_exact(reader, expected, chunks)
                    if nbytes != expected:
                        raise HttpError(f"short body: {nbytes} of {expected} bytes")
                else:
                    nbytes = _read_exact(reader, None, chunks)
    except OSError as exc:
        raise HttpError(f"{method} {target} on {host}:{port}: {exc}") from exc
    seconds = time.perf_counter() - started
    return Response(
        status=status,
        headers=response_headers,
        body=b"".join(chunks) if chunks is not None else b"",
        nbytes=nbytes,
        seconds=seconds,
    )


def _read_head(reader: Reader) -> tuple[int, dict[str, str]]:
    readline = reader.readline
    status_line = readline(65537)
    if not status_line:
        raise HttpError("connection closed before a response")
    parts = status_line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HttpError(f"malformed status line: {status_line!r}")
    headers: dict[str, str] = {}
    while True:
        line = readline(65537)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return int(parts[1]), headers


def _read_exact(reader: Reader, size: int | None, keep: list[bytes] | None) -> int:
    """Read ``size`` bytes (or up to EOF when None) into a reused buffer; returns the count."""
    buffer = bytearray(RECV_BUFFER)
    view = memoryview(buffer)
    readinto = reader.readinto
    total = 0
    while size is None or total < size:
        want = RECV_BUFFER if size is None else min(RECV_BUFFER, size - total)
        n = readinto(view[:want])
        if not n:
            break
        total += n
        if keep is not None:
            keep.append(bytes(view[:n]))
    return total


def _read_chunked(reader: Reader, keep: list[bytes] | None) -> int:
    readline = reader.readline
    total = 0
    while True:
        size_line = readline(1024)
        if not size_line:
            raise HttpError("connection closed inside a chunked body")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while readline(65537) not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return total
        got = _read_exact(reader, size, keep)
        if got != size:
            raise HttpError("connection closed inside a chunk")
        total += got
        readline(3)  # the CRLF after the chunk
