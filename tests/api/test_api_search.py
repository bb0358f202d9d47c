"""GET [base]/Binary?_id= and POST [base]/Binary/_search over the real app."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.api.conftest import BACKENDS
from tests.support import BASE

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """These run on the embedded stores and on PostgreSQL + S3."""
    param: str = request.param
    return param


async def put_text(client: httpx.AsyncClient, auth: dict[str, str], text: str) -> str:
    response = await client.post(
        "/fhir/Binary", content=text.encode(), headers={**auth, "Content-Type": "text/plain"}
    )
    assert response.status_code == 201
    return response.headers["location"].split("/Binary/")[1].split("/")[0]


def ids_in(bundle: dict[str, object]) -> list[str]:
    entries = bundle.get("entry", [])
    assert isinstance(entries, list)
    return [e["resource"]["id"] for e in entries]


async def test_search_by_id_returns_a_searchset_with_the_full_binary(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await put_text(client, auth, "hello")
    response = await client.get("/fhir/Binary", params={"_id": binary_id}, headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 1
    (entry,) = bundle["entry"]
    assert entry["fullUrl"] == f"{BASE}/Binary/{binary_id}"
    assert entry["search"] == {"mode": "match"}
    assert entry["resource"]["contentType"] == "text/plain"
    assert base64.b64decode(entry["resource"]["data"]) == b"hello"
    link = bundle["link"][0]
    assert link["relation"] == "self"
    assert parse_qs(urlsplit(link["url"]).query) == {"_id": [binary_id], "_count": ["20"]}


async def test_comma_separated_ids_are_or(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    a, b = await put_text(client, auth, "a"), await put_text(client, auth, "b")
    await put_text(client, auth, "c")
    response = await client.get(f"/fhir/Binary?_id={a},{b},unknown", headers=auth)
    bundle = response.json()
    assert bundle["total"] == 2
    assert sorted(ids_in(bundle)) == sorted([a, b])


async def test_repeated_id_parameters_are_and(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    a, b = await put_text(client, auth, "a"), await put_text(client, auth, "b")
    response = await client.get(f"/fhir/Binary?_id={a}&_id={b}", headers=auth)
    assert response.json()["total"] == 0
    assert "entry" not in response.json()
    both = await client.get(f"/fhir/Binary?_id={a},{b}&_id={a}", headers=auth)
    assert ids_in(both.json()) == [a]


async def test_id_search_is_case_sensitive(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    binary_id = await put_text(client, auth, "x")
    response = await client.get(f"/fhir/Binary?_id={binary_id.upper()}", headers=auth)
    assert response.json()["total"] == 0


async def test_unknown_parameters_are_ignored_and_left_out_of_the_self_link(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await put_text(client, auth, "x")
    response = await client.get(f"/fhir/Binary?_id={binary_id}&foo=bar", headers=auth)
    assert response.status_code == 200
    assert "foo" not in response.json()["link"][0]["url"]


async def test_unknown_parameters_are_400_under_strict_handling(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.get(
        "/fhir/Binary?_id=x&foo=bar", headers={**auth, "Prefer": "handling=strict"}
    )
    assert response.status_code == 400
    assert "foo" in response.json()["issue"][0]["diagnostics"]


async def test_unsupported_modifier_is_400(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.get("/fhir/Binary?_id:exact=x", headers=auth)
    assert response.status_code == 400


async def test_post_search_combines_body_and_url(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    a, b = await put_text(client, auth, "a"), await put_text(client, auth, "b")
    response = await client.post("/fhir/Binary/_search", data={"_id": f"{a},{b}"}, headers=auth)
    assert response.status_code == 200
    assert sorted(ids_in(response.json())) == sorted([a, b])
    anded = await client.post(
        f"/fhir/Binary/_search?_id={a}", data={"_id": f"{a},{b}"}, headers=auth
    )
    assert ids_in(anded.json()) == [a]


async def test_post_search_needs_a_form_body(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/fhir/Binary/_search",
        content=b'{"_id":"x"}',
        headers={**auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 415


async def test_search_is_fhir_even_when_accept_is_generic(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await put_text(client, auth, "x")
    response = await client.get(f"/fhir/Binary?_id={binary_id}", headers={**auth, "Accept": "*/*"})
    assert response.json()["resourceType"] == "Bundle"


async def test_search_without_parameters_lists_every_binary(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    made = {await put_text(client, auth, str(i)) for i in range(3)}
    response = await client.get("/fhir/Binary", headers=auth)
    assert set(ids_in(response.json())) == made
    assert response.json()["link"][0]["url"] == f"{BASE}/Binary?_count=20"


async def test_empty_id_value_is_ignored(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await put_text(client, auth, "x")
    response = await client.get("/fhir/Binary?_id=", headers=auth)
    assert response.json()["total"] == 1
