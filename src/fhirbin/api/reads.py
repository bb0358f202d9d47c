"""read and vread: negotiation, conditional reads, byte ranges, HEAD.

The order of decisions follows RFC 9110 §13.2.2: preconditions (If-None-Match, then
If-Modified-Since) → 304; then Range (with If-Range) on the native form → 206/416; else 200.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from fhirbin.api.access import authorize
from fhirbin.api.render import Subset, binary_response, pretty
from fhirbin.api.requests import runtime
from fhirbin.api.responses import StreamedResponse, validator_headers
from fhirbin.errors import BadRequest, NotFound
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
from fhirbin.security.serving import native_headers
from fhirbin.service import BinaryService


async def read(request: Request) -> Response:
    """GET/HEAD [base]/Binary/[id] — R4 binary.html#rest, http.html#read,
    docs/decisions.md#read-representation, #other-accept-types-get-the-content."""
    access = authorize(request, "r")
    binary_id = check_id(request.path_params["id"])
    fmt = _negotiate(request)
    version = await runtime(request).service.read(binary_id, access.hide)
    return serve(request, version, fmt)


async def vread(request: Request) -> Response:
    """GET/HEAD [base]/Binary/[id]/_history/[vid] — R4 http.html#vread."""
    access = authorize(request, "r")
    binary_id = check_id(request.path_params["id"])
    raw_vid = request.path_params["vid"]
    vid = version_number(raw_vid)
    if vid is None:
        # fhirbin's version ids are 1, 2, …: anything else names no version
        # (docs/decisions.md#version-ids).
        check_id(raw_vid, expression="vid")
        raise NotFound(f"Binary/{binary_id} has no version {raw_vid!r}.")
    fmt = _negotiate(request)
    version = await runtime(request).service.vread(binary_id, vid, access.hide)
    return serve(request, version, fmt)


def _negotiate(request: Request) -> Representation:
    # _summary and _elements are checked on every read, and applied to the FHIR form only.
    read_subset(request.query_params.multi_items())
    return read_representation(request.query_params.get("_format"), request.headers.get("accept"))


def _subset(request: Request) -> Subset:
    """``_summary`` / ``_elements`` of a read (R4 http.html#read; search's Subset)."""
    summary, elements = read_subset(request.query_params.multi_items())
    return Subset(summary=summary, elements=None if summary else elements)


def serve(request: Request, version: BinaryVersion, fmt: Representation) -> Response:
    request.scope["fhirbin.audit"] = {"version": version.version}  # api/audit.py
    headers = request.headers
    if not_modified(
        headers.get("if-none-match"),
        headers.get("if-modified-since"),
        version.version,
        version.last_updated,
    ):
        # RFC 9110 §15.4.5: a 304 carries the validators and Vary a 200 would have.
        return Response(status_code=304, headers=validator_headers(version))
    service = runtime(request).service
    if fmt is not Representation.NATIVE:
        subset = _subset(request)
        return binary_response(service, version, fmt, pretty=pretty(request), subset=subset)
    return _native(request, service, version)


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


def _native(request: Request, service: BinaryService, version: BinaryVersion) -> Response:
    ranges = None
    if request.method == "GET" and if_range_ok(
        request.headers.get("if-range"), version.version, version.last_updated
    ):
        ranges = parse_range(request.headers.get("range"), version.size)
    if ranges is None:
        headers = whole_content_headers(version)
        path = service.content_path(version)
        if request.method == "GET":
            # Small contents come from memory (immutable, keyed by hash: never stale); larger
            # ones go out through pathsend.
            small = service.small_content(version)
            if small is not None:
                return StreamedResponse(status_code=200, headers=headers, content=small)
        return StreamedResponse(
            status_code=200, headers=headers, body=service.content(version), path=path
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


async def unrouted(request: Request) -> Response:
    """Paths under /Binary/ that are no route; a %2F inside an id is a malformed id
    (docs/decisions.md#malformed-ids)."""
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    tail = raw.split(b"/Binary/", 1)[-1]
    if b"%2f" in tail.lower():
        raise BadRequest("A Binary id may not contain '/' (%2F).", expression="id")
    return not_routed()


def not_routed() -> Response:
    """No route matches (raised, so that api/errors.py renders it)."""
    raise NotFound("No route matches this URL on this FHIR server.")
