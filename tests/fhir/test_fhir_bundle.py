"""fhirbin.fhir.bundle: the streamed searchset and history Bundles."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from fhirbin.fhir.bundle import JsonEntry, bundle_id, bundle_stream, searchset_stream
from fhirbin.fhir.ids import is_valid_id

SELF = "http://x/fhir/Binary?_id=a,b"
RESOURCES: list[dict[str, Any]] = [
    {"resourceType": "Binary", "id": "a", "contentType": "text/plain", "data": "aGk="},
    {"resourceType": "Binary", "id": "b", "contentType": "image/png"},
]


async def _resource(resource: dict[str, Any], pretty: bool) -> AsyncIterator[bytes]:
    text = json.dumps(resource, indent=2) if pretty else json.dumps(resource, separators=(",", ":"))
    raw = text.encode()
    for i in range(0, len(raw), 7):  # split mid-token: the bundle must not care
        yield raw[i : i + 7]


async def _entries(
    resources: list[dict[str, Any]], pretty: bool, log: list[str] | None = None
) -> AsyncIterator[tuple[str, AsyncIterable[bytes]]]:
    for resource in resources:
        if log is not None:
            log.append(resource["id"])
        yield f"http://x/fhir/Binary/{resource['id']}", _resource(resource, pretty)


def _expected(resources: list[dict[str, Any]], **head: Any) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", **head, "type": "searchset"}
    bundle |= {"total": len(resources), "link": [{"relation": "self", "url": SELF}]}
    if resources:
        bundle["entry"] = [
            {
                "fullUrl": f"http://x/fhir/Binary/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ]
    return bundle


async def _bundle(resources: list[dict[str, Any]], pretty: bool, **kwargs: Any) -> bytes:
    stream = searchset_stream(
        total=len(resources),
        self_url=SELF,
        entries=_entries(resources, pretty),
        pretty=pretty,
        **kwargs,
    )
    return b"".join([chunk async for chunk in stream])


@pytest.mark.anyio
@pytest.mark.parametrize("pretty", [False, True])
@pytest.mark.parametrize("count", [0, 1, 2])
async def test_searchset_is_byte_for_byte_json_dumps(pretty: bool, count: int) -> None:
    out = await _bundle(RESOURCES[:count], pretty)
    expected = _expected(RESOURCES[:count])
    if pretty:
        assert out == json.dumps(expected, indent=2).encode()
    else:
        assert out == json.dumps(expected, separators=(",", ":")).encode()


@pytest.mark.anyio
async def test_empty_searchset_has_total_zero_and_no_entry_element() -> None:
    bundle = json.loads(await _bundle([], pretty=False))
    assert bundle["total"] == 0
    assert "entry" not in bundle
    assert bundle["link"] == [{"relation": "self", "url": SELF}]


@pytest.mark.anyio
async def test_bundle_id_and_last_updated_are_included_when_given() -> None:
    when = datetime(2026, 11, 26, 11, 33, 47, tzinfo=UTC)
    out = await _bundle(RESOURCES, pretty=True, id="bundle-1", now=when)
    expected = _expected(RESOURCES, id="bundle-1", meta={"lastUpdated": "2026-11-26T11:33:47Z"})
    assert out == json.dumps(expected, indent=2).encode()


@pytest.mark.anyio
async def test_total_may_exceed_the_entries_streamed() -> None:
    stream = searchset_stream(total=10, self_url=SELF, entries=_entries(RESOURCES[:1], False))
    bundle = json.loads(b"".join([chunk async for chunk in stream]))
    assert bundle["total"] == 10
    assert len(bundle["entry"]) == 1


@pytest.mark.anyio
async def test_bundle_starts_streaming_before_any_entry_is_read() -> None:
    log: list[str] = []
    stream = searchset_stream(total=2, self_url=SELF, entries=_entries(RESOURCES, False, log))
    first = await anext(stream)
    assert first.startswith(b'{"resourceType":"Bundle"')
    assert log == []
    second = await anext(stream)
    assert log == ["a"]
    rest = b"".join([chunk async for chunk in stream])
    assert json.loads(first + second + rest)["total"] == 2


def test_bundle_ids_are_new_lowercase_uuids() -> None:
    first, second = bundle_id(), bundle_id()
    assert first != second
    assert is_valid_id(first)
    assert first == first.lower()


# --- bundle_stream: searchset and history --------------------------------------------------

LINKS = [
    ("self", "http://x/fhir/Binary?_count=1&_page=S"),
    ("first", "http://x/fhir/Binary?_count=1"),
    ("next", "http://x/fhir/Binary?_count=1&_page=N"),
    ("previous", "http://x/fhir/Binary?_count=1&_page=P"),
]


async def _history_entries(pretty: bool) -> AsyncIterator[JsonEntry]:
    yield JsonEntry(
        full_url="http://x/fhir/Binary/a",
        resource=_resource(RESOURCES[0], pretty),
        request=("PUT", "Binary/a"),
        response={"lastModified": "2024-01-02T00:00:00Z", "status": "200 OK", "etag": 'W/"2"'},
    )
    yield JsonEntry(  # a deletion: no resource (R4 http.html#history)
        full_url="http://x/fhir/Binary/b",
        resource=None,
        request=("DELETE", "Binary/b"),
        response={"status": "204 No Content", "lastModified": "2024-01-01T00:00:00Z"},
    )
    yield JsonEntry(
        full_url="http://x/fhir/Binary/b",
        resource=_resource(RESOURCES[1], pretty),
        request=("POST", "Binary"),
        response={
            "etag": 'W/"1"',
            "status": "201 Created",
            "location": "Binary/b/_history/1",
            "lastModified": "2023-12-31T00:00:00Z",
        },
    )


HISTORY: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "history",
    "total": 3,
    "link": [{"relation": r, "url": u} for r, u in LINKS],
    "entry": [
        {
            "fullUrl": "http://x/fhir/Binary/a",
            "resource": RESOURCES[0],
            "request": {"method": "PUT", "url": "Binary/a"},
            "response": {
                "status": "200 OK",
                "etag": 'W/"2"',
                "lastModified": "2024-01-02T00:00:00Z",
            },
        },
        {
            "fullUrl": "http://x/fhir/Binary/b",
            "request": {"method": "DELETE", "url": "Binary/b"},
            "response": {"status": "204 No Content", "lastModified": "2024-01-01T00:00:00Z"},
        },
        {
            "fullUrl": "http://x/fhir/Binary/b",
            "resource": RESOURCES[1],
            "request": {"method": "POST", "url": "Binary"},
            "response": {
                "status": "201 Created",
                "location": "Binary/b/_history/1",
                "etag": 'W/"1"',
                "lastModified": "2023-12-31T00:00:00Z",
            },
        },
    ],
}


async def _collect(stream: AsyncIterable[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


@pytest.mark.anyio
@pytest.mark.parametrize("pretty", [False, True])
async def test_history_bundle_carries_request_and_response_and_deletions_have_no_resource(
    pretty: bool,
) -> None:
    out = await _collect(
        bundle_stream(
            bundle_type="history",
            total=3,
            links=LINKS,
            entries=_history_entries(pretty),
            pretty=pretty,
        )
    )
    if pretty:
        assert out == json.dumps(HISTORY, indent=2).encode()
    else:
        assert out == json.dumps(HISTORY, separators=(",", ":")).encode()
    # Element order within entries is fullUrl, resource, request, response; response keys in
    # R4 order whatever order the mapping had.
    entry = json.loads(out)["entry"][2]
    assert list(entry) == ["fullUrl", "resource", "request", "response"]
    assert list(entry["response"]) == ["status", "location", "etag", "lastModified"]


@pytest.mark.anyio
@pytest.mark.parametrize("pretty", [False, True])
async def test_pretty_and_compact_bundles_hold_the_same_json(pretty: bool) -> None:
    compact = await _collect(
        bundle_stream(bundle_type="history", total=3, links=LINKS, entries=_history_entries(False))
    )
    indented = await _collect(
        bundle_stream(
            bundle_type="history", total=3, links=LINKS, entries=_history_entries(True), pretty=True
        )
    )
    assert json.loads(compact) == json.loads(indented) == HISTORY


@pytest.mark.anyio
async def test_links_are_written_in_the_order_given() -> None:
    out = await _collect(
        bundle_stream(bundle_type="searchset", total=0, links=LINKS, entries=_no_entries())
    )
    assert [link["relation"] for link in json.loads(out)["link"]] == [
        "self",
        "first",
        "next",
        "previous",
    ]


async def _no_entries() -> AsyncIterator[JsonEntry]:
    nothing: list[JsonEntry] = []
    for entry in nothing:
        yield entry


@pytest.mark.anyio
@pytest.mark.parametrize("pretty", [False, True])
async def test_total_and_links_are_left_out_when_absent(pretty: bool) -> None:
    out = await _collect(
        bundle_stream(
            bundle_type="searchset", total=None, links=[], entries=_no_entries(), pretty=pretty
        )
    )
    expected = {"resourceType": "Bundle", "type": "searchset"}
    assert (
        out
        == (
            json.dumps(expected, indent=2)
            if pretty
            else json.dumps(expected, separators=(",", ":"))
        ).encode()
    )


@pytest.mark.anyio
async def test_searchset_entries_with_an_outcome_mode_and_without_full_url() -> None:
    async def entries() -> AsyncIterator[JsonEntry]:
        yield JsonEntry(
            full_url=None, resource=_resource(RESOURCES[1], True), search_mode="outcome"
        )

    out = await _collect(
        bundle_stream(
            bundle_type="searchset",
            total=0,
            links=[("self", SELF)],
            entries=entries(),
            pretty=True,
            id="b1",
            now=datetime(2024, 1, 1, tzinfo=UTC),
        )
    )
    expected = {
        "resourceType": "Bundle",
        "id": "b1",
        "meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
        "type": "searchset",
        "total": 0,
        "link": [{"relation": "self", "url": SELF}],
        "entry": [{"resource": RESOURCES[1], "search": {"mode": "outcome"}}],
    }
    assert out == json.dumps(expected, indent=2).encode()


@pytest.mark.anyio
async def test_odd_characters_in_urls_are_escaped_as_json_dumps_does() -> None:
    url = 'http://x/fhir/Binary/a?q="\\\u00e9\u2028'

    async def entries() -> AsyncIterator[JsonEntry]:
        yield JsonEntry(full_url=url, resource=_resource(RESOURCES[0], False), search_mode="match")

    out = await _collect(
        bundle_stream(bundle_type="searchset", total=1, links=[("self", url)], entries=entries())
    )
    assert json.loads(out)["entry"][0]["fullUrl"] == url
    assert json.loads(out)["link"][0]["url"] == url


@pytest.mark.anyio
async def test_unknown_bundle_types_and_response_keys_are_bugs() -> None:
    with pytest.raises(ValueError, match="bundle_type"):
        await _collect(
            bundle_stream(bundle_type="batch", total=None, links=[], entries=_no_entries())
        )

    async def entries() -> AsyncIterator[JsonEntry]:
        yield JsonEntry(full_url="u", resource=None, response={"outcome": "x"})

    with pytest.raises(ValueError, match="response"):
        await _collect(bundle_stream(bundle_type="history", total=1, links=[], entries=entries()))
