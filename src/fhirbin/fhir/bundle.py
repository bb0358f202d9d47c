"""Searchset Bundles, streamed: the answer to a search, with every Binary in FHIR JSON.

Owns the JSON shape of an R4 ``searchset`` Bundle (bundle.html#searchset, http.html#search):
``type``, ``total``, the ``self`` link, and one entry per match with its ``fullUrl``, the
resource, and ``search.mode = match``. Binaries inside a Bundle are always in FHIR format (R4
binary.html#rest), so each entry's resource arrives as a stream of JSON bytes (from
:func:`fhirbin.fhir.binary.binary_json_stream`) and is passed through without being held in
memory. The bytes written are exactly what ``json.dumps`` would give for the whole Bundle.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime
from typing import Any

from fhirbin.fhir.binary import instant
from fhirbin.fhir.ids import new_id

# Depth of Bundle.entry[i].resource: its members sit 8 spaces in, its closing brace 6.
_RESOURCE_INDENT = b" " * 6


def bundle_id() -> str:
    """A new Bundle.id: a lowercase UUID, like every id this server assigns (D13)."""
    return new_id()


async def searchset_stream(
    *,
    total: int,
    self_url: str,
    entries: AsyncIterable[tuple[str, AsyncIterable[bytes]]],
    pretty: bool = False,
    now: datetime | None = None,
    id: str | None = None,
) -> AsyncIterator[bytes]:
    """Stream a searchset Bundle.

    ``entries`` yields ``(fullUrl, resource JSON bytes)`` per match; ``fullUrl`` is the
    resource's identity, not a version-specific URL (bundle.html#bundle-unique). With ``now``
    the Bundle gets ``meta.lastUpdated`` (when the search ran, search.html#currency); with
    ``id`` a ``Bundle.id``. ``total`` is the number of matches (bdl-1: searchset only), which
    may exceed the entries given when paging. No ``entry`` element at all when there are no
    entries: FHIR JSON has no empty arrays (R4 json.html).
    """
    head: dict[str, Any] = {"resourceType": "Bundle"}
    if id is not None:
        head["id"] = id
    if now is not None:
        head["meta"] = {"lastUpdated": instant(now)}
    head |= {"type": "searchset", "total": total, "link": [{"relation": "self", "url": self_url}]}
    text = _dumps(head, pretty)
    # Leave the Bundle object open: entries (if any) are appended before it is closed.
    yield (text[:-2] if pretty else text[:-1]).encode()
    first = True
    async for full_url, resource in entries:
        if pretty:
            opening = ',\n  "entry": [\n' if first else ",\n"
            yield (opening + f'    {{\n      "fullUrl": {json.dumps(full_url)},\n').encode()
            yield b'      "resource": '
            # Re-indent the resource's own lines so the whole document reads as one; JSON
            # strings never contain a raw newline, so every b"\n" is layout.
            async for chunk in resource:
                yield chunk.replace(b"\n", b"\n" + _RESOURCE_INDENT)
            yield b',\n      "search": {\n        "mode": "match"\n      }\n    }'
        else:
            opening = ',"entry":[' if first else ","
            yield (opening + f'{{"fullUrl":{json.dumps(full_url)},"resource":').encode()
            async for chunk in resource:
                yield chunk
            yield b',"search":{"mode":"match"}}'
        first = False
    if pretty:
        yield b"\n}" if first else b"\n  ]\n}"
    else:
        yield b"}" if first else b"]}"


def _dumps(value: Any, pretty: bool) -> str:
    if pretty:
        return json.dumps(value, indent=2)
    return json.dumps(value, separators=(",", ":"))
