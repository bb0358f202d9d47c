"""The one read path: what a read asks, and the plan that answers it (issue 11).

Every read form — ``read`` and ``vread`` in the native, FHIR JSON and FHIR XML forms, GET and
HEAD, conditional and ranged, and the ``search-type`` Bundles — is decided here, once, for both
ways a request can arrive: through Starlette's router (api/reads.py, api/searches.py) or
through the fast lane (api/fastlane.py), which skips the framework for requests carrying a
token it already verified. Neither decides anything itself; both call these functions:

* :func:`ask_of` reads what the request asks from the ASGI scope alone (query parameters,
  Accept, the conditional and Range headers, Prefer), the same way for both lanes;
* :func:`read_binary` / :func:`vread_binary` check the id, negotiate the form, ask the service
  (which applies the caller's access, security/access.py) and return the plan;
* :func:`plan_version` is the planner: from a version, the form and the ask it decides the
  status, the headers and the body's source (memory, a local file, a stream from the store,
  or — with ``FHIRBIN_ACCEL_REDIRECT``, behind nginx — an X-Accel-Redirect naming the local
  file, which nginx sends), with no I/O. Its result is a :class:`StreamedResponse`, which
  carries exactly those three things and sends them.

The order of decisions follows RFC 9110 §13.2.2: preconditions (If-None-Match, then
If-Modified-Since) → 304; then Range (with If-Range) on the native form → 206/416; else 200.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.types import Scope

from fhirbin.api.context import RequestContext
from fhirbin.api.render import Remembered, Subset, binary_body, binary_response, pretty_value
from fhirbin.api.responses import StreamedResponse, encode_headers, validator_headers
from fhirbin.errors import NotFound
from fhirbin.fhir.conditional import not_modified
from fhirbin.fhir.ids import check_id, version_number
from fhirbin.fhir.negotiate import Representation, read_representation
from fhirbin.fhir.ranges import (
    content_range,
    if_range_ok,
    multipart_byteranges,
    multipart_content_type,
    new_boundary,
    parse_range,
)
from fhirbin.fhir.search import read_subset
from fhirbin.metadata.base import BinaryVersion
from fhirbin.security.access import Access
from fhirbin.security.serving import native_headers
from fhirbin.service import BinaryService

if TYPE_CHECKING:
    from fhirbin.runtime import Runtime

__all__ = [
    "ReadAsk",
    "ask_of",
    "native_headers_of",
    "negotiate",
    "plan_version",
    "read_binary",
    "vread_binary",
    "whole_content_headers",
]

_HEADERS = {
    b"accept": "accept",
    b"if-none-match": "if_none_match",
    b"if-modified-since": "if_modified_since",
    b"if-range": "if_range",
    b"range": "range",
    b"prefer": "prefer",
    b"content-type": "content_type",
    b"if-match": "if_match",
    b"if-unmodified-since": "if_unmodified_since",
}


@dataclass(frozen=True, slots=True)
class ReadAsk:
    """What a read request asks, from its scope alone. Headers are their first value and a
    query parameter read by name its last, as Starlette's ``Headers``/``QueryParams`` do."""

    method: str
    params: tuple[tuple[str, str], ...] = ()
    accept: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    if_range: str | None = None
    range: str | None = None
    prefer: str | None = None
    content_type: str | None = None
    #: not preconditions of a read here; seen only so that a redirect never carries them to
    #: nginx, which would answer them itself from the file (docs/deployment.md)
    if_match: str | None = None
    if_unmodified_since: str | None = None

    def param(self, name: str) -> str | None:
        found = None
        for key, value in self.params:
            if key == name:
                found = value
        return found

    @property
    def pretty(self) -> bool:
        """``_pretty`` (R4 http.html#parameters); anything but true/false is a 400."""
        return pretty_value(self.param("_pretty"))


