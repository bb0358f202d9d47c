"""fhirbin.fhir.bundle: the streamed searchset Bundle."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from fhirbin.fhir.bundle import bundle_id, searchset_stream
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
