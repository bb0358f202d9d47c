"""Bundles in FHIR XML, streamed: search results, history, batch/transaction responses.

Owns the XML shape of an R4 Bundle whose entries arrive one by one (bundle.html#resource,
xml.html): ``id``, ``meta``, ``type``, ``timestamp``, ``total`` and the links, then one
``entry`` per item with its ``fullUrl``, the resource, and ``search``, ``request`` and
``response`` in the order of the Bundle definition. A Binary inside a Bundle is always in FHIR
format (R4 binary.html#rest), so each entry's resource arrives as already-serialised FHIR XML
bytes (from :func:`fhirbin.fhir.xml_write.binary_xml_stream` with ``declaration=False``) and
is passed through without being held in memory. The bytes written are exactly what
:func:`fhirbin.fhir.xml_write.resource_to_xml` gives for the whole Bundle.

The Bundle invariants that depend only on what is streamed are checked (bdl-1 to bdl-5,
bdl-8); breaking one is a programming error, a ValueError. The document and message rules
(bdl-9 to bdl-12) are not: fhirbin writes neither kind.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from fhirbin.fhir.binary import instant
from fhirbin.fhir.xml_write import (
    INDENT,
    PRIMITIVE,
    XML_DECLARATION,
    Token,
    element_tokens,
    render,
    resource_tokens,
)

__all__ = ["BUNDLE_TYPES", "XmlEntry", "bundle_xml_stream", "searchset_xml_stream"]

# R4 valueset-bundle-type.
BUNDLE_TYPES: Final = frozenset(
    {
        "document",
        "message",
        "transaction",
        "transaction-response",
        "batch",
        "batch-response",
        "history",
        "searchset",
        "collection",
    }
)
# R4 valueset-search-entry-mode and valueset-http-verb.
SEARCH_MODES: Final = frozenset({"match", "include", "outcome"})
HTTP_VERBS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"})
# Bundle.entry.response elements this stream writes, in definition order (outcome, a
# resource, is left out: fhirbin reports per-entry outcomes nowhere yet).
RESPONSE_ELEMENTS: Final = ("status", "location", "etag", "lastModified")

_WITH_REQUEST = frozenset({"batch", "transaction", "history"})  # bdl-3
_WITH_RESPONSE = frozenset({"batch-response", "transaction-response", "history"})  # bdl-4
_WITH_TOTAL = frozenset({"searchset", "history"})  # bdl-1

# Depths in the document: Bundle 0, entry 1, its children 2, the resource element inside
# <resource> 3.
_ENTRY_DEPTH = 1
_RESOURCE_CONTENT_INDENT = (INDENT * 3).encode()


@dataclass(frozen=True, slots=True)
class XmlEntry:
    """One ``Bundle.entry``.

    ``resource`` is the FHIR XML of the entry's resource, streamed, WITHOUT an XML
    declaration and written with the same ``pretty`` as the Bundle (its line breaks are
    re-indented, so it must contain no literal newline other than layout, which holds for
    everything :mod:`fhirbin.fhir.xml_write` writes). ``request`` is ``(method, url)``;
    ``response`` maps ``status`` (required), ``location``, ``etag`` and ``lastModified`` to
    their values.
    """

    full_url: str | None = None
    resource: AsyncIterable[bytes] | None = None
    search_mode: str | None = None
    request: tuple[str, str] | None = None
    response: Mapping[str, str] | None = None


async def bundle_xml_stream(
    *,
    bundle_type: str,
    entries: AsyncIterable[XmlEntry],
    total: int | None = None,
    links: Sequence[tuple[str, str]] = (),
    pretty: bool = False,
    id: str | None = None,
    last_updated: datetime | None = None,
    timestamp: datetime | None = None,
    declaration: bool = True,
) -> AsyncIterator[bytes]:
    """Stream a Bundle in FHIR XML.

    ``links`` are ``(relation, url)`` pairs. ``last_updated`` becomes ``meta.lastUpdated``
    (for a searchset: when the search ran, search.html#currency), ``timestamp`` the
    ``Bundle.timestamp`` (when the Bundle was assembled). ``total`` is allowed for searchset
    and history Bundles only (bdl-1). No ``entry`` element at all when there are no entries.
    Raises ValueError for a value outside the R4 value sets or a broken Bundle invariant;
    entries are checked as they arrive, before any of their bytes are written.
    """
    if bundle_type not in BUNDLE_TYPES:
        raise ValueError(f"{bundle_type!r} is not an R4 bundle-type code")
    if total is not None and bundle_type not in _WITH_TOTAL:
        raise ValueError("bdl-1: total only when a search or history")
    if total is not None and total < 0:
        raise ValueError("Bundle.total is an unsignedInt")
    head: dict[str, Any] = {"resourceType": "Bundle"}
    if id is not None:
        head["id"] = id
    if last_updated is not None:
        head["meta"] = {"lastUpdated": instant(last_updated)}
    head["type"] = bundle_type
    if timestamp is not None:
        head["timestamp"] = instant(timestamp)
    if total is not None:
        head["total"] = total
    if links:
        head["link"] = [{"relation": relation, "url": url} for relation, url in links]
    tokens: list[Token] = [(0, XML_DECLARATION)] if declaration else []
    resource_tokens(head, 0, tokens)
    closing = tokens.pop()  # </Bundle>: entries (if any) go in before it
    yield render(tokens, pretty).encode()
    async for entry in entries:
        _check_entry(entry, bundle_type)
        async for piece in _entry(entry, pretty):
            yield piece
    yield render([closing], pretty, continued=True).encode()


async def searchset_xml_stream(
    *,
    total: int,
    self_url: str,
    entries: AsyncIterable[tuple[str, AsyncIterable[bytes]]],
    pretty: bool = False,
    now: datetime | None = None,
    id: str | None = None,
) -> AsyncIterator[bytes]:
    """The XML twin of :func:`fhirbin.fhir.bundle.searchset_stream`: a searchset with its
    ``self`` link and one ``search.mode = match`` entry per ``(fullUrl, resource XML)``."""

    async def matches() -> AsyncIterator[XmlEntry]:
        async for full_url, resource in entries:
            yield XmlEntry(full_url=full_url, resource=resource, search_mode="match")

    async for piece in bundle_xml_stream(
        bundle_type="searchset",
        entries=matches(),
        total=total,
        links=[("self", self_url)],
        pretty=pretty,
        id=id,
        last_updated=now,
    ):
        yield piece


def _check_entry(entry: XmlEntry, bundle_type: str) -> None:
    if entry.resource is None and entry.request is None and entry.response is None:
        raise ValueError("bdl-5: an entry has a resource unless there is a request or response")
    if entry.search_mode is not None:
        if bundle_type != "searchset":
            raise ValueError("bdl-2: entry.search only when a search")
        if entry.search_mode not in SEARCH_MODES:
            raise ValueError(f"{entry.search_mode!r} is not an R4 search-entry-mode code")
    if (entry.request is not None) != (bundle_type in _WITH_REQUEST):
        raise ValueError("bdl-3: entry.request mandatory for batch/transaction/history only")
    if (entry.response is not None) != (bundle_type in _WITH_RESPONSE):
        raise ValueError(
            "bdl-4: entry.response mandatory for batch-response/transaction-response/history only"
        )
    if entry.request is not None and entry.request[0] not in HTTP_VERBS:
        raise ValueError(f"{entry.request[0]!r} is not an R4 http-verb code")
    if entry.response is not None:
        if "status" not in entry.response:
            raise ValueError("Bundle.entry.response.status is required (1..1)")
        for key in entry.response:
            if key not in RESPONSE_ELEMENTS:
                raise ValueError(f"Bundle.entry.response.{key} is not written by this stream")
    if entry.full_url is not None and "/_history/" in entry.full_url:
        raise ValueError("bdl-8: fullUrl cannot be a version specific reference")


async def _entry(entry: XmlEntry, pretty: bool) -> AsyncIterator[bytes]:
    depth = _ENTRY_DEPTH + 1
    before: list[Token] = [(_ENTRY_DEPTH, "<entry>")]
    if entry.full_url is not None:
        element_tokens("fullUrl", entry.full_url, PRIMITIVE, "Bundle.entry.fullUrl", depth, before)
    after: list[Token] = []
    if entry.search_mode is not None:
        element_tokens(
            "search",
            {"mode": entry.search_mode},
            "Bundle.entry.search",
            "Bundle.entry.search",
            depth,
            after,
        )
    if entry.request is not None:
        method, url = entry.request
        element_tokens(
            "request",
            {"method": method, "url": url},
            "Bundle.entry.request",
            "Bundle.entry.request",
            depth,
            after,
        )
    if entry.response is not None:
        element_tokens(
            "response",
            dict(entry.response),
            "Bundle.entry.response",
            "Bundle.entry.response",
            depth,
            after,
        )
    after.append((_ENTRY_DEPTH, "</entry>"))
    if entry.resource is None:
        yield render(before + after, pretty, continued=True).encode()
        return
    # R4 xml.html: a resource inside another is wrapped in the element that holds it.
    before.append((depth, "<resource>"))
    yield render(before, pretty, continued=True).encode()
    first = True
    async for chunk in _fragment(entry.resource):
        if pretty:
            # Re-indent the fragment's own lines so the document reads as one. The writer
            # escapes newlines in attribute values (&#10;), so every b"\n" is layout.
            chunk = chunk.replace(b"\n", b"\n" + _RESOURCE_CONTENT_INDENT)
            if first:
                chunk = b"\n" + _RESOURCE_CONTENT_INDENT + chunk
        first = False
        yield chunk
    yield render([(depth, "</resource>"), *after], pretty, continued=True).encode()


async def _fragment(resource: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The resource's chunks, refusing an XML declaration (only allowed at the start of a
    document, XML 1.0 §2.8) and an empty resource."""
    start = b""
    checked = False
    async for chunk in resource:
        if checked:
            if chunk:
                yield chunk
            continue
        start += chunk
        if len(start) < 2:
            continue
        if start.startswith(b"<?"):
            raise ValueError(
                "a resource nested in a Bundle must have no XML declaration "
                "(serialise it with declaration=False)"
            )
        checked = True
        yield start
    if not checked:
        raise ValueError("an entry's resource stream is empty or not a resource element")
