"""fhirbin.fhir.xml_bundle: Bundles streamed in FHIR XML, with Binaries nested."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element, tostring

import pytest
from defusedxml.ElementTree import (  # type: ignore[import-untyped,unused-ignore]
    fromstring as safe_fromstring,
)

from fhirbin.fhir.outcome import operation_outcome
from fhirbin.fhir.xml_bundle import XmlEntry, bundle_xml_stream, searchset_xml_stream
from fhirbin.fhir.xml_parse import parse_binary_xml
from fhirbin.fhir.xml_write import binary_xml_stream, resource_to_xml

NS = "{http://hl7.org/fhir}"
WHEN = datetime(2026, 11, 26, 11, 33, 47, tzinfo=UTC)
SELF = "http://x/fhir/Binary?_id=a,b&_count=2"


@dataclass(frozen=True)
class Meta:
    id: str
    content_type: str
    size: int
    security_context: str | None = None
    version: int = 1
    last_updated: datetime = WHEN


CONTENT = {"a": b"hello", "b": b"", "c": bytes(range(256)) * 3}
METAS = [
    Meta("a", 'text/plain; charset="utf-8"', 5, "Patient/1"),
    Meta("b", "image/png", 0),
    Meta("c", "application/octet-stream", 768),
]


def parse(xml: bytes) -> Element:
    root: Element = safe_fromstring(xml)
    return root


def names(element: Element) -> list[str]:
    return [child.tag.removeprefix(NS) for child in element]


async def _split(data: bytes, step: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), step):  # split mid-token: the bundle must not care
        yield data[i : i + step]


def _binary(meta: Meta, pretty: bool) -> AsyncIterable[bytes]:
    return binary_xml_stream(meta, _split(CONTENT[meta.id]), pretty, declaration=False)


async def _matches(
    metas: list[Meta], pretty: bool, log: list[str] | None = None
) -> AsyncIterator[tuple[str, AsyncIterable[bytes]]]:
    for meta in metas:
        if log is not None:
            log.append(meta.id)
        yield f"http://x/fhir/Binary/{meta.id}", _binary(meta, pretty)


async def _entries(items: list[XmlEntry]) -> AsyncIterator[XmlEntry]:
    for item in items:
        yield item


async def _collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in stream])


def _binary_dict(meta: Meta) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Binary",
        "id": meta.id,
        "meta": {"versionId": str(meta.version), "lastUpdated": "2026-11-26T11:33:47Z"},
        "contentType": meta.content_type,
    }
    if meta.security_context is not None:
        resource["securityContext"] = {"reference": meta.security_context}
    if CONTENT[meta.id]:
        resource["data"] = base64.b64encode(CONTENT[meta.id]).decode()
    return resource


def _expected(metas: list[Meta], **head: Any) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", **head, "type": "searchset"}
    bundle |= {"total": len(metas), "link": [{"relation": "self", "url": SELF}]}
    if metas:
        bundle["entry"] = [
            {
                "fullUrl": f"http://x/fhir/Binary/{m.id}",
                "resource": _binary_dict(m),
                "search": {"mode": "match"},
            }
            for m in metas
        ]
    return bundle


@pytest.mark.anyio
@pytest.mark.parametrize("pretty", [False, True])
@pytest.mark.parametrize("count", [0, 1, 3])
async def test_searchset_is_byte_for_byte_resource_to_xml(pretty: bool, count: int) -> None:
    out = await _collect(
        searchset_xml_stream(
            total=count, self_url=SELF, entries=_matches(METAS[:count], pretty), pretty=pretty
        )
    )
    assert out == resource_to_xml(_expected(METAS[:count]), pretty)


@pytest.mark.anyio
@pytest.mark.parametrize("pretty", [False, True])
async def test_streamed_bundle_parses_and_nests_binaries(pretty: bool) -> None:
    out = await _collect(
        searchset_xml_stream(
            total=3,
            self_url=SELF,
            entries=_matches(METAS, pretty),
            pretty=pretty,
            now=WHEN,
            id="bundle-1",
        )
    )
    assert out.count(b"<?xml") == 1
    root = parse(out)
    assert root.tag == NS + "Bundle"
    assert names(root) == ["id", "meta", "type", "total", "link", "entry", "entry", "entry"]
    link = root.find(NS + "link")
    assert link is not None
    assert [e.get("value") for e in link] == ["self", SELF]
    for meta, entry in zip(METAS, root.findall(NS + "entry"), strict=True):
        assert names(entry) == ["fullUrl", "resource", "search"]
        binary = entry[1][0]
        assert binary.tag == NS + "Binary"
        # The nested Binary is a complete FHIR XML Binary: the parser reads it back.
        parsed = parse_binary_xml(tostring(binary, encoding="utf-8"))
        assert parsed is not None
        assert parsed.data == CONTENT[meta.id]
        assert parsed.security_context == meta.security_context
        assert parsed.content_type == meta.content_type


@pytest.mark.anyio
async def test_pretty_bundle_indents_the_nested_resource() -> None:
    out = await _collect(
        searchset_xml_stream(total=1, self_url=SELF, entries=_matches(METAS[:1], True), pretty=True)
    )
    lines = out.decode().splitlines()
    start = lines.index("    <resource>")
    assert lines[start + 1] == '      <Binary xmlns="http://hl7.org/fhir">'
    assert lines[start + 2] == '        <id value="a"/>'
    assert lines[start + 3] == "        <meta>"
    assert lines[start + 4] == '          <versionId value="1"/>'
    assert (
        lines[start + 7] == '        <contentType value="text/plain; charset=&quot;utf-8&quot;"/>'
    )
    assert lines[start + 8] == "        <securityContext>"
    assert lines[start + 9] == '          <reference value="Patient/1"/>'
    assert lines[start + 11] == '        <data value="aGVsbG8="/>'
    assert lines[start + 12] == "      </Binary>"
    assert lines[start + 13] == "    </resource>"
    assert lines[start + 14] == "    <search>"
    assert lines[-1] == "</Bundle>"
    for line in lines[1:]:
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0


@pytest.mark.anyio
async def test_bundle_starts_streaming_before_any_entry_is_read() -> None:
    log: list[str] = []
    stream = searchset_xml_stream(total=3, self_url=SELF, entries=_matches(METAS, False, log))
    first = await anext(stream)
    assert first.startswith(b'<?xml version="1.0" encoding="UTF-8"?><Bundle xmlns=')
    assert log == []
    second = await anext(stream)
    assert log == ["a"]
    rest = await _collect(stream)
    assert len(parse(first + second + rest).findall(NS + "entry")) == 3


@pytest.mark.anyio
@pytest.mark.parametrize("pretty", [False, True])
async def test_history_bundle_with_requests_and_responses(pretty: bool) -> None:
    response = {
        "lastModified": "2026-11-26T11:33:47Z",
        "etag": 'W/"2"',
        "status": "200",
        "location": "Binary/a/_history/2",
    }
    entries = [
        XmlEntry(
            full_url="http://x/fhir/Binary/a",
            resource=_binary(METAS[0], pretty),
            request=("PUT", "Binary/a"),
            response=response,
        ),
        XmlEntry(
            full_url="http://x/fhir/Binary/a",
            request=("DELETE", "Binary/a"),
            response={"status": "204"},
        ),
    ]
    out = await _collect(
        bundle_xml_stream(
            bundle_type="history",
            total=2,
            links=[("self", "http://x/fhir/Binary/a/_history"), ("next", "http://x/n?a=1&b=2")],
            entries=_entries(entries),
            pretty=pretty,
            timestamp=WHEN,
        )
    )
    expected = {
        "resourceType": "Bundle",
        "type": "history",
        "timestamp": "2026-11-26T11:33:47Z",
        "total": 2,
        "link": [
            {"relation": "self", "url": "http://x/fhir/Binary/a/_history"},
            {"relation": "next", "url": "http://x/n?a=1&b=2"},
        ],
        "entry": [
            {
                "fullUrl": "http://x/fhir/Binary/a",
                "resource": _binary_dict(METAS[0]),
                "request": {"method": "PUT", "url": "Binary/a"},
                "response": response,
            },
            {
                "fullUrl": "http://x/fhir/Binary/a",
                "request": {"method": "DELETE", "url": "Binary/a"},
                "response": {"status": "204"},
            },
        ],
    }
    assert out == resource_to_xml(expected, pretty)
    root = parse(out)
    first, second = root.findall(NS + "entry")
    assert names(first) == ["fullUrl", "resource", "request", "response"]
    assert names(first[3]) == ["status", "location", "etag", "lastModified"]
    assert names(second) == ["fullUrl", "request", "response"]


@pytest.mark.anyio
async def test_batch_response_entry_without_resource() -> None:
    out = await _collect(
        bundle_xml_stream(
            bundle_type="batch-response",
            entries=_entries([XmlEntry(response={"status": "201 Created", "location": "B/1"})]),
        )
    )
    root = parse(out)
    assert names(root) == ["type", "entry"]
    assert names(root[1]) == ["response"]


@pytest.mark.anyio
async def test_a_nested_operation_outcome_from_resource_to_xml() -> None:
    outcome = resource_to_xml(operation_outcome("informational", "ok"), declaration=False)
    out = await _collect(
        bundle_xml_stream(
            bundle_type="searchset",
            total=0,
            entries=_entries([XmlEntry(resource=_split(outcome), search_mode="outcome")]),
        )
    )
    entry = parse(out).find(NS + "entry")
    assert entry is not None
    assert names(entry) == ["resource", "search"]
    assert entry[0][0].tag == NS + "OperationOutcome"


@pytest.mark.anyio
async def test_empty_bundle_has_no_entry_element() -> None:
    for pretty in (False, True):
        out = await _collect(
            bundle_xml_stream(bundle_type="collection", entries=_entries([]), pretty=pretty)
        )
        assert names(parse(out)) == ["type"]
    out = await _collect(
        bundle_xml_stream(bundle_type="collection", entries=_entries([]), declaration=False)
    )
    assert out == b'<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/></Bundle>'


async def _declared() -> AsyncIterator[bytes]:
    yield b"<"
    yield b'?xml version="1.0"?><Binary xmlns="http://hl7.org/fhir"/>'


async def _empty() -> AsyncIterator[bytes]:
    for chunk in (b"",):
        yield chunk


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("bundle_type", "total", "make", "message"),
    [
        ("nonsense", None, None, "bundle-type"),
        ("collection", 1, None, "bdl-1"),
        ("searchset", -1, None, "unsignedInt"),
        ("searchset", 1, lambda: XmlEntry(full_url="u"), "bdl-5"),
        ("history", None, lambda: XmlEntry(resource=_split(b"<B/>"), search_mode="match"), "bdl-2"),
        (
            "searchset",
            1,
            lambda: XmlEntry(resource=_split(b"<B/>"), search_mode="best"),
            "search-entry",
        ),
        (
            "history",
            None,
            lambda: XmlEntry(resource=_split(b"<B/>"), response={"status": "200"}),
            "bdl-3",
        ),
        (
            "history",
            None,
            lambda: XmlEntry(resource=_split(b"<B/>"), request=("GET", "B")),
            "bdl-4",
        ),
        ("searchset", 1, lambda: XmlEntry(request=("GET", "B")), "bdl-3"),
        ("collection", None, lambda: XmlEntry(response={"status": "200"}), "bdl-4"),
        ("batch", None, lambda: XmlEntry(request=("FETCH", "B")), "http-verb"),
        ("batch-response", None, lambda: XmlEntry(response={"etag": "x"}), "status"),
        (
            "batch-response",
            None,
            lambda: XmlEntry(response={"status": "1", "outcome": "x"}),
            "outcome",
        ),
        (
            "collection",
            None,
            lambda: XmlEntry(full_url="B/1/_history/2", resource=_split(b"<B/>")),
            "bdl-8",
        ),
        ("collection", None, lambda: XmlEntry(resource=_declared()), "declaration"),
        ("collection", None, lambda: XmlEntry(resource=_empty()), "empty"),
        (
            "collection",
            None,
            lambda: XmlEntry(full_url="", resource=_split(b"<B/>")),
            "never empty",
        ),
    ],
)
async def test_broken_bundles_fail_loudly(
    bundle_type: str, total: int | None, make: Callable[[], XmlEntry] | None, message: str
) -> None:
    # Entries are made in the test, so that no stream outlives its event loop.
    stream = bundle_xml_stream(
        bundle_type=bundle_type,
        total=total,
        entries=_entries([make()] if make is not None else []),
    )
    with pytest.raises(ValueError, match=message):
        await _collect(stream)


def test_entry_defaults() -> None:
    entry = XmlEntry()
    assert (entry.full_url, entry.resource, entry.search_mode) == (None, None, None)
    assert (entry.request, entry.response) == (None, None)
    response: Mapping[str, str] = {"status": "200"}
    assert XmlEntry(response=response).response == response
