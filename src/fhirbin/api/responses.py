"""Responses: streamed content, whole-file sends, FHIR JSON, and the validators they carry.

``StreamedResponse`` sends its headers exactly as given (Starlette would append a charset to
``text/*`` types, but R4 binary.html#rest wants ``Content-Type`` to be ``Binary.contentType``
verbatim). A whole local file goes out through the ASGI ``http.response.pathsend`` extension
when the server offers it (granian does), so Python never touches the bytes; otherwise it is
streamed in chunks. Behind nginx with ``FHIRBIN_ACCEL_REDIRECT`` (docs/deployment.md, "nginx
sends the files"), a whole local file goes out as a ``redirect`` instead: fhirbin's headers,
``X-Accel-Redirect`` naming the file, and no body; nginx sends the file by sendfile.
HEAD gets the same headers and no body (R4 http.html#head).
Once the body has started, an error cannot become an OperationOutcome any more: the exception
propagates and the server aborts the connection, so a client never mistakes a truncated body
for a complete one (Content-Length is always sent).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Mapping
from pathlib import Path
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from fhirbin.fhir.binary import BinaryMeta, etag, http_date

FHIR_JSON = "application/fhir+json; charset=utf-8"


class StreamedResponse(Response):
    """A planned answer (api/reading.py): a status, headers (``headers``, or already encoded
    ``raw_headers``) and the body's source: ``content`` in memory, a local file ``path``
    (sent by pathsend when the server offers it, else ``body``), the ``body`` stream, or a
    ``redirect``: an X-Accel-Redirect URI for nginx, which sends that file itself (the answer
    carries the headers, the redirect and ``Content-Length: 0``; nginx puts the file's in).
    ``gather``: the stream is small; it is read whole before the status, and sent at once
    with its Content-Length."""

    def __init__(
        self,
        *,
        status_code: int,
        headers: Mapping[str, str] | None = None,
        raw_headers: list[tuple[bytes, bytes]] | None = None,
        body: AsyncIterable[bytes] | None = None,
        path: Path | None = None,
        content: bytes | None = None,
        gather: bool = False,
        redirect: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.background = None
        self.body_iter = body
        self.path = path
        self.content = content
        self.gather = gather
        self._first = b""
        self.raw_headers = raw_headers if raw_headers is not None else encode_headers(headers or {})
        self.redirect = redirect
        if redirect is not None:
            self.body_iter = self.path = None
            self.content = b""
            self.raw_headers = [
                *(item for item in self.raw_headers if item[0] != b"content-length"),
                (b"content-length", b"0"),
                (b"x-accel-redirect", redirect.encode("latin-1")),
            ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.prepare(scope)
        await self.send_prepared(scope, send)

    def _pathsend(self, scope: Scope) -> bool:
        return self.path is not None and "http.response.pathsend" in scope.get("extensions", {})

    async def prepare(self, scope: Scope) -> None:
        """Read what must be read before the status: a gathered body whole, else a stream's
        first chunk, so that a store that cannot be read now (faults.py) becomes an error
        answer instead of a 200 with a cut body. Raises before anything is sent."""
        if self.gather and self.content is None and self.body_iter is not None:
            self.content = b"".join([chunk async for chunk in self.body_iter])
            self.body_iter = None
            length = str(len(self.content)).encode("latin-1")
            self.raw_headers = [*self.raw_headers, (b"content-length", length)]
        self._first = b""
        if (
            scope["method"] != "HEAD"
            and self.content is None
            and not self._pathsend(scope)
            and self.body_iter is not None
        ):
            self.body_iter = aiter(self.body_iter)
            self._first = await anext(self.body_iter, b"")

    async def send_prepared(self, scope: Scope, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            await _close(self.body_iter)
            return
        if self.content is not None:
            await send({"type": "http.response.body", "body": self.content, "more_body": False})
            return
        if self._pathsend(scope):
            await send({"type": "http.response.pathsend", "path": str(self.path)})
            return
        if self._first:
            await send({"type": "http.response.body", "body": self._first, "more_body": True})
        if self.body_iter is not None:
            async for chunk in self.body_iter:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def encode_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """ASGI's header list: lowercase names, latin-1 bytes."""
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def _close(body: AsyncIterable[bytes] | None) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()


def validator_headers(meta: BinaryMeta) -> dict[str, str]:
    """Headers every read of a Binary carries, native or FHIR (R4 binary.html#rest,
    docs/decisions.md#read-representation).

    ``Cache-Control: private``: Binary content is usually PHI and must never be kept by a
    shared cache; ``Vary: Accept`` because the same URL answers native bytes or FHIR JSON.
    """
    headers = {
        "ETag": etag(meta.version),
        "Last-Modified": http_date(meta.last_updated),
        "Cache-Control": "private",
        "Vary": "Accept",
        "X-Content-Type-Options": "nosniff",
    }
    if meta.security_context:
        headers["X-Security-Context"] = meta.security_context
    return headers


def json_response(
    payload: Any,
    *,
    status_code: int = 200,
    media_type: str = FHIR_JSON,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")).encode(),
        status_code=status_code,
        media_type=media_type,
        headers=dict(headers or {}),
    )
