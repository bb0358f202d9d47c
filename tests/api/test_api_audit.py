"""The audit trail over the real application: one AuditEvent record per FHIR request
(docs/security.md#audit), the AuditEvent endpoint, the buffered log, and no content or token
ever recorded."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
import structlog
from defusedxml import ElementTree
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send

import fhirbin.auditlog as auditlog_module
from fhirbin.api.app import create_app
from fhirbin.api.context import context_of
from fhirbin.api.observe import ObserveMiddleware
from fhirbin.auditlog import AuditLog
from fhirbin.auth.tokens import AccessClaims
from fhirbin.config import Settings
from fhirbin.metadata.base import AuditQuery, AuditRecord
from fhirbin.metadata.schema import audit_event
from fhirbin.metadata.sql import SqlMetadataStore
from fhirbin.metrics import Metrics
from fhirbin.runtime import Runtime
from tests.support import ALL_SCOPES, BASE, issued_token, register, runtime_of, swap_runtime

pytestmark = pytest.mark.anyio

AUDIT_SCOPE = "system/AuditEvent.rs"


@dataclass(frozen=True)
class Caller:
    client_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def caller(app: Starlette, client: httpx.AsyncClient, scope: str = ALL_SCOPES) -> Caller:
    return Caller(*await issued_token(app, client, scope))


@pytest.fixture
async def writer(app: Starlette, client: httpx.AsyncClient) -> Caller:
    return await caller(app, client)


@pytest.fixture
async def auditor(app: Starlette, client: httpx.AsyncClient) -> Caller:
    return await caller(app, client, AUDIT_SCOPE)


async def stored(app: Starlette) -> list[AuditRecord]:
    rt = runtime_of(app)
    await rt.audit.flush()
    return await rt.catalogue.search_audit(AuditQuery(limit=100_000))


async def send(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> tuple[httpx.Response, str]:
    """Send a request with a fresh X-Request-Id; returns the response and that id."""
    request_id = f"test-{uuid.uuid4()}"
    headers = {**kwargs.pop("headers", {}), "X-Request-Id": request_id}
    response = await client.request(method, url, headers=headers, **kwargs)
    assert response.headers["x-request-id"] == request_id
    return response, request_id


async def only(app: Starlette, request_id: str) -> AuditRecord:
    """The one record of a request: exactly one, or the test fails."""
    found = [r for r in await stored(app) if r.request_id == request_id]
    assert len(found) == 1, found
    return found[0]


def binary_id(response: httpx.Response) -> str:
    return response.headers["location"].split("/Binary/")[1].split("/")[0]


# --- one record per request -----------------------------------------------------------------


async def test_every_interaction_leaves_exactly_one_record(
    app: Starlette, client: httpx.AsyncClient, writer: Caller
) -> None:
    content = b"hello audit"
    headers = {**writer.headers, "Content-Type": "text/plain"}
    who = {"client_id": writer.client_id, "subject": writer.client_id, "source": "127.0.0.1"}

    def check(record: AuditRecord, **expected: object) -> None:
        for name, value in {**who, "detail": None, **expected}.items():
            assert getattr(record, name) == value, (name, record)

    created, rid = await send(client, "POST", "/fhir/Binary", content=content, headers=headers)
    assert created.status_code == 201
    bid = binary_id(created)
    entity = f"Binary/{bid}"
    # The service stored this one in the write's transaction: no bytes_sent (not sent yet).
    check(await only(app, rid), action="C", subtype="create", outcome="0", status=201,
          entity=entity, entity_version=1, bytes_sent=None, query=None)  # fmt: skip

    read, rid = await send(client, "GET", f"/fhir/Binary/{bid}", headers=writer.headers)
    assert read.content == content
    check(await only(app, rid), action="R", subtype="read", outcome="0", status=200,
          entity=entity, entity_version=1, bytes_sent=len(content))  # fmt: skip

    head, rid = await send(client, "HEAD", f"/fhir/Binary/{bid}", headers=writer.headers)
    assert head.status_code == 200
    check(await only(app, rid), action="R", subtype="read", status=200, bytes_sent=0)

    vread, rid = await send(client, "GET", f"/fhir/Binary/{bid}/_history/1", headers=writer.headers)
    assert vread.status_code == 200
    check(await only(app, rid), action="R", subtype="vread", entity=entity, entity_version=1)

    search, rid = await send(
        client, "GET", f"/fhir/Binary?_id={bid}&ignored=1", headers=writer.headers
    )
    assert search.status_code == 200
    check(await only(app, rid), action="E", subtype="search-type", entity=None, status=200,
          query=f"_id={bid}", bytes_sent=len(search.content))  # fmt: skip

    posted, rid = await send(
        client, "POST", "/fhir/Binary/_search", data={"_id": bid}, headers=writer.headers
    )
    assert posted.status_code == 200
    check(await only(app, rid), action="E", subtype="search-type", query=f"_id={bid}")

    history, rid = await send(
        client, "GET", f"/fhir/Binary/{bid}/_history?_count=5", headers=writer.headers
    )
    assert history.status_code == 200
    check(await only(app, rid), action="R", subtype="history-instance", entity=entity,
          entity_version=None, query="_count=5")  # fmt: skip

    everything, rid = await send(client, "GET", "/fhir/Binary/_history", headers=writer.headers)
    assert everything.status_code == 200
    check(await only(app, rid), action="E", subtype="history-type", entity=None, query="")

    updated, rid = await send(client, "PUT", f"/fhir/Binary/{bid}", content=b"v2", headers=headers)
    assert updated.status_code == 200
    check(await only(app, rid), action="U", subtype="update", outcome="0", status=200,
          entity=entity, entity_version=2, bytes_sent=None)  # fmt: skip

    deleted, rid = await send(client, "DELETE", f"/fhir/Binary/{bid}", headers=writer.headers)
    assert deleted.status_code == 204
    check(await only(app, rid), action="D", subtype="delete", status=204, entity=entity,
          entity_version=3)  # fmt: skip

    # Deleting again is a no-op 204 (docs/decisions.md#delete-is-idempotent): no version
    # written, so the middleware records it.
    again, rid = await send(client, "DELETE", f"/fhir/Binary/{bid}", headers=writer.headers)
    assert again.status_code == 204
    check(await only(app, rid), action="D", subtype="delete", status=204, entity=entity,
          entity_version=None, bytes_sent=0)  # fmt: skip

    gone, rid = await send(client, "GET", f"/fhir/Binary/{bid}", headers=writer.headers)
    assert gone.status_code == 410
    record = await only(app, rid)
    assert (record.action, record.outcome, record.status) == ("R", "4", 410)
    assert record.detail == f"Binary/{bid} has been deleted."

    created_by_put, rid = await send(
        client, "PUT", "/fhir/Binary/client-chosen", content=b"x", headers=headers
    )
    assert created_by_put.status_code == 201
    check(await only(app, rid), action="U", subtype="update", status=201,
          entity="Binary/client-chosen", entity_version=1)  # fmt: skip


async def test_refused_requests_leave_exactly_one_record(
    app: Starlette, client: httpx.AsyncClient, writer: Caller
) -> None:
    created = await client.post(
        "/fhir/Binary", content=b"x", headers={**writer.headers, "Content-Type": "text/plain"}
    )
    bid = binary_id(created)
    reader = await caller(app, client, "system/Binary.r")

    cases: list[tuple[str, str, dict[str, Any], int, str, str, str | None, str]] = [
        # method, url, request kwargs, status, action, subtype, client, detail contains
        ("GET", f"/fhir/Binary/{bid}", {}, 401, "R", "read", None, "needs an access token"),
        ("GET", f"/fhir/Binary/{bid}", {"headers": {"Authorization": "Bearer not.a.jwt"}},
         401, "R", "read", None, "not a well-formed JWT"),
        ("GET", "/fhir/Binary", {"headers": reader.headers}, 403, "E", "search-type",
         reader.client_id, "needs system/Binary.s"),
        ("GET", "/fhir/Binary/unknown", {"headers": writer.headers}, 404, "R", "read",
         writer.client_id, "not known"),
        ("GET", "/fhir/Patient/1", {"headers": writer.headers}, 404, "R", "read",
         writer.client_id, "No route"),
        ("PUT", f"/fhir/Binary/{bid}",
         {"headers": {**writer.headers, "Content-Type": "text/plain", "If-Match": 'W/"9"'},
          "content": b"stale"},
         412, "U", "update", writer.client_id, "If-Match"),
        ("POST", "/fhir/Binary",
         {"headers": {**writer.headers, "Content-Type": "text/plain"},
          "content": b"x" * (1024 * 1024 + 1)},
         413, "C", "create", writer.client_id, "larger than"),
        ("POST", "/fhir/Binary/_search",
         {"headers": {**writer.headers, "Content-Type": "application/json"}, "content": b"{}"},
         415, "E", "search-type", writer.client_id, "POST _search takes"),
        ("GET", "/fhir/Binary?_count=x", {"headers": writer.headers}, 400, "E", "search-type",
         writer.client_id, "Invalid _count"),
        ("PATCH", f"/fhir/Binary/{bid}", {"headers": writer.headers}, 405, "U", "patch",
         writer.client_id, "not supported"),
    ]  # fmt: skip
    for method, url, kwargs, status, action, subtype, client_id, detail in cases:
        response, rid = await send(client, method, url, **kwargs)
        assert response.status_code == status, (url, response.text)
        record = await only(app, rid)
        assert (record.action, record.subtype, record.outcome, record.status) == (
            action,
            subtype,
            "4",
            status,
        ), url
        assert record.client_id == client_id
        assert record.detail is not None
        assert detail in record.detail, record.detail
        assert record.bytes_sent == len(response.content)
    # The stale update stored nothing: version 1 is still current, and no update succeeded.
    assert (await runtime_of(app).catalogue.current(bid)).version == 1  # type: ignore[union-attr]
    assert not [r for r in await stored(app) if r.subtype == "update" and r.outcome == "0"]


async def test_the_token_endpoint_is_audited_as_login(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    client_id, secret = await register(app)
    data = {"grant_type": "client_credentials", "scope": ALL_SCOPES}
    with structlog.testing.capture_logs() as logs:
        good, rid = await send(
            client, "POST", "/fhir/auth/token", data=data, auth=(client_id, secret)
        )
        bad, bad_rid = await send(
            client, "POST", "/fhir/auth/token", data=data, auth=(client_id, "no")
        )
    assert good.status_code == 200
    record = await only(app, rid)
    assert (record.action, record.subtype, record.outcome, record.status) == (
        "E",
        "login",
        "0",
        200,
    )
    assert record.bytes_sent == len(good.content)
    # No token yet: the record and the access line name the client the endpoint authenticated.
    assert record.client_id == client_id
    assert bad.status_code == 401
    record = await only(app, bad_rid)
    assert (record.subtype, record.outcome, record.detail) == (
        "login",
        "4",
        "Client authentication failed.",
    )
    assert record.client_id is None  # a failed authentication names nobody
    lines = {e["request_id"]: e for e in logs if e["event"] == "request"}
    assert lines[rid]["client_id"] == client_id
    assert lines[bad_rid]["client_id"] is None


async def test_discovery_is_not_audited_and_request_ids_are_echoed(
    app: Starlette, client: httpx.AsyncClient, writer: Caller
) -> None:
    before = len(await stored(app))
    for path in ["/fhir/metadata", "/fhir/.well-known/smart-configuration", "/outside"]:
        response = await client.get(path, headers={"X-Request-Id": "probe-1"})
        # Not audited, but every response carries its request id (api/observe.py).
        assert response.headers["x-request-id"] == "probe-1"
    assert len(await stored(app)) == before

    plain = await client.get("/fhir/Binary/abc", headers=writer.headers)
    generated = plain.headers["x-request-id"]
    assert str(uuid.UUID(generated)) == generated
    for bad in ["has spaces", "x" * 129, "é"]:
        raw = [
            (b"authorization", f"Bearer {writer.token}".encode()),
            (b"x-request-id", bad.encode()),
        ]
        response = await client.get("/fhir/Binary/abc", headers=raw)
        assert response.headers["x-request-id"] != bad
        uuid.UUID(response.headers["x-request-id"])
    records = await stored(app)
    assert generated in {r.request_id for r in records}
    assert len(records) == before + 4


class FakeIdentity:
    """An external identity provider stand-in that knows one patient-bound token."""

    def __init__(self, real: Any) -> None:
        self.real = real

    async def authenticate(self, token: str, audience: str) -> AccessClaims:
        if token == "patient-1":
            now = int(time.time())
            return AccessClaims(
                client_id="patient-app",
                scope="patient/Binary.rs",
                jti="j",
                issuer="https://idp.example",
                audience=BASE,
                issued_at=now,
                expires_at=now + 300,
                subject="someone",
                patient="1",
            )
        result: AccessClaims = await self.real.authenticate(token, audience)
        return result

    async def close(self) -> None:
        return None


async def test_patient_context_and_404_by_policy_are_recorded(
    app: Starlette, client: httpx.AsyncClient, writer: Caller
) -> None:
    swap_runtime(app, authenticator=FakeIdentity(runtime_of(app).authenticator))
    theirs = await client.post(
        "/fhir/Binary",
        content=b"x",
        headers={
            **writer.headers,
            "Content-Type": "text/plain",
            "X-Security-Context": "Patient/2",
        },
    )
    bid = binary_id(theirs)
    hidden, rid = await send(
        client, "GET", f"/fhir/Binary/{bid}", headers={"Authorization": "Bearer patient-1"}
    )
    assert hidden.status_code == 404
    record = await only(app, rid)
    assert (record.client_id, record.subject, record.patient) == ("patient-app", "someone", "1")
    assert (record.entity, record.outcome, record.status) == (f"Binary/{bid}", "4", 404)


# --- reading the audit trail ----------------------------------------------------------------


async def test_audit_event_search_by_entity_and_date_with_paging(
    app: Starlette, client: httpx.AsyncClient, writer: Caller, auditor: Caller
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    created = await client.post(
        "/fhir/Binary", content=b"x", headers={**writer.headers, "Content-Type": "text/plain"}
    )
    bid = binary_id(created)
    for _ in range(3):
        assert (await client.get(f"/fhir/Binary/{bid}", headers=writer.headers)).status_code == 200
    await client.get("/fhir/Binary/other", headers=writer.headers)  # another entity

    url = f"/fhir/AuditEvent?entity=Binary/{bid}&_count=3"
    first, rid = await send(client, "GET", url, headers=auditor.headers)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("application/fhir+json")
    assert first.headers["cache-control"] == "no-store"
    bundle = first.json()
    assert bundle["type"] == "searchset"
    assert "total" not in bundle
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert links["self"] == f"{BASE}/AuditEvent?entity=Binary%2F{bid}&_count=3"
    events = [entry["resource"] for entry in bundle["entry"]]
    assert len(events) == 3
    assert all(e["resourceType"] == "AuditEvent" for e in events)
    assert [e["subtype"][0]["code"] for e in events] == ["create", "read", "read"]
    assert events[0]["entity"][0]["what"]["reference"] == f"Binary/{bid}/_history/1"
    assert bundle["entry"][0]["fullUrl"] == f"{BASE}/AuditEvent/{events[0]['id']}"
    assert [e["recorded"] for e in events] == sorted(e["recorded"] for e in events)
    agent = events[1]["agent"][0]
    assert agent["who"]["identifier"]["value"] == writer.client_id

    second = await client.get(
        links["next"].removeprefix("http://testserver"), headers=auditor.headers
    )
    assert second.status_code == 200
    more = second.json()
    assert [e["resource"]["subtype"][0]["code"] for e in more["entry"]] == ["read"]
    assert "next" not in {link["relation"] for link in more["link"]}
    ids = [e["id"] for e in events] + [e["resource"]["id"] for e in more["entry"]]
    assert len(set(ids)) == 4

    # The search itself was audited, with its parameters.
    record = await only(app, rid)
    assert (record.action, record.subtype, record.client_id) == (
        "E",
        "search-type",
        auditor.client_id,
    )
    assert record.query == f"entity=Binary%2F{bid}&_count=3"  # as in the self link

    def count(response: httpx.Response) -> int:
        return len(response.json().get("entry", []))

    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    past = start.strftime("%Y-%m-%dT%H:%M:%S") + "Z"
    for query, expected in [
        (f"date=ge{future}", 0),
        (f"date=lt{start.year - 1}", 0),
        (f"date=ge{past}", 4),
        (f"date=ge{past}&date=le{future}", 4),
    ]:
        response = await client.get(
            f"/fhir/AuditEvent?entity=Binary/{bid}&{query}", headers=auditor.headers
        )
        assert response.status_code == 200, response.text
        assert count(response) == expected, query

    everything = await client.get("/fhir/AuditEvent?_count=1000", headers=auditor.headers)
    assert count(everything) >= 8  # tokens, the create, the reads, the searches...


async def test_audit_event_formats_and_read_by_id(
    app: Starlette, client: httpx.AsyncClient, writer: Caller, auditor: Caller
) -> None:
    await client.get("/fhir/Binary/abc", headers=writer.headers)
    xml = await client.get("/fhir/AuditEvent?_format=xml&_count=2", headers=auditor.headers)
    assert xml.status_code == 200
    assert xml.headers["content-type"].startswith("application/fhir+xml")
    root = ElementTree.fromstring(xml.content)
    ns = "{http://hl7.org/fhir}"
    assert root.tag == f"{ns}Bundle"
    entries = root.findall(f"{ns}entry/{ns}resource/{ns}AuditEvent")
    assert len(entries) == 2

    pretty = await client.get("/fhir/AuditEvent?_pretty=true", headers=auditor.headers)
    assert "\n  " in pretty.text
    event = pretty.json()["entry"][0]["resource"]

    one = await client.get(f"/fhir/AuditEvent/{event['id']}", headers=auditor.headers)
    assert one.status_code == 200
    assert one.json() == event
    one_xml = await client.get(
        f"/fhir/AuditEvent/{event['id']}",
        headers={**auditor.headers, "Accept": "application/fhir+xml"},
    )
    assert ElementTree.fromstring(one_xml.content).tag == f"{ns}AuditEvent"
    head = await client.head(f"/fhir/AuditEvent/{event['id']}", headers=auditor.headers)
    assert head.status_code == 200
    missing = await client.get("/fhir/AuditEvent/nope", headers=auditor.headers)
    assert missing.status_code == 404
    bad_id = await client.get("/fhir/AuditEvent/" + "x" * 65, headers=auditor.headers)
    assert bad_id.status_code == 400


@pytest.mark.parametrize(
    "query",
    ["entity=abc", "date=ne2026", "_page=tampered", "entity:Binary=1", "_count=-1"],
)
async def test_bad_audit_event_searches_are_400(
    client: httpx.AsyncClient, auditor: Caller, query: str
) -> None:
    response = await client.get(f"/fhir/AuditEvent?{query}", headers=auditor.headers)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_a_backwards_cursor_is_refused(client: httpx.AsyncClient, auditor: Caller) -> None:
    from fhirbin.fhir.paging import encode_cursor

    cursor = encode_cursor("prev", 1, str(uuid.uuid4()), 1)
    response = await client.get(f"/fhir/AuditEvent?_page={cursor}", headers=auditor.headers)
    assert response.status_code == 400


async def test_reading_the_audit_needs_audit_event_scopes(
    app: Starlette, client: httpx.AsyncClient, writer: Caller, auditor: Caller
) -> None:
    for url in ["/fhir/AuditEvent", "/fhir/AuditEvent/x"]:
        refused = await client.get(url, headers=writer.headers)  # system/Binary.cruds
        assert refused.status_code == 403
        assert "system/AuditEvent." in refused.headers["www-authenticate"]
    anonymous = await client.get("/fhir/AuditEvent")
    assert anonymous.status_code == 401
    search_only = await caller(app, client, "system/AuditEvent.s")
    assert (await client.get("/fhir/AuditEvent", headers=search_only.headers)).status_code == 200
    read = await client.get("/fhir/AuditEvent/x", headers=search_only.headers)
    assert read.status_code == 403
    assert 'scope="system/AuditEvent.r"' in read.headers["www-authenticate"]
    # ... and audit scopes do not open Binaries.
    assert (await client.get("/fhir/Binary/x", headers=auditor.headers)).status_code == 403


# --- the buffered log -------------------------------------------------------------------------


async def test_records_are_flushed_on_shutdown(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auditlog_module, "FLUSH_INTERVAL", 3600.0)  # no timed flush in this test
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            who = await caller(application, c)
            created = await c.post(
                "/fhir/Binary", content=b"x", headers={**who.headers, "Content-Type": "text/plain"}
            )
            read, rid = await send(
                c, "GET", f"/fhir/Binary/{binary_id(created)}", headers=who.headers
            )
            assert read.status_code == 200
        rt = runtime_of(application)
        assert rt.audit.pending >= 2  # the token request and the read, at least
        in_database = await rt.catalogue.search_audit(AuditQuery(limit=1000))
        assert rid not in {r.request_id for r in in_database}
        assert [r.subtype for r in in_database] == ["create"]  # the write's own record
    store = await SqlMetadataStore.open(settings.catalogue_url)
    try:
        after = await store.search_audit(AuditQuery(limit=1000))
    finally:
        await store.close()
    assert [r.request_id for r in after].count(rid) == 1
    assert {r.subtype for r in after} == {"login", "create", "read"}


class ListStore:
    """A MetadataStore stand-in for the AuditLog: keeps batches, or fails when told to."""

    def __init__(self) -> None:
        self.batches: list[list[AuditRecord]] = []
        self.failing = False

    async def add_audit(self, records: Sequence[AuditRecord]) -> None:
        if self.failing:
            raise ConnectionError("database down")
        self.batches.append(list(records))

    @property
    def records(self) -> list[AuditRecord]:
        return [r for batch in self.batches for r in batch]


def a_record(n: int = 0) -> AuditRecord:
    return AuditRecord(
        id=str(uuid.uuid4()),
        recorded=datetime.now(UTC),
        action="R",
        subtype="read",
        outcome="0",
        status=200 + n,
    )


async def test_the_log_flushes_by_size_by_time_and_on_close() -> None:
    store = ListStore()
    by_size = AuditLog(store, interval=3600, batch=3)  # type: ignore[arg-type]
    by_size.start()
    for n in range(3):
        by_size.record(a_record(n))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if store.batches:
            break
    assert [len(b) for b in store.batches] == [3]
    by_size.record(a_record())
    await by_size.close()
    assert len(store.records) == 4
    assert by_size.pending == 0

    timed_store = ListStore()
    timed = AuditLog(timed_store, interval=0.01)  # type: ignore[arg-type]
    timed.start()
    timed.record(a_record())
    for _ in range(100):
        await asyncio.sleep(0.01)
        if timed_store.records:
            break
    assert len(timed_store.records) == 1
    await timed.close()

    batched = ListStore()
    many = AuditLog(batched, batch=2)  # type: ignore[arg-type]
    for n in range(5):
        many.record(a_record(n))
    await many.flush()
    assert [len(b) for b in batched.batches] == [2, 2, 1]
    assert [r.status for r in batched.records] == [200, 201, 202, 203, 204]


async def test_close_stores_what_is_pending_even_after_the_task_was_cancelled() -> None:
    store = ListStore()
    log = AuditLog(store, interval=3600)  # type: ignore[arg-type]
    log.start()
    log.record(a_record())
    assert log._task is not None
    log._task.cancel()  # as a server might at shutdown
    await asyncio.sleep(0)
    await log.close()
    assert len(store.records) == 1


async def test_the_log_keeps_records_while_the_database_is_down() -> None:
    store = ListStore()
    log = AuditLog(store, max_pending=3)  # type: ignore[arg-type]
    store.failing = True
    with structlog.testing.capture_logs() as logs:
        for n in range(5):
            log.record(a_record(n))
        await log.flush()
    assert log.pending == 3
    assert log.dropped == 2
    assert logs[0]["event"] == "audit records could not be stored; will retry"
    assert logs[0]["error"] == "ConnectionError"
    store.failing = False
    with structlog.testing.capture_logs() as logs:
        await log.flush()
    assert [r.status for r in store.records] == [200, 201, 202]
    assert logs == [
        {
            "event": "audit records were dropped: the buffer was full",
            "dropped": 2,
            "log_level": "error",
        }
    ]


async def test_deferred_records_are_built_in_the_flush() -> None:
    store = ListStore()
    log = AuditLog(store)  # type: ignore[arg-type]
    built: list[tuple[int, str]] = []

    def build(n: int, record_id: str) -> AuditRecord | None:
        built.append((n, record_id))
        if n == 1:
            return None  # nothing to record (a write that stored its own)
        if n == 2:
            raise KeyError("a bug in a builder")
        return dataclasses.replace(a_record(n), id=record_id)

    for n in range(4):
        log.defer(build, n)
    log.record(a_record(9))
    assert built == []  # nothing made on the request path
    assert log.pending == 5
    with structlog.testing.capture_logs() as logs:
        await log.flush()
    assert [n for n, _ in built] == [0, 1, 2, 3]
    # Built in order, the ready record kept its place; a failing builder loses its record only.
    assert [r.status for r in store.records] == [200, 203, 209]
    assert [r.id for r in store.records][:2] == [built[0][1], built[3][1]]
    assert logs == [
        {
            "event": "audit records could not be built",
            "lost": 1,
            "error": "KeyError",
            "log_level": "error",
        }
    ]
    assert log.pending == 0


async def test_deferred_records_are_built_once_while_the_database_is_down() -> None:
    store = ListStore()
    log = AuditLog(store)  # type: ignore[arg-type]
    calls = 0

    def build(n: int, record_id: str) -> AuditRecord:
        nonlocal calls
        calls += 1
        return dataclasses.replace(a_record(n), id=record_id)

    store.failing = True
    log.defer(build, 0)
    log.defer(build, 1)
    with structlog.testing.capture_logs():
        await log.flush()
    assert (log.pending, calls, store.records) == (2, 2, [])
    store.failing = False
    await log.flush()
    assert calls == 2  # the retry stores the records built the first time, same ids
    assert [r.status for r in store.records] == [200, 201]


# --- the middleware on its own ----------------------------------------------------------------


@dataclass(frozen=True)
class Parts:
    """The two parts of a Runtime the middleware uses."""

    metrics: Metrics
    audit: AuditLog


async def run_middleware(
    app: Any, path: str = "/fhir/Binary/abc", method: str = "GET", **scope: Any
) -> tuple[list[Message], list[AuditRecord], BaseException | None]:
    store = ListStore()
    log = AuditLog(store)  # type: ignore[arg-type]
    parts = Parts(Metrics(), log)
    middleware = ObserveMiddleware(app, runtime=lambda: cast(Runtime, parts))
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send_(message: Message) -> None:
        sent.append(message)

    full_scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [],
        "query_string": b"",
        "client": ("2001:db8::1", 4000),
        **scope,
    }
    failure: BaseException | None = None
    try:
        await middleware(full_scope, receive, send_)
    except BaseException as exc:
        failure = exc
    await log.flush()
    return sent, store.records, failure


async def test_pathsend_counts_the_content_length() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"123456")],
            }
        )
        await send({"type": "http.response.pathsend", "path": "/dev/null"})

    sent, (record,), failure = await run_middleware(app)
    assert failure is None
    assert record.bytes_sent == 123456
    assert record.source == "2001:db8::1"
    assert (b"x-request-id", record.request_id.encode()) in sent[0]["headers"]  # type: ignore[union-attr]


async def test_verified_claims_name_who() -> None:
    claims = AccessClaims("app", "system/Binary.rs", "j", "iss", "aud", 0, 1, "user-7", "p9")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        context_of(scope).claims = claims
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    _sent, (record,), _failure = await run_middleware(app)
    assert (record.client_id, record.subject, record.patient) == ("app", "user-7", "p9")
    assert (record.outcome, record.status, record.bytes_sent) == ("0", 204, 0)


async def test_failures_are_serious() -> None:
    async def crash(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom with details that are not recorded")

    _sent, (record,), failure = await run_middleware(crash)
    assert isinstance(failure, RuntimeError)  # re-raised for the server's error handler
    assert (record.outcome, record.status, record.detail) == ("8", 500, "Unhandled RuntimeError.")

    async def abort(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"12345", "more_body": True})
        raise OSError("storage failed")

    _sent, (record,), failure = await run_middleware(abort)
    assert isinstance(failure, OSError)
    assert (record.outcome, record.status, record.bytes_sent) == ("8", 200, 5)
    assert record.detail == "The response was aborted after 5 bytes (OSError)."

    async def gone(scope: Scope, receive: Receive, send: Send) -> None:
        raise asyncio.CancelledError

    _sent, (record,), failure = await run_middleware(gone)
    assert isinstance(failure, asyncio.CancelledError)
    assert (record.outcome, record.status) == ("8", 499)

    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    _sent, (record,), _failure = await run_middleware(silent)
    assert (record.outcome, record.status) == ("8", 500)


async def test_what_is_not_audited() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    for path, method in [
        ("/fhir/metadata", "GET"),
        ("/fhir/.well-known/jwks.json", "GET"),
        ("/fhir/Binary", "OPTIONS"),
        ("/elsewhere", "GET"),
        ("/fhirish", "GET"),
    ]:
        sent, records, _failure = await run_middleware(app, path, method)
        assert records == []
        # Not audited, but answered with a request id like every response.
        assert any(name == b"x-request-id" for name, _ in sent[0]["headers"])
    _sent, records, _failure = await run_middleware(app, "/fhir", "GET")
    assert [r.subtype for r in records] == ["operation"]
    _sent, records, _failure = await run_middleware(app, type="lifespan")
    assert records == []


# --- nothing secret, ever -----------------------------------------------------------------------


async def test_no_content_and_no_token_in_audit_records_or_logs(
    app: Starlette,
    client: httpx.AsyncClient,
    writer: Caller,
    auditor: Caller,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = b"TOP-SECRET-CONTENT-4f1c9a"
    secret_b64 = base64.b64encode(secret).decode()
    token = writer.token
    signature = token.rsplit(".", 1)[1]
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs:
        native = await client.post(
            "/fhir/Binary",
            content=secret,
            headers={**writer.headers, "Content-Type": "text/plain"},
        )
        bid = binary_id(native)
        fhir = await client.post(
            "/fhir/Binary",
            json={"resourceType": "Binary", "contentType": "text/plain", "data": secret_b64},
            headers={**writer.headers, "Content-Type": "application/fhir+json"},
        )
        assert fhir.status_code == 201
        await client.get(f"/fhir/Binary/{bid}", headers=writer.headers)
        await client.get(
            f"/fhir/Binary/{bid}", headers={**writer.headers, "Accept": "application/fhir+json"}
        )
        await client.get(f"/fhir/Binary?_id={bid}", headers=writer.headers)
        await client.put(
            f"/fhir/Binary/{bid}",
            content=secret,
            headers={**writer.headers, "Content-Type": "text/plain", "If-Match": 'W/"7"'},
        )
        refused = await client.get(f"/fhir/Binary/{bid}?access_token={token}")
        assert refused.status_code == 400
        tampered = await client.get(
            f"/fhir/Binary/{bid}", headers={"Authorization": f"Bearer {token}x"}
        )
        assert tampered.status_code == 401
        trail = await client.get(
            f"/fhir/AuditEvent?entity=Binary/{bid}&_count=100", headers=auditor.headers
        )
        assert trail.status_code == 200
    await stored(app)
    async with runtime_of(app).catalogue.engine.connect() as connection:  # type: ignore[attr-defined]
        rows = (await connection.execute(select(audit_event))).all()
    assert len(rows) >= 9
    dumped = "\n".join(repr(tuple(row)) for row in rows)
    texts = {
        "audit rows": dumped,
        "AuditEvent search": trail.text,
        "structlog": repr(logs),
        # The test's own HTTP client logs its URLs (a token in one, on purpose): not ours.
        "logging": "\n".join(
            r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
        ),
    }
    for where, text in texts.items():
        for needle in [secret.decode(), secret_b64, token, signature]:
            assert needle not in text, (where, needle[:12])
