"""POST [base]/Binary/[id]/$expunge over the real app, embedded and scale-out
(docs/decisions.md#expunge)."""

from __future__ import annotations

import dataclasses
import hashlib

import httpx
import pytest
from starlette.applications import Starlette

from fhirbin.api.app import create_app
from fhirbin.config import Settings
from fhirbin.metadata.base import AuditQuery
from tests.api.conftest import BACKENDS, TokenFactory
from tests.api.test_api_patient_access import FakeIdentity
from tests.api.test_api_versions import post, put
from tests.support import runtime_of, swap_runtime

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, allow_expunge=True)


async def expunge(
    client: httpx.AsyncClient, auth: dict[str, str], binary_id: str
) -> httpx.Response:
    return await client.post(f"/fhir/Binary/{binary_id}/$expunge", headers=auth)


async def stored(app: Starlette, body: bytes) -> bool:
    blobs = app.state.runtime.service.blobs
    return bool(await blobs.exists(hashlib.sha256(body).hexdigest()))


async def test_expunge_erases_every_version_and_its_content(
    app: Starlette, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await post(client, auth, b"expunge me 1")
    assert (await put(client, auth, binary_id, b"expunge me 2")).status_code == 200
    assert (await client.delete(f"/fhir/Binary/{binary_id}", headers=auth)).status_code == 204

    response = await expunge(client, auth, binary_id)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "resourceType": "Parameters",
        "parameter": [{"name": "count", "valueInteger": 3}],
    }
    for path in ("", "/_history", "/_history/1", "/_history/3"):
        answer = await client.get(f"/fhir/Binary/{binary_id}{path}", headers=auth)
        assert answer.status_code == 404, path
        assert answer.json()["resourceType"] == "OperationOutcome"
    assert not await stored(app, b"expunge me 1")
    assert not await stored(app, b"expunge me 2")
    # A second expunge finds nothing.
    assert (await expunge(client, auth, binary_id)).status_code == 404


async def test_its_audit_event_remains(
    app: Starlette, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await post(client, auth, b"audited")
    assert (await expunge(client, auth, binary_id)).status_code == 200
    catalogue = app.state.runtime.catalogue
    records = await catalogue.search_audit(AuditQuery(entity=f"Binary/{binary_id}"))
    erased = [r for r in records if r.subtype == "operation"]
    assert len(erased) == 1
    assert (erased[0].action, erased[0].status, erased[0].entity_version) == ("D", 200, None)


async def test_content_another_binary_names_is_kept(
    app: Starlette, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    first = await post(client, auth, b"shared bytes")
    second = await post(client, auth, b"shared bytes")
    assert (await expunge(client, auth, first)).status_code == 200
    assert await stored(app, b"shared bytes")
    assert (await client.get(f"/fhir/Binary/{second}", headers=auth)).content == b"shared bytes"


async def test_numbering_continues_after_an_expunge(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    assert (await put(client, auth, "reused-id", b"one")).status_code == 201
    assert (await put(client, auth, "reused-id", b"two")).status_code == 200
    assert (await expunge(client, auth, "reused-id")).status_code == 200

    again = await put(client, auth, "reused-id", b"different bytes")

    assert again.status_code == 201
    assert again.headers["etag"] == 'W/"3"'
    assert (await client.get("/fhir/Binary/reused-id/_history/1", headers=auth)).status_code == 404
    read = await client.get("/fhir/Binary/reused-id/_history/3", headers=auth)
    assert read.content == b"different bytes"


async def test_expunge_needs_the_delete_scope(
    client: httpx.AsyncClient, auth: dict[str, str], token_for: TokenFactory
) -> None:
    binary_id = await post(client, auth, b"kept")
    reader = {"Authorization": f"Bearer {await token_for('system/Binary.cru')}"}
    response = await expunge(client, reader, binary_id)
    assert response.status_code == 403
    assert response.json()["resourceType"] == "OperationOutcome"
    assert (await client.get(f"/fhir/Binary/{binary_id}", headers=auth)).content == b"kept"


async def test_an_unknown_id_is_404(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await expunge(client, auth, "never-stored")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_switched_off_it_is_403_and_nothing_changes(
    settings: Settings, app: Starlette, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await post(client, auth, b"still here")
    # The same stores, served by an app with the switch off.
    off_app = create_app(dataclasses.replace(settings, allow_expunge=False))
    async with off_app.router.lifespan_context(off_app):
        transport = httpx.ASGITransport(app=off_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as off:
            response = await expunge(off, auth, binary_id)
    assert response.status_code == 403
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "FHIRBIN_ALLOW_EXPUNGE" in outcome["issue"][0]["diagnostics"]
    assert (await client.get(f"/fhir/Binary/{binary_id}", headers=auth)).content == b"still here"
    assert await stored(app, b"still here")


async def test_a_patient_token_expunges_only_what_was_always_its_patients(
    app: Starlette, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    fake = FakeIdentity(runtime_of(app).authenticator)
    swap_runtime(app, authenticator=fake)
    fake.add("p1", "patient/Binary.cruds", "1")
    patient = {"Authorization": "Bearer p1"}
    mine = await post(client, {**auth, "X-Security-Context": "Patient/1"}, b"mine")
    moved = await post(client, {**auth, "X-Security-Context": "Patient/2"}, b"moved")
    retagged = await put(client, auth, moved, b"moved", **{"X-Security-Context": "Patient/1"})
    assert retagged.status_code == 200
    theirs = await post(client, {**auth, "X-Security-Context": "Patient/2"}, b"theirs")

    assert (await expunge(client, patient, theirs)).status_code == 404
    refused = await expunge(client, patient, moved)
    assert refused.status_code == 403
    assert "another patient" in refused.json()["issue"][0]["diagnostics"]
    assert (await client.get(f"/fhir/Binary/{moved}/_history/1", headers=auth)).status_code == 200
    assert (await expunge(client, patient, mine)).status_code == 200
    assert (await client.get(f"/fhir/Binary/{mine}", headers=auth)).status_code == 404
