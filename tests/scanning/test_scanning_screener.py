"""The upload screener: type policy on the first 64 KiB, clamd on every chunk, and what each
failure means for the upload (415, 422, 413, 503 or stored unscanned)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from fhirbin.config import SettingsError, load_settings
from fhirbin.errors import (
    FhirbinError,
    PayloadTooLarge,
    ServiceUnavailable,
    UnprocessableContent,
    UnsupportedMediaType,
)
from fhirbin.runtime import build_screener
from fhirbin.scanning.clamd import ClamdAddress
from fhirbin.scanning.screener import RETRY_AFTER, Screener
from fhirbin.security.policy import TypePolicy, parse_types
from fhirbin.security.sniff import SNIFF_BYTES
from tests.clamd_support import EICAR, EICAR_SIGNATURE, MARKER, Clamd, start_clamd
from tests.security import samples

pytestmark = pytest.mark.anyio

DEFAULT_POLICY = TypePolicy(deny=parse_types("executables", "X"))


class Source:
    """An upload's chunks, counting how many were taken."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = list(chunks)
        self.taken = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.taken += 1
            yield chunk


async def run(screener: Screener, declared: str, chunks: Iterable[bytes]) -> bytes:
    out = bytearray()
    async for chunk in screener(declared, Source(chunks)):
        out += chunk
    return bytes(out)


def split(content: bytes, size: int = 1000) -> list[bytes]:
    return [content[i : i + size] for i in range(0, len(content), size)]


def with_clamd(clamd: Clamd, **kwargs: object) -> Screener:
    return Screener(policy=DEFAULT_POLICY, clamd=ClamdAddress.parse(clamd.unix_url), **kwargs)  # type: ignore[arg-type]


async def test_clean_content_passes_through_unchanged(clamd: Clamd) -> None:
    content = samples.PDF + bytes(range(256)) * 1000
    assert await run(with_clamd(clamd), "application/pdf", split(content, 4096)) == content


async def test_empty_content_passes(clamd: Clamd) -> None:
    assert await run(with_clamd(clamd), "application/pdf", []) == b""
    assert await run(with_clamd(clamd), "text/plain", [b""]) == b""


async def test_eicar_is_refused_with_422_naming_the_signature(clamd: Clamd) -> None:
    with pytest.raises(UnprocessableContent) as info:
        await run(with_clamd(clamd), "text/plain", [EICAR])
    assert info.value.status == 422
    assert info.value.code == "business-rule"
    assert EICAR_SIGNATURE in info.value.diagnostics


async def test_the_verdict_comes_before_the_upload_completes(clamd: Clamd) -> None:
    # Every chunk reaches the store, then the refusal arrives instead of the end of the stream:
    # the blob store never gets to publish.
    content = b"A" * 200_000 + MARKER + b"B" * 200_000
    received = bytearray()

    async def store() -> None:
        async for chunk in with_clamd(clamd)("application/octet-stream", Source(split(content))):
            received.extend(chunk)

    with pytest.raises(UnprocessableContent):
        await store()
    assert bytes(received) == content


async def test_only_the_first_64_kib_are_held_back() -> None:
    source = Source([b"x" * 1024] * 1000)
    stream = Screener(policy=DEFAULT_POLICY)("text/plain", source)
    assert isinstance(stream, AsyncGenerator)
    first = await anext(stream)
    assert first == b"x" * 1024
    assert source.taken == SNIFF_BYTES // 1024  # the sniffing window, not the upload
    await stream.aclose()


async def test_a_denied_declared_type_is_refused_before_reading_a_byte() -> None:
    source = Source([samples.PDF])
    with pytest.raises(UnsupportedMediaType):
        await anext(Screener(policy=DEFAULT_POLICY)("application/x-msdownload", source))
    assert source.taken == 0


async def test_type_refusals_come_first_even_when_clamd_is_down(tmp_path: Path) -> None:
    screener = Screener(policy=DEFAULT_POLICY, clamd=ClamdAddress(path=str(tmp_path / "x")))
    with pytest.raises(UnsupportedMediaType, match=r"application/vnd\.microsoft"):
        await run(screener, "application/pdf", [samples.PE])


async def test_clamd_unreachable_fails_closed_with_503_and_retry_after(tmp_path: Path) -> None:
    screener = Screener(policy=DEFAULT_POLICY, clamd=ClamdAddress(path=str(tmp_path / "x")))
    with pytest.raises(ServiceUnavailable) as info:
        await run(screener, "application/pdf", [samples.PDF])
    assert info.value.status == 503
    assert info.value.code == "transient"
    assert info.value.headers == {"Retry-After": str(RETRY_AFTER)}


