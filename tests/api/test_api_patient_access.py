"""securityContext as access control for patient-bound tokens (R4 Binary "Security",
docs/decisions.md#patient-scopes-and-security-context)."""

from __future__ import annotations

import time

import httpx
import pytest
from starlette.applications import Starlette

from fhirbin.auth.tokens import AccessClaims
from fhirbin.config import Settings, load_settings
from tests.support import BASE, runtime_of, swap_runtime

pytestmark = pytest.mark.anyio


class FakeIdentity:
    """Stands in for an external identity provider: maps opaque test tokens to claims."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.tokens: dict[str, AccessClaims] = {}

    def add(self, token: str, scope: str, patient: str | None) -> None:
        now = int(time.time())
        self.tokens[token] = AccessClaims(
            client_id=f"app-{token}",
            scope=scope,
            jti=token,
            issuer="https://idp.example",
            audience=BASE,
            issued_at=now,
            expires_at=now + 300,
            subject="someone",
            patient=patient,
        )

    async def authenticate(self, token: str, audience: str) -> AccessClaims:
        if token in self.tokens:
            return self.tokens[token]
        return await self.real.authenticate(token, audience)  # type: ignore[attr-defined,no-any-return]

    async def close(self) -> None:
        return None


@pytest.fixture
async def idp(app: Starlette) -> FakeIdentity:
    fake = FakeIdentity(runtime_of(app).authenticator)
    swap_runtime(app, authenticator=fake)
    fake.add("p1-read", "patient/Binary.rs", "1")
    fake.add("p1-write", "patient/Binary.cruds", "1")
    fake.add("user-read", "user/Binary.rs", "Patient/1")
    fake.add("no-patient", "patient/Binary.rs", None)
    return fake


@pytest.fixture
async def binaries(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, str]:
    made = {}
    for name, context in [
        ("mine", "Patient/1"),
        ("theirs", "Patient/2"),
        ("none", None),
        ("absolute", f"{BASE}/Patient/1"),
    ]:
        headers = {**auth, "Content-Type": "text/plain"}
        if context:
            headers["X-Security-Context"] = context
        response = await client.post("/fhir/Binary", content=name.encode(), headers=headers)
        made[name] = response.headers["location"].split("/Binary/")[1].split("/")[0]
    return made


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_patient_token_reads_only_its_patients_binaries(
    client: httpx.AsyncClient, idp: FakeIdentity, binaries: dict[str, str]
) -> None:
    for name, status in [("mine", 200), ("absolute", 200), ("theirs", 404), ("none", 404)]:
        response = await client.get(f"/fhir/Binary/{binaries[name]}", headers=bearer("p1-read"))
        assert response.status_code == status, name
    hidden = await client.get(f"/fhir/Binary/{binaries['theirs']}", headers=bearer("p1-read"))
    unknown = await client.get("/fhir/Binary/never-was", headers=bearer("p1-read"))
    assert hidden.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"] == "not-found"
    vread = await client.get(
        f"/fhir/Binary/{binaries['theirs']}/_history/1", headers=bearer("p1-read")
    )
    assert vread.status_code == 404
    history = await client.get(
        f"/fhir/Binary/{binaries['theirs']}/_history", headers=bearer("p1-read")
    )
    assert history.status_code == 404


async def test_user_scope_with_patient_context_behaves_the_same(
    client: httpx.AsyncClient, idp: FakeIdentity, binaries: dict[str, str]
) -> None:
    assert (
        await client.get(f"/fhir/Binary/{binaries['mine']}", headers=bearer("user-read"))
    ).status_code == 200
    assert (
        await client.get(f"/fhir/Binary/{binaries['theirs']}", headers=bearer("user-read"))
    ).status_code == 404


async def test_patient_token_searches_only_its_patients_binaries(
    client: httpx.AsyncClient, idp: FakeIdentity, binaries: dict[str, str]
) -> None:
    bundle = (await client.get("/fhir/Binary", headers=bearer("p1-read"))).json()
    assert {e["resource"]["id"] for e in bundle["entry"]} == {
        binaries["mine"],
        binaries["absolute"],
    }
    assert bundle["total"] == 2
    by_id = (
        await client.get(f"/fhir/Binary?_id={binaries['theirs']}", headers=bearer("p1-read"))
    ).json()
    assert by_id["total"] == 0
    history = (await client.get("/fhir/Binary/_history", headers=bearer("p1-read"))).json()
    assert {e["resource"]["id"] for e in history["entry"]} == {
        binaries["mine"],
        binaries["absolute"],
    }


async def test_patient_token_writes_only_for_its_patient(
    client: httpx.AsyncClient, idp: FakeIdentity, binaries: dict[str, str], auth: dict[str, str]
) -> None:
    def write(context: str | None) -> dict[str, str]:
        headers = {**bearer("p1-write"), "Content-Type": "text/plain"}
        if context:
            headers["X-Security-Context"] = context
        return headers

    assert (
        await client.post("/fhir/Binary", content=b"x", headers=write("Patient/1"))
    ).status_code == 201
    assert (
        await client.post("/fhir/Binary", content=b"x", headers=write("Patient/2"))
    ).status_code == 403
    assert (await client.post("/fhir/Binary", content=b"x", headers=write(None))).status_code == 403
    theirs = binaries["theirs"]
    assert (
        await client.put(f"/fhir/Binary/{theirs}", content=b"x", headers=write("Patient/1"))
    ).status_code == 404
    assert (
        await client.delete(f"/fhir/Binary/{theirs}", headers=bearer("p1-write"))
    ).status_code == 404
    still = await client.get(f"/fhir/Binary/{theirs}", headers=auth)
    assert still.status_code == 200
    assert still.content == b"theirs"
    moved = await client.put(
        f"/fhir/Binary/{binaries['mine']}", content=b"x", headers=write("Patient/2")
    )
    assert moved.status_code == 403  # may not hand its Binary to another patient


async def test_patient_scope_without_patient_context_is_refused(
    client: httpx.AsyncClient, idp: FakeIdentity, binaries: dict[str, str]
) -> None:
    response = await client.get(f"/fhir/Binary/{binaries['mine']}", headers=bearer("no-patient"))
    assert response.status_code == 403


async def test_system_tokens_are_unaffected(
    client: httpx.AsyncClient, auth: dict[str, str], binaries: dict[str, str]
) -> None:
    for binary_id in binaries.values():
        assert (await client.get(f"/fhir/Binary/{binary_id}", headers=auth)).status_code == 200


@pytest.fixture
def strict_settings(settings: Settings) -> Settings:
    return load_settings({}, {**settings.__dict__, "require_security_context": True})


async def test_required_security_context(tmp_path: object, strict_settings: Settings) -> None:
    from fhirbin.api.app import create_app
    from tests.support import register

    app = create_app(strict_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            client_id, secret = await register(app)
            token = (
                await c.post(
                    "/fhir/auth/token",
                    data={"grant_type": "client_credentials"},
                    auth=(client_id, secret),
                )
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
            refused = await c.post("/fhir/Binary", content=b"x", headers=headers)
            assert refused.status_code == 400
            assert "securityContext" in refused.json()["issue"][0]["diagnostics"]
            ok = await c.post(
                "/fhir/Binary", content=b"x", headers={**headers, "X-Security-Context": "Patient/9"}
            )
            assert ok.status_code == 201
