"""Searchset and history Bundles, streamed, with every Binary in FHIR JSON.

Owns the JSON shape of an R4 ``searchset`` or ``history`` Bundle (bundle.html#searchset,
bundle.html#history, http.html#search, http.html#history): ``type``, ``total``, the page
links, and one entry per match or version with its ``fullUrl``, the resource,
``search.mode`` (searchset) and ``request``/``response`` (history; a deletion has no
resource). Binaries inside a Bundle are always in FHIR format (R4 binary.html#rest), so each
entry's resource arrives as a stream of JSON bytes (from
:func:`fhirbin.fhir.binary.binary_json_stream`) and is passed through without being held in
memory. The bytes written are exactly what ``json.dumps`` (compact, or ``indent=2`` when
``pretty``) would give for the whole Bundle.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhirbin.fhir.binary import instant
from fhirbin.fhir.ids import new_id

__all__ = ["BUNDLE_TYPES", "JsonEntry", "bundle_id", "bundle_stream", "searchset_stream"]

BUNDLE_TYPES = frozenset({"searchset", "history"})
# R4 bundle.html: Bundle.entry.response's elements, in order (``outcome`` is not written).
_RESPONSE_KEYS = ("status", "location", "etag", "lastModified")
# Depth of Bundle.entry[i]: its members sit 6 spaces in, so each entry line is shifted by 4.
_ENTRY_INDENT = "\n    "
# Depth of Bundle.entry[i].resource: its members sit 8 spaces in, its closing brace 6.
_RESOURCE_INDENT = b" " * 6
# Stands in for the resource while the rest of an entry is serialised, then is cut out.
_PLACEHOLDER = "\x00fhirbin:resource\x00"


@dataclass(frozen=True)
class JsonEntry:
    """One Bundle entry. ``resource`` yields the resource's JSON bytes (compact, or
    ``indent=2`` when the Bundle is pretty); ``search_mode`` is ``match`` | ``include`` |
    ``outcome`` (searchset); ``request`` is ``(method, url)`` and ``response`` maps any of
    ``status``, ``location``, ``etag``, ``lastModified`` to strings (history,
    bundle.html#history). None leaves the element out."""

    full_url: str | None
    resource: AsyncIterable[bytes] | None
    search_mode: str | None = None
    request: tuple[str, str] | None = None
    response: Mapping[str, str] | None = None


def bundle_id() -> str:
    """A new Bundle.id: a lowercase UUID, like every id this server assigns
    (docs/decisions.md#ids)."""
    return new_id()


async def bundle_stream(
    *,
    bundle_type: str,
    total: int | None,
    links: Sequence[tuple[str, str]],
    entries: AsyncIterable[JsonEntry],
    pretty: bool = False,
    now: datetime | None = None,
    id: str | None = None,
) -> AsyncIterator[bytes]:
    """Stream a ``searchset`` or ``history`` Bundle.

    Element order follows R4 bundle.html: ``resourceType``, ``id``, ``meta``, ``type``,
    ``total``, ``link``, ``entry``; in an entry ``fullUrl``, ``resource``, ``search``,
    ``request``, ``response``. ``total`` is left out when None (e.g. ``_total=none``) and
    may exceed the entries given when paging (bdl-1: only searchset and history have it).
    ``links`` are ``(relation, url)`` pairs, written in the order given. With ``now`` the
    Bundle gets ``meta.lastUpdated`` (when the search ran, search.html#currency); with ``id`` a
    ``Bundle.id``. No ``link`` or ``entry`` element when there are none: FHIR JSON has no
    empty arrays (R4 json.html). The head is yielded before the first entry is read.
    """
    if bundle_type not in BUNDLE_TYPES:
        raise ValueError(f"bundle_type must be searchset or history, not {bundle_type!r}")
    head: dict[str, Any] = {"resourceType": "Bundle"}
    if id is not None:
        head["id"] = id
    if now is not None:
        head["meta"] = {"lastUpdated": instant(now)}
    head["type"] = bundle_type
    if total is not None:
        head["total"] = total
    if links:
        head["link"] = [{"relation": relation, "url": url} for relation, url in links]
    text = _dumps(head, pretty)
    # Leave the Bundle object open: entries (if any) are appended before it is closed.
    yield (text[:-2] if pretty else text[:-1]).encode()
    first = True
    async for entry in entries:
        if pretty:
            opening = ',\n  "entry": [\n    ' if first else ",\n    "
        else:
            opening = ',"entry":[' if first else ","
        before, after = _entry_parts(entry, pretty)
        yield (opening + before).encode()
        if entry.resource is not None:
            # Re-indent the resource's own lines so the whole document reads as one; JSON
            # strings never contain a raw newline, so every b"\n" is layout.
            async for chunk in entry.resource:
                yield chunk.replace(b"\n", b"\n" + _RESOURCE_INDENT) if pretty else chunk
        yield after.encode()
        first = False
    if pretty:
        yield b"\n}" if first else b"\n  ]\n}"
    else:
        yield b"}" if first else b"]}"


async def searchset_stream(
    *,
    total: int,
    self_url: str,
    entries: AsyncIterable[tuple[str, AsyncIterable[bytes]]],
    pretty: bool = False,
    now: datetime | None = None,
    id: str | None = None,
) -> AsyncIterator[bytes]:
    """A searchset with only a ``self`` link, from ``(fullUrl, resource JSON bytes)`` pairs,
    every entry ``search.mode = match``. ``fullUrl`` is the resource's identity, not a
    version-specific URL (bundle.html#bundle-unique). See :func:`bundle_stream`."""

    async def as_entries() -> AsyncIterator[JsonEntry]:
        async for full_url, resource in entries:
            yield JsonEntry(full_url=full_url, resource=resource, search_mode="match")

    async for chunk in bundle_stream(
        bundle_type="searchset",
        total=total,
        links=[("self", self_url)],
        entries=as_entries(),
        pretty=pretty,
        now=now,
        id=id,
    ):
        yield chunk


def _entry_parts(entry: JsonEntry, pretty: bool) -> tuple[str, str]:
    """The entry's JSON text before and after its resource (``after`` closes the entry);
    without a resource, the whole entry and ``""``."""
    value: dict[str, Any] = {}
    if entry.full_url is not None:
        value["fullUrl"] = entry.full_url
    if entry.resource is not None:
        value["resource"] = _PLACEHOLDER
    if entry.search_mode is not None:
        value["search"] = {"mode": entry.search_mode}
    if entry.request is not None:
        method, url = entry.request
        value["request"] = {"method": method, "url": url}
    if entry.response is not None:
        unknown = set(entry.response) - set(_RESPONSE_KEYS)
        if unknown:
            raise ValueError(f"unknown Bundle.entry.response elements: {sorted(unknown)}")
        value["response"] = {k: entry.response[k] for k in _RESPONSE_KEYS if k in entry.response}
    text = _dumps(value, pretty)
    if pretty:
        text = text.replace("\n", _ENTRY_INDENT)
    if entry.resource is None:
        return text, ""
    marker = json.dumps(_PLACEHOLDER)
    if text.count(marker) != 1:  # only a value holding the placeholder itself could do this
        raise ValueError("a Bundle entry value contains fhirbin's internal placeholder")
    before, _, after = text.partition(marker)
    return before, after


def _dumps(value: Any, pretty: bool) -> str:
    if pretty:
        return json.dumps(value, indent=2)
    return json.dumps(value, separators=(",", ":"))
