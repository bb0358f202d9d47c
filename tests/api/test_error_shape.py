"""Every 4xx/5xx is a FHIR JSON OperationOutcome whose issue fits its status."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from tests.support import runtime_of

pytestmark = pytest.mark.anyio

EXPECTED_CODE = {
    400: {"invalid", "security", "value", "structure"},
    401: {"login"},
    403: {"forbidden"},
    404: {"not-found"},
    405: {"not-supported"},
    406: {"not-supported"},
    413: {"too-long"},
    415: {"not-supported"},
    500: {"exception"},
}


def assert_outcome(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["severity"] == "error"
    assert issue["code"] in EXPECTED_CODE[status]
    assert issue["diagnostics"]
    assert "Traceback" not in response.text


async def test_each_status_is_an_operation_outcome(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    cases: list[tuple[int, httpx.Response]] = [
        (400, await client.get("/fhir/Binary/bad_id", headers=auth)),
        (401, await client.get("/fhir/Binary/x")),
        (404, await client.get("/fhir/Binary/unknown", headers=auth)),
        (404, await client.get("/fhir/Nothing/here", headers=auth)),
        (405, await client.patch("/fhir/Binary/x", headers=auth)),
        (406, await client.get("/fhir/Binary/x?_format=html", headers=auth)),
        (
            413,
            await client.post(
                "/fhir/Binary",
                content=b"z" * (1024 * 1024 + 1),
                headers={**auth, "Content-Type": "text/plain"},
            ),
        ),
        (
            415,
            await client.post(
                "/fhir/Binary/_search",
                content=b"{}",
                headers={**auth, "Content-Type": "application/json"},
            ),
        ),
    ]
    for status, response in cases:
        assert_outcome(response, status)


async def test_unexpected_failure_is_500_with_an_incident_id_and_no_internals(
    app: Starlette, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(binary_id: str) -> None:
        raise RuntimeError("secret database path /var/lib/x")

    monkeypatch.setattr(runtime_of(app).catalogue, "current", broken)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        response = await c.get("/fhir/Binary/abc", headers=auth)
    assert_outcome(response, 500)
    assert "Incident id" in response.json()["issue"][0]["diagnostics"]
    assert "/var/lib/x" not in response.text
