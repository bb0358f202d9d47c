"""FHIR representations as responses: a Binary, a Bundle, any small resource, in JSON or XML.

The format comes from negotiation (``_format`` / ``Accept``, R4 http.html#mime-type) and
``_pretty`` (R4 http.html#parameters). Binaries and Bundles stream; small resources
(OperationOutcome, CapabilityStatement) are rendered whole.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import AsyncIterable, AsyncIterator, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from fhirbin.api.responses import StreamedResponse, validator_headers
from fhirbin.errors import BadRequest
from fhirbin.fhir.binary import (
    binary_json_length,
    binary_json_parts,
    binary_json_stream,
    binary_subset_json,
    binary_summary_json,
)
from fhirbin.fhir.bundle import JsonEntry, bundle_stream
from fhirbin.fhir.negotiate import Representation
from fhirbin.fhir.xml_bundle import XmlEntry, bundle_xml_stream
from fhirbin.fhir.xml_write import (
    binary_xml_length,
    binary_xml_parts,
    binary_xml_stream,
    resource_to_xml,
)
from fhirbin.metadata.base import BinaryVersion
from fhirbin.service import BinaryService

T = TypeVar("T")

V = TypeVar("V")

#: A Bundle of at most this many entries, each in memory, is sent whole (api/responses.py).
_GATHER_ENTRIES = 100

FHIR_JSON = "application/fhir+json; charset=utf-8"
FHIR_XML = "application/fhir+xml; charset=utf-8"


def media_type(fmt: Representation) -> str:
    return FHIR_XML if fmt is Representation.FHIR_XML else FHIR_JSON


def pretty(request: Request) -> bool:
    """``_pretty=true|false`` (R4 http.html#parameters); anything else is a 400."""
    return pretty_value(request.query_params.get("_pretty"))


def pretty_value(value: str | None) -> bool:
    """The ``_pretty`` parameter's value (None: absent) as a flag; anything but true or
    false is a 400."""
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise BadRequest("_pretty must be true or false.", expression="http._pretty")


@dataclass(frozen=True)
class Subset:
    """``_summary=true`` (no data) or ``_elements`` (R4 search.html#summary, #elements)."""

    summary: bool = False
    elements: frozenset[str] | None = None

    @property
    def has_data(self) -> bool:
        return not self.summary and (self.elements is None or "data" in self.elements)


FULL = Subset()


def resource_bytes(resource: Mapping[str, Any], fmt: Representation, pretty: bool) -> bytes:
    if fmt is Representation.FHIR_XML:
        return resource_to_xml(resource, pretty=pretty)
    if pretty:
        return json.dumps(resource, indent=2).encode()
    return json.dumps(resource, separators=(",", ":")).encode()


def resource_response(
    resource: Mapping[str, Any],
    fmt: Representation,
    *,
    pretty: bool = False,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        resource_bytes(resource, fmt, pretty),
        status_code=status_code,
        media_type=media_type(fmt),
        headers=dict(headers or {}),
    )


class Remembered(Generic[V]):
    """Values per immutable key, bounded in items and bytes: cleared whole when full.

    Keys start with a version's (id, version): that pair names the same bytes and metadata
    forever (docs/decisions.md#expunge), so nothing remembered can go stale."""

    def __init__(self, max_items: int = 20_000, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.items: dict[Hashable, V] = {}
        self.size = 0

    def get(self, key: Hashable) -> V | None:
        return self.items.get(key)

    def put(self, key: Hashable, value: V, weight: int) -> V:
        if len(self.items) >= self.max_items or self.size + weight > self.max_bytes:
            self.items.clear()
            self.size = 0
        self.items[key] = value
        self.size += weight
        return value


_bodies: Remembered[bytes] = Remembered()


def binary_body(
    service: BinaryService,
    version: BinaryVersion,
    fmt: Representation,
    pretty: bool,
    subset: Subset = FULL,
    *,
    nested: bool = False,
) -> bytes | None:
    """The whole FHIR form of a version whose content is small enough to be in memory (or is
    not needed), remembered: exactly the bytes the stream gives. None otherwise."""
    key = (version.id, version.version, fmt, pretty, subset, nested)
    body = _bodies.get(key)
    if body is not None:
        return body
    body = without_data(version, fmt, pretty, subset, nested)
    if body is None:
        content = service.small_content(version) if version.size else b""
        if content is None:
            return None
        data = binascii.b2a_base64(content, newline=False)
        if fmt is Representation.FHIR_XML:
            head, tail = binary_xml_parts(version, pretty, declaration=not nested)
        else:
            head, tail = binary_json_parts(version, pretty, subset.elements)
        body = head + data + tail
    return _bodies.put(key, body, len(body) + 200)


def binary_stream(
    service: BinaryService,
    version: BinaryVersion,
    fmt: Representation,
    *,
    pretty: bool,
    subset: Subset = FULL,
    nested: bool = False,
) -> AsyncIterator[bytes]:
    """The FHIR form of one Binary version: whole from memory when small, else streamed
    (base64 encoded chunk by chunk)."""
    whole = binary_body(service, version, fmt, pretty, subset, nested=nested)
    if whole is not None:
        return _once(whole)
    content = service.content(version)
    if fmt is Representation.FHIR_XML:
        return binary_xml_stream(version, content, pretty=pretty, declaration=not nested)
    return binary_json_stream(version, content, pretty=pretty, elements=subset.elements)


def without_data(
    version: BinaryVersion, fmt: Representation, pretty: bool, subset: Subset, nested: bool
) -> bytes | None:
    """The whole FHIR form when ``subset`` leaves ``data`` out (nothing to stream), else None.
    (A FHIR XML subset that keeps ``data`` is the whole Binary: xml_write streams no subsets.)"""
    if subset.has_data and not (version.size == 0 and subset.elements is not None):
        return None
    small = (
        binary_summary_json(version)
        if subset.summary
        else binary_subset_json(version, subset.elements or frozenset())
    )
    if fmt is Representation.FHIR_XML:
        return resource_to_xml(small, pretty=pretty, declaration=not nested)
    return resource_bytes(small, fmt, pretty)


def binary_length(
    version: BinaryVersion, fmt: Representation, pretty: bool, subset: Subset = FULL
) -> int:
    small = without_data(version, fmt, pretty, subset, nested=False)
    if small is not None:
        return len(small)
    if fmt is Representation.FHIR_XML:
        return binary_xml_length(version, pretty=pretty)
    return binary_json_length(version, pretty=pretty, elements=subset.elements)


def binary_response(
    service: BinaryService,
    version: BinaryVersion,
    fmt: Representation,
    *,
    pretty: bool,
    status_code: int = 200,
    extra_headers: Mapping[str, str] | None = None,
    subset: Subset = FULL,
) -> StreamedResponse:
    """The FHIR Binary (or the ``subset`` of it a read asked for, R4 http.html#read) with
    validators and an exact Content-Length."""
    headers = validator_headers(version)
    headers["Content-Type"] = media_type(fmt)
    headers["Content-Length"] = str(binary_length(version, fmt, pretty, subset))
    headers.update(extra_headers or {})
    whole = binary_body(service, version, fmt, pretty, subset)
    if whole is not None:
        return StreamedResponse(status_code=status_code, headers=headers, content=whole)
    body = binary_stream(service, version, fmt, pretty=pretty, subset=subset)
    return StreamedResponse(status_code=status_code, headers=headers, body=body)


@dataclass(frozen=True)
class Entry:
    """One Bundle entry, format-neutral: a Binary ``version`` (streamed), or a ``resource``
    already built (an AuditEvent), or neither (a deleted version in a history)."""

    full_url: str | None
    version: BinaryVersion | None
    search_mode: str | None = None
    request: tuple[str, str] | None = None
    response: Mapping[str, str] | None = None
    resource: Mapping[str, Any] | None = None


def bundle_response(
    service: BinaryService,
    *,
    bundle_type: str,
    total: int | None,
    links: Sequence[tuple[str, str]],
    entries: Sequence[Entry],
    fmt: Representation,
    pretty: bool,
    subset: Subset = FULL,
    cache_control: str = "private",
) -> StreamedResponse:
    """A searchset or history Bundle, streamed; Binaries inside are always FHIR (R4
    binary.html#rest)."""
    if fmt is Representation.FHIR_XML:
        xml_entries = [
            XmlEntry(
                full_url=e.full_url,
                resource=_resource(service, e, fmt, pretty, subset),
                search_mode=e.search_mode,
                request=e.request,
                response=e.response,
            )
            for e in entries
        ]
        body = bundle_xml_stream(
            bundle_type=bundle_type,
            total=total,
            links=links,
            entries=_aiter(xml_entries),
            pretty=pretty,
        )
    else:
        json_entries = [
            JsonEntry(
                full_url=e.full_url,
                resource=_resource(service, e, fmt, pretty, subset),
                search_mode=e.search_mode,
                request=e.request,
                response=e.response,
            )
            for e in entries
        ]
        body = bundle_stream(
            bundle_type=bundle_type,
            total=total,
            links=links,
            entries=_aiter(json_entries),
            pretty=pretty,
        )
    headers = {
        "Content-Type": media_type(fmt),
        "Cache-Control": cache_control,
        "Vary": "Accept",
        "X-Content-Type-Options": "nosniff",
    }
    # A Bundle of small Binaries (all in memory) is sent whole, with its Content-Length.
    small = all(
        e.version is None or binary_body(service, e.version, fmt, pretty, subset, nested=True)
        for e in entries
    )
    gather = small and len(entries) <= _GATHER_ENTRIES
    return StreamedResponse(status_code=200, headers=headers, body=body, gather=gather)


def _resource(
    service: BinaryService, entry: Entry, fmt: Representation, pretty: bool, subset: Subset
) -> AsyncIterable[bytes] | None:
    if entry.resource is not None:
        if fmt is Representation.FHIR_XML:
            return _once(resource_to_xml(entry.resource, pretty, declaration=False))
        return _once(resource_bytes(entry.resource, fmt, pretty))
    if entry.version is None:
        return None
    return binary_stream(service, entry.version, fmt, pretty=pretty, subset=subset, nested=True)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _aiter(items: Sequence[T]) -> AsyncIterator[T]:
    for item in items:
        yield item