async def test_clamd_unreachable_with_fail_open_stores_unscanned_and_warns(
    tmp_path: Path,
) -> None:
    screener = Screener(
        policy=DEFAULT_POLICY, clamd=ClamdAddress(path=str(tmp_path / "x")), fail_open=True
    )
    with capture_logs() as logs:
        assert await run(screener, "text/plain", [EICAR]) == EICAR
    assert [entry["log_level"] for entry in logs] == ["warning"]
    assert "FHIRBIN_CLAMAV_FAIL_OPEN" in logs[0]["event"]


@contextlib.asynccontextmanager
async def hung_clamd(path: Path, *, drop_after: int | None = None) -> AsyncIterator[None]:
    """A clamd that reads everything and never answers, or hangs up after some bytes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = 0
        while data := await reader.read(65536):
            seen += len(data)
            if drop_after is not None and seen > drop_after:
                break
        writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path))
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


async def test_a_timeout_fails_closed_or_open(tmp_path: Path) -> None:
    sock = tmp_path / "hung.sock"
    async with hung_clamd(sock):
        closed = Screener(policy=DEFAULT_POLICY, clamd=ClamdAddress(path=str(sock)), timeout=0.3)
        with pytest.raises(ServiceUnavailable):
            await run(closed, "text/plain", [b"hello"])
        opened = Screener(
            policy=DEFAULT_POLICY, clamd=ClamdAddress(path=str(sock)), timeout=0.3, fail_open=True
        )
        assert await run(opened, "text/plain", [b"hello"]) == b"hello"


async def test_a_connection_dropped_mid_scan_is_503_even_when_failing_open(
    tmp_path: Path,
) -> None:
    sock = tmp_path / "drop.sock"
    async with hung_clamd(sock, drop_after=100_000):
        screener = Screener(
            policy=DEFAULT_POLICY, clamd=ClamdAddress(path=str(sock)), timeout=5, fail_open=True
        )
        with pytest.raises(ServiceUnavailable):
            await run(screener, "application/octet-stream", [b"\0" * 65536] * 200)


async def test_over_stream_max_length_is_413_even_when_failing_open(tmp_path: Path) -> None:
    small = await asyncio.to_thread(start_clamd, tmp_path / "small", stream_max_length="1M")
    try:
        screener = Screener(
            policy=DEFAULT_POLICY, clamd=ClamdAddress.parse(small.tcp_url), fail_open=True
        )
        with pytest.raises(PayloadTooLarge, match="StreamMaxLength"):
            await run(screener, "application/octet-stream", [b"\0" * 65536] * 256)
    finally:
        small.stop()


async def test_an_error_in_the_source_propagates_and_closes_the_scan(clamd: Clamd) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield samples.PDF
        raise PayloadTooLarge("too big")

    with pytest.raises(PayloadTooLarge, match="too big"):
        async for _ in with_clamd(clamd)("application/pdf", failing()):
            pass


def test_build_screener_from_settings(clamd: Clamd) -> None:
    def build(**overrides: object) -> Screener | None:
        screener = build_screener(load_settings({}, {"data_dir": Path("x"), **overrides}))
        assert screener is None or isinstance(screener, Screener)
        return screener

    default = build()
    assert default is not None
    assert default.clamd is None
    assert default.policy.reject_mismatch
    assert build(deny_types="", type_mismatch="accept") is None
    assert build(deny_types="", type_mismatch="accept", allow_types="image/*") is not None
    scanning = build(clamav=clamd.tcp_url, clamav_timeout=7, clamav_fail_open=True)
    assert scanning is not None
    assert str(scanning.clamd) == clamd.tcp_url
    assert scanning.timeout == 7
    assert scanning.fail_open
    with pytest.raises(SettingsError, match="FHIRBIN_CLAMAV"):
        build(clamav="localhost:3310")
    with pytest.raises(SettingsError, match="FHIRBIN_ALLOW_TYPES"):
        build(allow_types="pdf")


async def test_errors_are_fhirbin_errors_with_statuses(clamd: Clamd) -> None:
    statuses = set()
    for declared, content in (("image/png", samples.PDF), ("text/plain", EICAR)):
        with pytest.raises(FhirbinError) as info:
            await run(with_clamd(clamd), declared, [content])
        statuses.add(info.value.status)
    assert statuses == {415, 422}
