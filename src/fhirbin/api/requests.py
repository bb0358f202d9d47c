"""Small request helpers shared by the handlers: the runtime, scope checks, bounded bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request

from fhirbin.errors import BadRequest, FhirbinError, PayloadTooLarge

if TYPE_CHECKING:
    from fhirbin.runtime import Runtime


_CUT_SHORT = (
    "The request body ended before it was complete (the connection was closed, or its chunked "
    "encoding is malformed)."
)


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit():
        raise BadRequest("Content-Length is not a number.", expression="http.Content-Length")
    return int(raw)


async def _limited(
    request: Request, limit: int, error: FhirbinError | None
) -> AsyncIterator[bytes]:
    """The body's chunks, refusing more than ``limit`` bytes before (by Content-Length) and
    while reading; a body cut short is a BadRequest."""
    too_big = error or PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    declared = content_length(request)
    if declared is not None and declared > limit:
        raise too_big
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            yield chunk
    except ClientDisconnect as exc:
        raise BadRequest(_CUT_SHORT) from exc


async def read_body(request: Request, limit: int, error: FhirbinError | None = None) -> bytes:
    """The whole body, refusing more than ``limit`` bytes before and while reading."""
    return b"".join([chunk async for chunk in _limited(request, limit, error)])


async def spool_body(
    request: Request, spool: BinaryIO, limit: int, error: FhirbinError | None = None
) -> int:
    """Write the whole body to ``spool``, refusing more than ``limit`` bytes before and while
    reading; returns its size. Memory holds one chunk at a time."""
    size = 0
    async for chunk in _limited(request, limit, error):
        size += len(chunk)
        spool.write(chunk)
    spool.flush()
    return size


async def body_chunks(request: Request) -> AsyncIterator[bytes]:
    """The body as it arrives; a body cut short (the client closed the connection, or its
    chunked encoding was malformed: the server then ends the body) is a BadRequest, not a 500."""
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect as exc:
        raise BadRequest(_CUT_SHORT) from exc


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """application/x-www-form-urlencoded (UTF-8) into name/value pairs."""
    try:
        text = body.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(
            "The form body is not valid UTF-8 application/x-www-form-urlencoded."
        ) from exc
