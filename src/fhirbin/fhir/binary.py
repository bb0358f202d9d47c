"""The Binary resource in FHIR JSON, streamed, and the headers that carry its metadata.

Owns the FHIR JSON form of a Binary (R4 binary.html#resource, json.html): the resource is
written as ``head + base64(content) + tail`` so that content of any size is streamed and its
exact length known in advance (docs/decisions.md#streamed-fhir-form); the ``_summary`` form;
and the formats of the metadata headers of native reads (``ETag``, ``Last-Modified``: R4
http.html#versioning, binary.html#rest). Parsing a FHIR JSON Binary from a request body lives in
:mod:`fhirbin.fhir.binary_parse` and is re-exported here.
"""

from __future__ import annotations

import binascii
import email.utils
import json
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from typing import Any, Protocol

from fhirbin.fhir.binary_parse import ParsedBinary, parse_binary_resource

__all__ = [
    "SUBSETTED_TAG",
    "BinaryMeta",
    "ContentSizeMismatchError",
    "ParsedBinary",
    "base64_chunks",
    "base64_length",
    "binary_json_head",
    "binary_json_length",
    "binary_json_parts",
    "binary_json_stream",
    "binary_json_tail",
    "binary_summary_json",
    "etag",
    "http_date",
    "instant",
    "parse_binary_resource",
]

# R4 search.html#summary: subsets are tagged SUBSETTED from this code system.
SUBSETTED_TAG = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}


class BinaryMeta(Protocol):
    """What is known about one stored Binary version without reading its content."""

    @property
    def id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def last_updated(self) -> datetime: ...  # tz-aware UTC
    @property
    def content_type(self) -> str: ...
    @property
    def security_context(self) -> str | None: ...
    @property
    def size(self) -> int: ...


class ContentSizeMismatchError(RuntimeError):
    """The content streamed for a Binary is not ``meta.size`` bytes long.

    The length of the FHIR JSON was announced from ``meta.size``, so the response cannot be
    completed correctly; the HTTP layer must abort the connection.
    """


def instant(dt: datetime) -> str:
    """A FHIR ``instant`` in UTC with ``Z`` (R4 datatypes.html#instant); microseconds are
    written only when non-zero."""
    if dt.utcoffset() is None:
        raise ValueError("instant() needs a timezone-aware datetime")
    utc = dt.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds") + "Z"


def http_date(dt: datetime) -> str:
    """An RFC 9110 §5.6.7 IMF-fixdate (``Last-Modified``); sub-second precision is lost."""
    if dt.utcoffset() is None:
        raise ValueError("http_date() needs a timezone-aware datetime")
    return email.utils.format_datetime(dt.astimezone(UTC), usegmt=True)


def etag(version: int) -> str:
    """The weak ETag of a version (R4 http.html#versioning: ``W/"<versionId>"``)."""
    return f'W/"{version}"'


#: Elements a subset always keeps: the resource's identity and the mandatory contentType
#: (R4 search.html#elements: servers SHOULD return mandatory elements).
_ALWAYS = frozenset({"id", "meta", "contentType"})


def _resource(meta: BinaryMeta, elements: frozenset[str] | None = None) -> dict[str, Any]:
    """The Binary as a dict without ``data``; ``elements`` selects a subset (``_elements``)."""
    # Element order follows the R4 Binary definition (binary.html#resource).
    resource: dict[str, Any] = {
        "resourceType": "Binary",
        "id": meta.id,
        "meta": {"versionId": str(meta.version), "lastUpdated": instant(meta.last_updated)},
        "contentType": meta.content_type,
    }
    keep_context = elements is None or "securityContext" in elements
    if meta.security_context is not None and keep_context:
        resource["securityContext"] = {"reference": meta.security_context}
    if elements is not None and subsetted(meta, elements):
        resource["meta"]["tag"] = [dict(SUBSETTED_TAG)]
    return resource


def subsetted(meta: BinaryMeta, elements: frozenset[str]) -> bool:
    """Whether ``_elements`` leaves out something this Binary has (then it is tagged
    SUBSETTED, R4 search.html#elements)."""
    present = set(_ALWAYS)
    if meta.security_context is not None:
        present.add("securityContext")
    if meta.size:
        present.add("data")
    return not present <= (elements | _ALWAYS)


def _dumps(value: Any, pretty: bool) -> str:
    if pretty:
        return json.dumps(value, indent=2)
    return json.dumps(value, separators=(",", ":"))