def ask_of(scope: Scope) -> ReadAsk:
    query: bytes = scope.get("query_string", b"")
    params = tuple(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else ()
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        field = _HEADERS.get(name)
        if field is not None and field not in found:
            found[field] = value.decode("latin-1")
    return ReadAsk(method=scope["method"], params=params, **found)


def negotiate(ask: ReadAsk) -> Representation:
    """The form of a read (docs/decisions.md#read-representation); ``_summary`` and
    ``_elements`` are checked on every read, and applied to the FHIR form only."""
    read_subset(ask.params)
    return read_representation(ask.param("_format"), ask.accept)


async def read_binary(
    rt: Runtime, access: Access, ask: ReadAsk, raw_id: str, context: RequestContext
) -> StreamedResponse:
    """GET/HEAD [base]/Binary/[id] — R4 binary.html#rest, http.html#read."""
    binary_id = check_id(raw_id)
    fmt = negotiate(ask)
    version = await rt.service.read(binary_id, access)
    return plan_version(rt.service, ask, version, fmt, context)


async def vread_binary(
    rt: Runtime, access: Access, ask: ReadAsk, raw_id: str, raw_vid: str, context: RequestContext
) -> StreamedResponse:
    """GET/HEAD [base]/Binary/[id]/_history/[vid] — R4 http.html#vread."""
    binary_id = check_id(raw_id)
    vid = version_number(raw_vid)
    if vid is None:
        # fhirbin's version ids are 1, 2, …: anything else names no version
        # (docs/decisions.md#version-ids).
        check_id(raw_vid, expression="vid")
        raise NotFound(f"Binary/{binary_id} has no version {raw_vid!r}.")
    fmt = negotiate(ask)
    version = await rt.service.vread(binary_id, vid, access)
    return plan_version(rt.service, ask, version, fmt, context)


def plan_version(
    service: BinaryService,
    ask: ReadAsk,
    version: BinaryVersion,
    fmt: Representation,
    context: RequestContext,
) -> StreamedResponse:
    """The planner: the answer to ``ask`` for ``version`` in ``fmt``; no I/O."""
    context.version = version.version  # the audit record's entity version
    if not_modified(
        ask.if_none_match, ask.if_modified_since, version.version, version.last_updated
    ):
        # RFC 9110 §15.4.5: a 304 carries the validators and Vary a 200 would have.
        return StreamedResponse(status_code=304, headers=validator_headers(version))
    if fmt is not Representation.NATIVE:
        summary, elements = read_subset(ask.params)
        subset = Subset(summary=summary, elements=None if summary else elements)
        return _fhir_form(service, version, fmt, ask.pretty, subset)
    return _native(service, ask, version)


def native_headers_of(version: BinaryVersion) -> dict[str, str]:
    """What every native answer for ``version`` carries (security/serving.py,
    docs/decisions.md#read-representation)."""
    headers = validator_headers(version)
    headers.update(native_headers(version.id, version.content_type))
    headers["Accept-Ranges"] = "bytes"
    return headers


def whole_content_headers(version: BinaryVersion) -> dict[str, str]:
    """The headers of a 200 with the whole content."""
    headers = native_headers_of(version)
    headers["Content-Type"] = version.content_type  # verbatim, parameters and case kept
    headers["Content-Length"] = str(version.size)
    return headers


_headers: Remembered[list[tuple[bytes, bytes]]] = Remembered()


def _native(service: BinaryService, ask: ReadAsk, version: BinaryVersion) -> StreamedResponse:
    ranges = None
    if ask.method == "GET" and if_range_ok(ask.if_range, version.version, version.last_updated):
        ranges = parse_range(ask.range, version.size)
    if ranges is None:
        key = (version.id, version.version)
        encoded = _headers.get(key)
        if encoded is None:
            encoded = _headers.put(key, encode_headers(whole_content_headers(version)), 512)
        if ask.method == "GET":
            # Small contents come from memory (immutable, keyed by hash: never stale); larger
            # ones go out through pathsend when the store has a local file.
            small = service.small_content(version)
            if small is not None:
                return StreamedResponse(status_code=200, raw_headers=encoded, content=small)
            # Behind nginx (docs/decisions.md#nginx-sends-large-files): the validators and
            # the safe-serving headers are fhirbin's, the bytes nginx's (sendfile).
            redirect = None
            if ask.if_match is None and ask.if_unmodified_since is None:
                redirect = service.content_redirect(version)
            if redirect is not None:
                return StreamedResponse(status_code=200, raw_headers=encoded, redirect=redirect)
        return StreamedResponse(
            status_code=200,
            raw_headers=encoded,
            body=service.content(version),
            path=service.content_path(version),
        )
    headers = native_headers_of(version)
    if len(ranges) == 1:
        start, end = ranges[0]
        headers["Content-Type"] = version.content_type
        headers["Content-Range"] = content_range(start, end, version.size)
        headers["Content-Length"] = str(end - start)
        # An offset read: the bytes before ``start`` are never read.
        return StreamedResponse(
            status_code=206, headers=headers, body=service.content(version, start, end)
        )
    boundary = new_boundary()
    parts, closing, length = multipart_byteranges(
        ranges, version.size, version.content_type, boundary
    )
    headers["Content-Type"] = multipart_content_type(boundary)
    headers["Content-Length"] = str(length)
    body = _multipart(service, version, ranges, parts, closing)
    return StreamedResponse(status_code=206, headers=headers, body=body)


async def _multipart(
    service: BinaryService,
    version: BinaryVersion,
    ranges: list[tuple[int, int]],
    parts: list[bytes],
    closing: bytes,
) -> AsyncIterator[bytes]:
    for (start, end), head in zip(ranges, parts, strict=True):
        yield head
        async for chunk in service.content(version, start, end):
            yield chunk
    yield closing


def _fhir_form(
    service: BinaryService,
    version: BinaryVersion,
    fmt: Representation,
    pretty: bool,
    subset: Subset,
) -> StreamedResponse:
    """The FHIR Binary (api/render.py): a small one whole from memory, with its encoded
    headers remembered; a larger one streamed."""
    key = (version.id, version.version, fmt, pretty, subset)
    body = binary_body(service, version, fmt, pretty, subset)
    known = _headers.get(key) if body is not None else None
    if known is not None:
        return StreamedResponse(status_code=200, raw_headers=known, content=body)
    planned = binary_response(service, version, fmt, pretty=pretty, subset=subset)
    if planned.content is not None:
        _headers.put(key, planned.raw_headers, 512)
    return planned
