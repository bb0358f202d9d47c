"""_lastUpdated, _count and paging, _sort, _summary, _elements and _total over the real app."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tests.support import runtime_of

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
async def five(app: Starlette, client: httpx.AsyncClient, auth: dict[str, str]) -> list[str]:
    """Five Binaries created one day apart from T0 (the service clock is moved)."""
    service = runtime_of(app).service
    ids = []
    for day in range(5):
        service.clock = lambda day=day: T0 + timedelta(days=day)  # type: ignore[misc]
        response = await client.post(
            "/fhir/Binary",
            content=f"day {day}".encode(),
            headers={**auth, "Content-Type": "text/plain"},
        )
        ids.append(response.headers["location"].split("/Binary/")[1].split("/")[0])
    return ids


async def search(
    client: httpx.AsyncClient, auth: dict[str, str], query: str, method: str = "GET"
) -> Any:
    if method == "POST":
        response = await client.post(
            "/fhir/Binary/_search",
            content=query,
            headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
        )
    else:
        response = await client.get(f"/fhir/Binary?{query}", headers=auth)
    assert response.status_code == 200, response.text
    return response.json()


def ids(bundle: Any) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


@pytest.mark.parametrize(
    ("value", "days"),
    [
        ("2024-03-02", [1]),
        ("eq2024-03", [0, 1, 2, 3, 4]),
        ("ne2024-03-02", [0, 2, 3, 4]),
        ("gt2024-03-02", [2, 3, 4]),
        ("ge2024-03-02", [1, 2, 3, 4]),
        ("lt2024-03-02", [0]),
        ("le2024-03-02", [0, 1]),
        ("sa2024-03-02", [2, 3, 4]),
        ("eb2024-03-02", [0]),
        ("ge2024-03-02T12:00:00Z", [1, 2, 3, 4]),
        ("gt2024-03-02T12:00:00%2B00:00", [2, 3, 4]),
        ("2025", []),
    ],
)
async def test_last_updated_prefixes(
    client: httpx.AsyncClient, auth: dict[str, str], five: list[str], value: str, days: list[int]
) -> None:
    bundle = await search(client, auth, f"_lastUpdated={value}")
    assert ids(bundle) == [five[d] for d in days]
    assert bundle["total"] == len(days)


async def test_last_updated_ranges_and(
    client: httpx.AsyncClient, auth: dict[str, str], five: list[str]
) -> None:
    bundle = await search(client, auth, "_lastUpdated=ge2024-03-02&_lastUpdated=lt2024-03-04")
    assert ids(bundle) == [five[1], five[2]]


async def test_approximately(
    client: httpx.AsyncClient, auth: dict[str, str], five: list[str]
) -> None:
    bundle = await search(client, auth, "_lastUpdated=ap2024-03-03")
    assert five[2] in ids(bundle)


@pytest.mark.parametrize(
    "bad",
    [
        "_lastUpdated=yesterday",
        "_count=-1",
        "_count=abc",
        "_sort=contentType",
        "_summary=maybe",
        "_elements=nonsense",
        "_total=lots",
        "_id:exact=x",
        "_page=garbage",
    ],
)
async def test_bad_values_are_400(
    client: httpx.AsyncClient, auth: dict[str, str], bad: str
) -> None:
    response = await client.get(f"/fhir/Binary?{bad}", headers=auth)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_count_pages_with_next_and_previous(
    client: httpx.AsyncClient, auth: dict[str, str], five: list[str]
) -> None:
    seen: list[str] = []
    pages = []
    bundle = await search(client, auth, "_count=2")
    while True:
        pages.append(bundle)
        assert len(bundle.get("entry", [])) <= 2
        assert bundle["total"] == 5
        seen += ids(bundle)
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert "_count=2" in links["self"]
        if "next" not in links:
            break
        bundle = (
            await client.get(links["next"].removeprefix("http://testserver"), headers=auth)
        ).json()
    assert seen == five
    last = {link["relation"]: link["url"] for link in pages[-1]["link"]}
    previous = (
        await client.get(last["previous"].removeprefix("http://testserver"), headers=auth)
    ).json()
    assert ids(previous) == ids(pages[-2])
    assert "previous" not in {link["relation"] for link in pages[0]["link"]}


async def test_pages_are_stable_when_binaries_are_added(
    app: Starlette, client: httpx.AsyncClient, auth: dict[str, str], five: list[str]
) -> None:
    first = await search(client, auth, "_count=2")
    runtime_of(app).service.clock = lambda: T0 - timedelta(days=30)
    await client.post(
        "/fhir/Binary", content=b"older", headers={**auth, "Content-Type": "text/plain"}
    )
    links = {link["relation"]: link["url"] for link in first["link"]}
    second = (
        await client.get(links["next"].removeprefix("http://testserver"), headers=auth)
    ).json()
    assert ids(second) == five[2:4]


async def test_next_link_after_a_post_search(
    client: httpx.AsyncClient, auth: dict[str, str], five: list[str]
) -> None:
    bundle = await search(client, auth, "_lastUpdated=ge2024-03-02&_count=2", method="POST")
    assert ids(bundle) == five[1:3]
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    second = (
        await client.get(links["next"].removeprefix("http://testserver"), headers=auth)
    ).json()
    assert ids(second) == five[3:5]


async def test_count_never_exceeded_and_zero_gives_only_total(
    client: httpx.AsyncClient, auth: dict[str, str], five: list[str]
) -> None:
    assert len(ids(await search(client, auth, "_count=3"))) == 3
    zero = await search(client, auth, "_count=0")
    assert zero["total"] == 5
    assert "entry" not in zero
    assert {link["relation"] for link in zero["link"]} <= {"self", "first"}
    count = await search(client, auth, "_summary=count")
    assert count["total"] == 5
    assert "entry" not in count


async def test_sort_both_ways(
    client: httpx.AsyncClient, auth: dict[str, str], five: list[str]
) -> None:
    assert ids(await search(client, auth, "_sort=_lastUpdated")) == five
    assert ids(await search(client, auth, "_sort=-_lastUpdated")) == five[::-1]
    pages = await search(client, auth, "_sort=-_lastUpdated&_count=2")
    links = {link["relation"]: link["url"] for link in pages["link"]}
    second = (
        await client.get(links["next"].removeprefix("http://testserver"), headers=auth)
    ).json()
    assert ids(second) == [five[2], five[1]]


async def test_summary_true_leaves_out_data_and_tags_subsetted(
    client: httpx.AsyncClient, auth: dict[str, str], five: list[str]
) -> None:
    bundle = await search(client, auth, "_summary=true")
    resource = bundle["entry"][0]["resource"]
    assert "data" not in resource
    assert resource["meta"]["tag"][0]["code"] == "SUBSETTED"
    full = await search(client, auth, "_summary=false")
    assert base64.b64decode(full["entry"][0]["resource"]["data"]) == b"day 0"


async def test_elements(client: httpx.AsyncClient, auth: dict[str, str], five: list[str]) -> None:
    bundle = await search(client, auth, "_elements=contentType")
    resource = bundle["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "contentType"}
    assert resource["meta"]["tag"][0]["code"] == "SUBSETTED"
    with_data = await search(client, auth, "_elements=data")
    assert base64.b64decode(with_data["entry"][0]["resource"]["data"]) == b"day 0"


async def test_total_none(client: httpx.AsyncClient, auth: dict[str, str], five: list[str]) -> None:
    assert "total" not in await search(client, auth, "_total=none")
    assert (await search(client, auth, "_total=accurate"))["total"] == 5


async def test_self_link_lists_the_parameters_used(
    client: httpx.AsyncClient, auth: dict[str, str], five: list[str]
) -> None:
    bundle = await search(client, auth, "_lastUpdated=ge2024-03-02&_sort=-_lastUpdated&bogus=1")
    self_url = bundle["link"][0]["url"]
    assert "_lastUpdated=ge2024-03-02" in self_url
    assert "_sort=-_lastUpdated" in self_url
    assert "bogus" not in self_url