def binary_json_parts(
    meta: BinaryMeta, pretty: bool = False, elements: frozenset[str] | None = None
) -> tuple[bytes, bytes]:
    """``(head, tail)`` such that ``head + base64(content) + tail`` is the FHIR JSON Binary.

    ``elements`` (``_elements``) must include ``data`` here: a subset without data has no
    content to stream and is rendered whole by :func:`binary_subset_json`.

    An empty Binary (docs/decisions.md#empty-binary,
    ``meta.size == 0``) has no ``data`` element at all, because FHIR JSON
    forbids empty strings (R4 json.html#primitive): its head is the whole resource and its
    tail is empty. The output is byte for byte what ``json.dumps`` gives for the same dict.
    """
    text = _dumps(_resource(meta, elements), pretty)
    if meta.size == 0:
        return text.encode(), b""
    if pretty:  # json.dumps(indent=2) ends an object with "\n}"
        return (text[:-2] + ',\n  "data": "').encode(), b'"\n}'
    return (text[:-1] + ',"data":"').encode(), b'"}'


def binary_json_head(meta: BinaryMeta, pretty: bool = False) -> bytes:
    return binary_json_parts(meta, pretty)[0]


def binary_json_tail(pretty: bool = False, *, meta: BinaryMeta | None = None) -> bytes:
    """The tail closing ``data`` and the resource; empty when ``meta.size == 0`` (pass
    ``meta`` or use :func:`binary_json_parts`, which cannot get this wrong)."""
    if meta is not None and meta.size == 0:
        return b""
    return b'"\n}' if pretty else b'"}'


def base64_length(size: int) -> int:
    """Length of the padded base64 of ``size`` bytes (RFC 4648 §4)."""
    return (size + 2) // 3 * 4


def binary_json_length(
    meta: BinaryMeta, pretty: bool = False, elements: frozenset[str] | None = None
) -> int:
    """The exact byte length of the FHIR JSON Binary, for ``Content-Length``."""
    head, tail = binary_json_parts(meta, pretty, elements)
    return len(head) + base64_length(meta.size) + len(tail)


async def base64_chunks(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Base64-encode a byte stream chunk by chunk; the output joined equals
    ``base64.b64encode`` of the input joined.

    Each chunk is encoded up to its last whole 3-byte group and the 0-2 bytes left over are
    carried into the next one, so no more than one chunk (plus 2 bytes) is ever held.
    """
    carry = b""
    async for chunk in chunks:
        view = memoryview(chunk)
        out = b""
        if carry:
            need = 3 - len(carry)
            if len(view) < need:
                carry += bytes(view)
                continue
            out = binascii.b2a_base64(carry + bytes(view[:need]), newline=False)
            view = view[need:]
        cut = len(view) - len(view) % 3
        if cut:
            encoded = binascii.b2a_base64(view[:cut], newline=False)
            out = out + encoded if out else encoded
        carry = bytes(view[cut:])
        if out:
            yield out
    if carry:
        yield binascii.b2a_base64(carry, newline=False)


async def exactly(content: AsyncIterable[bytes], meta: BinaryMeta) -> AsyncIterator[bytes]:
    """Pass ``content`` on, raising ContentSizeMismatchError unless it is ``meta.size`` bytes
    (the FHIR forms promised that length in Content-Length)."""
    seen = 0
    async for chunk in content:
        seen += len(chunk)
        if seen > meta.size:
            break
        yield chunk
    if seen != meta.size:
        raise ContentSizeMismatchError(
            f"Binary/{meta.id} version {meta.version}: content has "
            f"{'more than ' if seen > meta.size else ''}{seen} bytes, metadata says {meta.size}"
        )


async def binary_json_stream(
    meta: BinaryMeta,
    content: AsyncIterable[bytes],
    pretty: bool = False,
    elements: frozenset[str] | None = None,
) -> AsyncIterator[bytes]:
    """The FHIR JSON Binary of ``meta`` and its ``content``, streamed: exactly
    :func:`binary_json_length` bytes, or ContentSizeMismatchError if the content is not
    ``meta.size`` bytes long."""
    head, tail = binary_json_parts(meta, pretty, elements)
    pieces = aiter(base64_chunks(exactly(content, meta)))
    # The content's first piece before the head: a store that cannot be read fails the
    # response before its status is sent, so the client gets an error status, not a cut body.
    first = await anext(pieces, b"")
    yield head
    if first:
        yield first
    async for piece in pieces:
        yield piece
    if tail:
        yield tail


def binary_summary_json(meta: BinaryMeta) -> dict[str, Any]:
    """The ``_summary=true`` form: no ``data`` (not a summary element, R4
    binary.html#resource), tagged SUBSETTED (R4 http.html#read, search.html#summary)."""
    resource = _resource(meta)
    resource["meta"]["tag"] = [dict(SUBSETTED_TAG)]
    return resource


def binary_subset_json(meta: BinaryMeta, elements: frozenset[str]) -> dict[str, Any]:
    """An ``_elements`` subset without ``data`` (R4 search.html#elements)."""
    return _resource(meta, elements)
