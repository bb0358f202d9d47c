"""The INSTREAM client against a real clamd, over its unix socket and its TCP port."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhirbin.config import SettingsError
from fhirbin.scanning.clamd import (
    ClamdAddress,
    ClamdFailed,
    ClamdLimitExceeded,
    ClamdTimeout,
    ClamdUnreachable,
    InstreamScan,
    Verdict,
    parse_reply,
    ping,
)
from tests.clamd_support import (
    EICAR,
    EICAR_SIGNATURE,
    MARKER,
    MARKER_SIGNATURE,
    Clamd,
    free_port,
    start_clamd,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["unix", "tcp"])
def address(request: pytest.FixtureRequest, clamd: Clamd) -> ClamdAddress:
    return ClamdAddress.parse(clamd.unix_url if request.param == "unix" else clamd.tcp_url)


async def scan(address: ClamdAddress, *chunks: bytes, seconds: float = 10) -> Verdict:
    async with await InstreamScan.open(address, seconds) as instream:
        for chunk in chunks:
            await instream.feed(chunk)
        return await instream.verdict()


async def test_clean_content_is_ok(address: ClamdAddress) -> None:
    assert await scan(address, b"%PDF-1.4\n", b"hello\n") == Verdict()


async def test_eicar_is_found_by_the_projects_hash_signature(address: ClamdAddress) -> None:
    verdict = await scan(address, EICAR)
    assert not verdict.clean
    assert verdict.signature is not None
    assert verdict.signature.startswith(EICAR_SIGNATURE)


async def test_eicar_split_across_chunks_is_found(address: ClamdAddress) -> None:
    verdict = await scan(address, b"header ", EICAR[:20], b"", EICAR[20:], b" trailer")
    assert verdict.signature is not None
    assert verdict.signature.startswith(f"{EICAR_SIGNATURE}-Body")


async def test_a_signature_deep_in_a_large_stream_is_found(address: ClamdAddress) -> None:
    block = os.urandom(1 << 20)
    verdict = await scan(address, *([block] * 8), MARKER, block)
    assert verdict.signature is not None
    assert verdict.signature.startswith(MARKER_SIGNATURE)


async def test_an_empty_stream_is_clean(address: ClamdAddress) -> None:
    assert (await scan(address)).clean


async def test_ping(address: ClamdAddress, tmp_path: Path) -> None:
    assert await ping(address)
    assert not await ping(ClamdAddress(path=str(tmp_path / "nothing.sock")), 1)


async def test_an_absent_socket_is_unreachable(tmp_path: Path) -> None:
    with pytest.raises(ClamdUnreachable, match="cannot reach clamd"):
        await InstreamScan.open(ClamdAddress(path=str(tmp_path / "none.sock")), 2)


async def test_a_closed_port_is_unreachable() -> None:
    with pytest.raises(ClamdUnreachable):
        await InstreamScan.open(ClamdAddress(host="127.0.0.1", port=free_port()), 2)


async def test_a_stream_over_stream_max_length_is_reported(tmp_path: Path) -> None:
    small = await asyncio.to_thread(start_clamd, tmp_path / "small", stream_max_length="1M")
    try:
        block = b"\0" * (256 * 1024)
        with pytest.raises(ClamdLimitExceeded):
            await scan(ClamdAddress.parse(small.unix_url), *[block] * 64)  # 16 MiB > 1 MiB
    finally:
        small.stop()


@contextlib.asynccontextmanager
async def serve_silently(path: Path) -> AsyncIterator[asyncio.AbstractServer]:
    """A socket that accepts and reads but never answers (a hung clamd)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path))
    yield server
    server.close()
    await server.wait_closed()


async def test_no_verdict_in_time_is_a_timeout(tmp_path: Path) -> None:
    sock = tmp_path / "hung.sock"
    async with (
        serve_silently(sock),
        await InstreamScan.open(ClamdAddress(path=str(sock)), 0.5) as instream,
    ):
        await instream.feed(b"data")
        with pytest.raises(ClamdTimeout):
            await instream.verdict()


async def test_a_dropped_connection_is_a_failure(tmp_path: Path) -> None:
    sock = tmp_path / "drop.sock"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.close()

    server = await asyncio.start_unix_server(handle, path=str(sock))
    try:
        with pytest.raises(ClamdFailed):
            await scan(ClamdAddress(path=str(sock)), *[b"x" * 65536] * 200, seconds=2)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"stream: OK\0", Verdict()),
        (b"stream: Eicar-Signature FOUND\0", Verdict("Eicar-Signature")),
        (b"stream: Win.Test.EICAR_HDB-1 FOUND", Verdict("Win.Test.EICAR_HDB-1")),
    ],
)
def test_parse_reply(raw: bytes, expected: Verdict) -> None:
    assert parse_reply(raw) == expected


def test_parse_reply_errors() -> None:
    with pytest.raises(ClamdLimitExceeded):
        parse_reply(b"INSTREAM size limit exceeded. ERROR\0")
    with pytest.raises(ClamdFailed, match="Can't allocate"):
        parse_reply(b"stream: Can't allocate memory ERROR\0")


@pytest.mark.parametrize(
    ("url", "text"),
    [
        ("unix:///run/clamav/clamd.ctl", "unix:///run/clamav/clamd.ctl"),
        ("tcp://127.0.0.1:3310", "tcp://127.0.0.1:3310"),
        ("tcp://clamav.internal:3310/", "tcp://clamav.internal:3310"),
        ("tcp://[::1]:3310", "tcp://[::1]:3310"),
    ],
)
def test_addresses(url: str, text: str) -> None:
    assert str(ClamdAddress.parse(url)) == text


@pytest.mark.parametrize(
    "url",
    ["clamd.ctl", "unix://host/path", "tcp://host", "tcp://host:0", "tcp://host:x", "http://h:1"],
)
def test_bad_addresses_are_settings_errors(url: str) -> None:
    with pytest.raises(SettingsError, match="FHIRBIN_CLAMAV"):
        ClamdAddress.parse(url)
