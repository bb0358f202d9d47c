"""Routing: a 405 lists exactly the methods of its path; trailing-slash redirects use the
configured base URL, never the request's Host (docs/decisions.md#no-host-echo)."""

from __future__ import annotations

import httpx
import pytest

from tests.support import BASE

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", "/fhir/Binary/abc", "GET, HEAD, PUT, DELETE"),
        ("POST", "/fhir/Binary/abc", "GET, HEAD, PUT, DELETE"),
        ("DELETE", "/fhir/Binary", "GET, HEAD, POST"),
        ("PUT", "/fhir/Binary/", "GET, HEAD, POST"),
        ("GET", "/fhir/Binary/_search", None),  # reads id "_search": not a 405
        ("PATCH", "/fhir/Binary/_search", "POST"),
        ("POST", "/fhir/Binary/_history", "GET, HEAD"),
        ("PUT", "/fhir/Binary/abc/_history", "GET, HEAD"),
        ("DELETE", "/fhir/Binary/abc/_history/1", "GET, HEAD"),
        ("POST", "/fhir/metadata", "GET, HEAD"),
        ("DELETE", "/fhir/.well-known/smart-configuration", "GET, HEAD"),
        ("PUT", "/fhir/.well-known/jwks.json", "GET, HEAD"),
        ("GET", "/fhir/auth/token", "POST"),
        ("POST", "/fhir/AuditEvent", "GET, HEAD"),
        ("DELETE", "/fhir/AuditEvent/x", "GET, HEAD"),
    ],
)
async def test_405_allow_lists_exactly_the_methods_of_the_route(
    client: httpx.AsyncClient, auth: dict[str, str], method: str, path: str, allow: str | None
) -> None:
    response = await client.request(method, path, headers=auth)
    if allow is None:
        assert response.status_code != 405
        return
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow
    assert response.json()["issue"][0]["code"] == "not-supported"


async def test_every_method_in_allow_is_routed(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """The other side of the contract: each method listed is not itself a 405."""
    created = await client.post(
        "/fhir/Binary", content=b"x", headers={**auth, "Content-Type": "text/plain"}
    )
    bid = created.headers["location"].split("/Binary/")[1].split("/")[0]
    answer = await client.request("PATCH", f"/fhir/Binary/{bid}", headers=auth)
    for method in answer.headers["allow"].split(", "):
        response = await client.request(
            method, f"/fhir/Binary/{bid}", content=b"y", headers={**auth, "Content-Type": "a/b"}
        )
        assert response.status_code != 405, method


async def test_unknown_paths_under_binary_are_404_for_every_method(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
        response = await client.request(method, "/fhir/Binary/a/b/c", headers=auth)
        assert response.status_code == 404, method
        assert response.json()["resourceType"] == "OperationOutcome"
        assert "allow" not in response.headers


@pytest.mark.parametrize("host", ["evil.example", "attacker.test:4443", "127.0.0.1:1"])
async def test_trailing_slash_redirect_uses_the_base_url_not_host(
    client: httpx.AsyncClient, auth: dict[str, str], host: str
) -> None:
    response = await client.get(
        "/fhir/metadata/?_format=json", headers={**auth, "Host": host}, follow_redirects=False
    )
    assert response.status_code == 307
    assert response.headers["location"] == f"{BASE}/metadata?_format=json"
    assert host not in response.text
    assert all(host not in value for value in response.headers.values())


async def test_no_redirect_to_a_path_without_a_route(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.get("/fhir/nothing/", headers={**auth, "Host": "evil.example"})
    assert response.status_code == 404
    assert "evil.example" not in response.text
