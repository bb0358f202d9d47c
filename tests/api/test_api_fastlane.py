"""The fast lane (api/fastlane.py): which requests it answers, that its answers are exactly the
general path's, and that a search by a few ids alone (answered by looking each id up,
``BinaryService._search_ids``) answers exactly what the catalogue's query answers.

The shared API fixtures set ``revocation_check_interval`` to 0, which keeps every request off
the lane (a client's status is never fresh); these tests use 60 s. To see which path answered,
the general path's read, vread and search handlers are replaced by ones answering 299 before
the application is built: a 2xx or 3xx other than 299 can then only have come from the lane.
Where the real handlers must answer (the equivalence tests), they are wrapped instead by spies
that note each call, so a test also knows which path gave each answer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from fhirbin.api import reads, searches
from fhirbin.config import Settings, load_settings
from fhirbin.metadata.base import AuditQuery
from fhirbin.runtime import Runtime
from tests.support import ALL_SCOPES, BASE, issued_token, register, runtime_of, serving

pytestmark = pytest.mark.anyio

GENERAL = 299
PDF = b"%PDF-1.4\n%%EOF\n"
Handler = Callable[[Request], Awaitable[Response]]
HANDLERS = ((reads, "read"), (reads, "vread"), (searches, "search"))


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(
        {},
        {
            "data_dir": tmp_path / "data",
            "base_url": BASE,
            "revocation_check_interval": 60,
            "max_binary_size": 1024 * 1024,
            **overrides,
        },
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Used by tests/api/conftest.py's ``app`` and ``client`` too."""
    return make_settings(tmp_path)


async def general(request: Request) -> Response:
    """Stands in for the general path's read, vread and search handlers: only says it ran."""
    return Response(status_code=GENERAL)


@pytest.fixture
async def marked_pair(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    for module, name in HANDLERS:
        monkeypatch.setattr(module, name, general)
    async with serving(settings) as pair:
        yield pair


@pytest.fixture
def marked_app(marked_pair: tuple[Starlette, httpx.AsyncClient]) -> Starlette:
    """An application whose general read, vread and search handlers only say they ran."""
    return marked_pair[0]


@pytest.fixture
def marked(marked_pair: tuple[Starlette, httpx.AsyncClient]) -> httpx.AsyncClient:
    return marked_pair[1]


# --- tokens ---------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def token(app: Starlette, client: httpx.AsyncClient, scope: str = ALL_SCOPES) -> str:
    """A token from the real token endpoint (verified on this node only once it is used)."""
    _, value = await issued_token(app, client, scope)
    return value


def cold(runtime: Runtime, client_id: str, scope: str = ALL_SCOPES) -> str:
    """A new token of a registered client that this node has not verified yet: the lane
    declines it (``verifier.cached`` is None) and the general path verifies it."""
    return runtime.issuer.issue(audience=BASE, client_id=client_id, scope=scope, ttl=300)


async def warm(runtime: Runtime, value: str, client_id: str) -> str:
    """Verify ``value`` on this node and look its client up: the auth middleware's checks,
    remembered, which is what the lane asks for."""
    runtime.verifier.verify(value, BASE)
    assert await runtime.clients.is_active(client_id)
    assert runtime.verifier.cached(value, BASE) is not None
    assert runtime.clients.fresh(client_id) is True
    return value


async def hot(app: Starlette, scope: str = ALL_SCOPES) -> tuple[str, str]:
    """(token, client_id) of a new client, its token already verified on this node."""
    runtime = runtime_of(app)
    client_id, _ = await register(app, scope)
    return await warm(runtime, cold(runtime, client_id, scope), client_id), client_id


async def bound(app: Starlette, patient: str | None, *, fresh: bool = True) -> str:
    """A ``patient/Binary.rs`` token of fhirbin's own, verified on this node and bound to
    ``patient``; with ``fresh`` its client is looked up too, so the lane takes it at once,
    else the general path takes its first request (and looks the client up).

    fhirbin's own tokens carry no patient: ``TokenIssuer.issue`` takes none and the verifier
    reads none (auth/tokens.py ``_claims_from``); only external tokens do, and the verifier
    never remembers those. So a patient-bound token the lane would take cannot be had today;
    this makes one by giving the remembered claims of a verified token a patient. Both paths
    then see the same claims (the general path's authenticator asks the same verifier)."""
    runtime = runtime_of(app)
    client_id, _ = await register(app, "patient/Binary.rs")
    value = cold(runtime, client_id, "patient/Binary.rs")
    runtime.verifier.verify(value, BASE)
    if patient is not None:
        verifier = runtime.verifier
        digest = hashlib.sha256(value.encode()).digest()
        entry = verifier._cache[digest]
        verifier._cache[digest] = replace(entry, claims=replace(entry.claims, patient=patient))
        claims = verifier.cached(value, BASE)
        assert claims is not None
        assert claims.patient == patient
    if fresh:
        await warm(runtime, value, client_id)
    return value


# --- Binaries -------------------------------------------------------------------------------


async def create(
    client: httpx.AsyncClient, auth: dict[str, str], body: bytes, content_type: str, **extra: str
) -> str:
    answer = await client.post(
        "/fhir/Binary", content=body, headers={**auth, "Content-Type": content_type, **extra}
    )
    assert answer.status_code == 201, answer.text
    return answer.headers["location"].split("/Binary/")[1].split("/")[0]


@pytest.fixture
async def ready(marked_app: Starlette, marked: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    """A hot token's headers and a PDF Binary."""
    auth = bearer((await hot(marked_app))[0])
    return auth, await create(marked, auth, PDF, "application/pdf")


# --- 1. what the lane answers ---------------------------------------------------------------

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
LATER = "Thu, 01 Jan 2099 00:00:00 GMT"
EARLIER = "Mon, 01 Jan 2001 00:00:00 GMT"

#: (method, path after /fhir/Binary with {id}, headers, body, status, Content-Type it starts with)
LANE: list[tuple[str, str, dict[str, str], bytes | None, int, str]] = [
    ("GET", "/{id}", {}, None, 200, "application/pdf"),
    ("GET", "/{id}", {"Accept": "*/*"}, None, 200, "application/pdf"),
    ("GET", "/{id}", {"Accept": "application/pdf"}, None, 200, "application/pdf"),
    ("GET", "/{id}", {"Accept": "application/json"}, None, 200, "application/pdf"),
    ("GET", "/{id}", {"Accept": "text/html,*/*;q=0.8"}, None, 200, "application/pdf"),
    ("GET", "/{id}?_format=json", {}, None, 200, "application/fhir+json"),
    ("GET", "/{id}?_format=xml", {}, None, 200, "application/fhir+xml"),
    ("GET", "/{id}?_pretty=true", {}, None, 200, "application/pdf"),
    ("GET", "/{id}?_format=json&_pretty=true", {}, None, 200, "application/fhir+json"),
    ("GET", "/{id}", {"Accept": "application/fhir+json"}, None, 200, "application/fhir+json"),
    ("GET", "/{id}", {"Accept": "application/fhir+xml"}, None, 200, "application/fhir+xml"),
    ("GET", "/{id}?_summary=true", {}, None, 200, "application/pdf"),
    ("GET", "/{id}?_summary=true&_format=json", {}, None, 200, "application/fhir+json"),
    ("GET", "/{id}?_elements=id", {}, None, 200, "application/pdf"),
    ("GET", "/{id}?_elements=id&_format=xml", {}, None, 200, "application/fhir+xml"),
    ("GET", "/{id}", {"Range": "bytes=0-3"}, None, 206, "application/pdf"),
    ("GET", "/{id}", {"Range": "bytes=0-1,4-5"}, None, 206, "multipart/byteranges"),
    ("GET", "/{id}", {"Range": "bytes=0-3", "If-Range": 'W/"1"'}, None, 206, "application/pdf"),
    ("GET", "/{id}", {"Range": "bytes=0-3", "If-Range": 'W/"2"'}, None, 200, "application/pdf"),
    ("GET", "/{id}", {"If-None-Match": 'W/"1"'}, None, 304, ""),
    ("GET", "/{id}?_format=json", {"If-None-Match": 'W/"1"'}, None, 304, ""),
    ("GET", "/{id}", {"If-None-Match": 'W/"2"'}, None, 200, "application/pdf"),
    ("GET", "/{id}", {"If-Modified-Since": LATER}, None, 304, ""),
    ("GET", "/{id}", {"If-Modified-Since": EARLIER}, None, 200, "application/pdf"),
    ("HEAD", "/{id}", {}, None, 200, "application/pdf"),
    ("HEAD", "/{id}?_format=json", {}, None, 200, "application/fhir+json"),
    ("GET", "/{id}/_history/1", {}, None, 200, "application/pdf"),
    ("GET", "/{id}/_history/1?_format=xml", {}, None, 200, "application/fhir+xml"),
    ("HEAD", "/{id}/_history/1", {}, None, 200, "application/pdf"),
    ("GET", "?_id={id}", {}, None, 200, "application/fhir+json"),
    ("GET", "/?_id={id}", {}, None, 200, "application/fhir+json"),
    ("GET", "?_id={id}&_format=xml", {}, None, 200, "application/fhir+xml"),
    ("GET", "?_count=5&_sort=-_lastUpdated", {}, None, 200, "application/fhir+json"),
    ("GET", "", {}, None, 200, "application/fhir+json"),
    ("HEAD", "?_id={id}", {}, None, 200, "application/fhir+json"),
    ("POST", "/_search", FORM, b"_id={id}", 200, "application/fhir+json"),
    ("POST", "/_search?_format=xml", FORM, b"_id={id}", 200, "application/fhir+xml"),
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "status", "content_type"), LANE)
async def test_the_lane_answers_every_read_form_with_a_hot_token(
    marked: httpx.AsyncClient,
    ready: tuple[dict[str, str], str],
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
    status: int,
    content_type: str,
) -> None:
    auth, binary_id = ready
    answer = await marked.request(
        method,
        "/fhir/Binary" + path.format(id=binary_id),
        headers={**auth, **headers},
        content=None if body is None else body.replace(b"{id}", binary_id.encode()),
    )
    assert answer.status_code == status, answer.text
    assert answer.headers.get("content-type", "").startswith(content_type)
    if method == "HEAD" or status == 304:
        assert answer.content == b""
    elif not path.startswith("/{id}"):
        if content_type.endswith("json"):
            bundle = answer.json()
            assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "searchset")
            if "_id=" in path or b"_id=" in (body or b""):
                assert bundle["total"] == 1
                assert bundle["entry"][0]["resource"]["id"] == binary_id
    elif content_type == "application/pdf":
        assert answer.content == (PDF if status == 200 else PDF[:4])
    elif content_type == "application/fhir+json":
        assert (answer.json()["resourceType"], answer.json()["id"]) == ("Binary", binary_id)


async def test_a_patient_token_reads_and_searches_its_own_patients_binaries_on_the_lane(
    marked_app: Starlette, marked: httpx.AsyncClient, ready: tuple[dict[str, str], str]
) -> None:
    auth, _ = ready
    relative = await create(
        marked, auth, b"mine", "text/plain", **{"X-Security-Context": "Patient/7"}
    )
    absolute = await create(
        marked, auth, b"mine too", "text/plain", **{"X-Security-Context": f"{BASE}/Patient/7"}
    )
    theirs = await create(
        marked, auth, b"theirs", "text/plain", **{"X-Security-Context": "Patient/8"}
    )
    patient = bearer(await bound(marked_app, "7"))
    for binary_id, content in ((relative, b"mine"), (absolute, b"mine too")):
        answer = await marked.get(f"/fhir/Binary/{binary_id}", headers=patient)
        assert (answer.status_code, answer.content) == (200, content)
        vread = await marked.get(f"/fhir/Binary/{binary_id}/_history/1", headers=patient)
        assert (vread.status_code, vread.content) == (200, content)
    # The search is the lane's, limited to the patient: the other patient's Binary is left out.
    search = await marked.get(
        f"/fhir/Binary?_id={relative},{absolute},{theirs}&_sort=_lastUpdated", headers=patient
    )
    assert search.status_code == 200
    found = [entry["resource"]["id"] for entry in search.json()["entry"]]
    assert (search.json()["total"], found) == (2, [relative, absolute])
    everything = await marked.post("/fhir/Binary/_search", content=b"", headers={**patient, **FORM})
    assert everything.status_code == 200
    assert {e["resource"]["id"] for e in everything.json()["entry"]} == {relative, absolute}


# --- 2. what the lane leaves to the general path --------------------------------------------


async def test_tokens_the_lane_may_not_trust_take_the_general_path(
    settings: Settings,
    marked_app: Starlette,
    marked: httpx.AsyncClient,
    ready: tuple[dict[str, str], str],
) -> None:
    auth, binary_id = ready
    url = f"/fhir/Binary/{binary_id}"
    runtime = runtime_of(marked_app)
    # A token never verified on this node: the general path verifies it (and answers).
    client_id, _ = await register(marked_app)
    assert (await marked.get(url, headers=bearer(cold(runtime, client_id)))).status_code == GENERAL
    search = await marked.get(
        f"/fhir/Binary?_id={binary_id}", headers=bearer(cold(runtime, client_id))
    )
    assert search.status_code == GENERAL
    # The general path's own refusals, which the lane must not pre-empt.
    doubled = httpx.Headers([("Authorization", auth["Authorization"])] * 2)
    assert (await marked.get(url, headers=doubled)).status_code == 400
    assert (await marked.get(url)).status_code == 401
    assert (await marked.get(url, headers={"Authorization": "Basic eDp5"})).status_code == 401
    token_value = auth["Authorization"][7:]
    in_query = await marked.get(f"{url}?access_token={token_value}", headers=auth)
    assert in_query.status_code == 400
    padding = {"X-Padding": "x" * settings.max_header_size}
    assert (await marked.get(url, headers={**auth, **padding})).status_code == 431
    search = await marked.get(f"/fhir/Binary?_id={binary_id}", headers={**auth, **padding})
    assert search.status_code == 431


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"),
    [
        ("GET", "/unknown-id", {}, None),
        ("GET", "/unknown-id/_history/1", {}, None),
        ("GET", "/{id}/_history/2", {}, None),
        ("GET", "/{id}/_history/x", {}, None),
        ("GET", "/{id}", {"Accept": "application/fhir+json; fhirVersion=3.0"}, None),  # a 406
        ("GET", "/{id}?_format=text/csv", {}, None),
        ("GET", "/{id}?_pretty=maybe&_format=json", {}, None),
        ("GET", "/{id}?_summary=count", {}, None),
        ("GET", "/{id}", {"Range": "bytes=100-200"}, None),  # 416
        ("GET", "?_count=x", {}, None),
        ("GET", "?_sort=_id", {}, None),
        ("GET", "?_lastUpdated=gt2001-01-01,lt2030-01-01", {}, None),
        ("POST", "/_search", FORM, b"_id={id}&" + b"_count=1&" * 500),  # over 4096 bytes
        ("POST", "/_search", {"Content-Type": "application/json"}, b'{"_id": "{id}"}'),
        ("POST", "/_search", {}, b"_id={id}"),  # no Content-Type
        ("POST", "/_search", FORM, b"_count=x"),
    ],
)
async def test_requests_the_lane_cannot_answer_take_the_general_path(
    marked: httpx.AsyncClient,
    ready: tuple[dict[str, str], str],
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
) -> None:
    auth, binary_id = ready
    answer = await marked.request(
        method,
        "/fhir/Binary" + path.format(id=binary_id),
        headers={**auth, **headers},
        content=None if body is None else body.replace(b"{id}", binary_id.encode()),
    )
    assert answer.status_code == GENERAL


async def test_access_refused_to_a_patient_token_is_left_to_the_general_path(
    marked_app: Starlette, marked: httpx.AsyncClient, ready: tuple[dict[str, str], str]
) -> None:
    auth, _ = ready
    theirs = await create(
        marked, auth, b"theirs", "text/plain", **{"X-Security-Context": "Patient/8"}
    )
    unbound = await create(marked, auth, b"nobody's", "text/plain")
    # A patient/ scope with no patient in context: grant() refuses (403 on the general path).
    no_patient = bearer(await bound(marked_app, None))
    for path in (f"/{theirs}", f"/{theirs}/_history/1", f"?_id={theirs}"):
        assert (await marked.get(f"/fhir/Binary{path}", headers=no_patient)).status_code == GENERAL
    # Another patient's Binary, or one bound to nobody: hidden (404 on the general path).
    patient = bearer(await bound(marked_app, "7"))
    for binary_id in (theirs, unbound):
        for path in (f"/{binary_id}", f"/{binary_id}/_history/1", f"/{binary_id}?_format=json"):
            answer = await marked.get(f"/fhir/Binary{path}", headers=patient)
            assert answer.status_code == GENERAL
    # A search simply leaves them out (the lane answers: nothing to refuse).
    search = await marked.get(f"/fhir/Binary?_id={theirs},{unbound}", headers=patient)
    assert (search.status_code, search.json()["total"]) == (200, 0)


async def test_deleted_binaries_take_the_general_path(
    marked: httpx.AsyncClient, ready: tuple[dict[str, str], str]
) -> None:
    auth, binary_id = ready
    assert (await marked.get(f"/fhir/Binary/{binary_id}", headers=auth)).status_code == 200
    assert (await marked.delete(f"/fhir/Binary/{binary_id}", headers=auth)).status_code == 204
    for path in (f"/{binary_id}", f"/{binary_id}?_format=json", f"/{binary_id}/_history/2"):
        assert (await marked.get(f"/fhir/Binary{path}", headers=auth)).status_code == GENERAL
    # Version 1 is still there, and a search leaves the deleted Binary out.
    assert (await marked.get(f"/fhir/Binary/{binary_id}/_history/1", headers=auth)).content == PDF
    search = await marked.get(f"/fhir/Binary?_id={binary_id}", headers=auth)
    assert (search.status_code, search.json()["total"]) == (200, 0)


async def test_a_revoked_client_leaves_the_lane_once_its_status_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module, name in HANDLERS:
        monkeypatch.setattr(module, name, general)
    async with serving(make_settings(tmp_path, revocation_check_interval=0.2)) as (app, c):
        value, client_id = await hot(app)
        auth = bearer(value)
        binary_id = await create(c, auth, b"x", "text/plain")
        assert (await c.get(f"/fhir/Binary/{binary_id}", headers=auth)).status_code == 200
        assert (await c.get(f"/fhir/Binary?_id={binary_id}", headers=auth)).status_code == 200
        await runtime_of(app).catalogue.revoke_client(client_id, datetime.now(UTC))
        await anyio.sleep(0.3)
        assert (await c.get(f"/fhir/Binary/{binary_id}", headers=auth)).status_code == 401
        assert (await c.get(f"/fhir/Binary?_id={binary_id}", headers=auth)).status_code == 401


async def test_with_rate_limiting_on_the_lane_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module, name in HANDLERS:
        monkeypatch.setattr(module, name, general)
    async with serving(make_settings(tmp_path, rate_limit=1, rate_burst=3)) as (app, c):
        auth = bearer((await hot(app))[0])
        binary_id = await create(c, auth, b"x", "text/plain")
        statuses = [
            (await c.get(f"/fhir/Binary/{binary_id}", headers=auth)).status_code for _ in range(4)
        ]
    # Every read reached the limits (one was refused) and the general handler (none from a lane).
    assert statuses.count(429) >= 1
    assert set(statuses) <= {GENERAL, 429}


# --- 3. the lane's answers are the general path's, byte for byte -----------------------------


@pytest.fixture
async def spied(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient, list[str]]]:
    """The real application, its read, vread and search handlers wrapped to note each call."""
    calls: list[str] = []

    def spy(name: str, handler: Handler) -> Handler:
        async def spying(request: Request) -> Response:
            calls.append(name)
            return await handler(request)

        return spying

    for module, name in HANDLERS:
        monkeypatch.setattr(module, name, spy(name, getattr(module, name)))
    async with serving(settings) as (app, http):
        yield app, http, calls


#: (method, path after /fhir/Binary with {id}, headers, body)
MATRIX: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("GET", "/{id}", {}, None),
    ("GET", "/{id}", {"Accept": "text/html,*/*;q=0.8"}, None),
    ("GET", "/{id}?_format=json", {}, None),
    ("GET", "/{id}", {"Accept": "application/fhir+json"}, None),
    ("GET", "/{id}?_format=xml", {}, None),
    ("GET", "/{id}", {"Accept": "application/fhir+xml"}, None),
    ("GET", "/{id}?_format=json&_pretty=true", {}, None),
    ("GET", "/{id}?_format=xml&_pretty=true", {}, None),
    ("GET", "/{id}?_summary=true&_format=json", {}, None),
    ("GET", "/{id}?_summary=true&_format=xml", {}, None),
    ("GET", "/{id}?_elements=id&_format=json", {}, None),
    ("GET", "/{id}?_elements=contentType&_format=xml", {}, None),
    ("GET", "/{id}", {"Range": "bytes=0-3"}, None),
    ("GET", "/{id}", {"Range": "bytes=-2"}, None),
    ("GET", "/{id}", {"Range": "bytes=0-1,4-5"}, None),
    ("GET", "/{id}", {"Range": "bytes=0-3", "If-Range": 'W/"1"'}, None),
    ("GET", "/{id}", {"If-None-Match": 'W/"1"'}, None),
    ("GET", "/{id}?_format=xml", {"If-None-Match": 'W/"1"'}, None),
    ("GET", "/{id}", {"If-Modified-Since": LATER}, None),
    ("HEAD", "/{id}", {}, None),
    ("HEAD", "/{id}?_format=json", {}, None),
    ("GET", "/{id}/_history/1", {}, None),
    ("GET", "/{id}/_history/1?_format=json", {}, None),
    ("GET", "?_id={id}", {}, None),
    ("GET", "?_id={id}&_pretty=true", {}, None),
    ("GET", "/?_id={id}&_format=xml", {}, None),
    ("GET", "?_id={id}&_summary=true", {}, None),
    ("GET", "?_id={id}&_elements=id&_format=xml", {}, None),
    ("HEAD", "?_id={id}", {}, None),
    ("POST", "/_search", FORM, b"_id={id}"),
    ("POST", "/_search?_format=xml", FORM, b"_id={id}&_pretty=true"),
]
BODIES = [
    (PDF, "application/pdf", {}),
    (b"<html><p>hello</p></html>", "text/html", {}),
    (bytes(range(256)) * 4, "application/octet-stream", {"X-Security-Context": "Patient/7"}),
    (b"", "text/plain; charset=utf-8", {}),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "image/png", {}),
]
_BOUNDARY = re.compile(r"boundary=([^\s;]+)")


def comparable(answer: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers (all but X-Request-Id, in order) and body; a multipart/byteranges
    boundary, drawn anew for every answer, reads BOUNDARY."""
    headers = [(k, v) for k, v in answer.headers.multi_items() if k != "x-request-id"]
    body = answer.content
    found = _BOUNDARY.search(answer.headers.get("content-type", ""))
    if found is not None:
        boundary = found.group(1)
        headers = [(k, v.replace(boundary, "BOUNDARY")) for k, v in headers]
        body = body.replace(boundary.encode(), b"BOUNDARY")
    return answer.status_code, headers, body


@pytest.mark.parametrize(("content", "content_type", "extra"), BODIES)
async def test_the_lane_answers_exactly_what_the_general_path_answers(
    spied: tuple[Starlette, httpx.AsyncClient, list[str]],
    content: bytes,
    content_type: str,
    extra: dict[str, str],
) -> None:
    app, client, calls = spied
    runtime = runtime_of(app)
    value, client_id = await hot(app)
    auth = bearer(value)
    binary_id = await create(client, auth, content, content_type, **extra)

    async def ask(
        method: str, path: str, headers: dict[str, str], body: bytes | None, token: str
    ) -> tuple[httpx.Response, bool]:
        """The answer, and whether the general path's handler gave it."""
        before = len(calls)
        answer = await client.request(
            method,
            "/fhir/Binary" + path.format(id=binary_id),
            headers={**bearer(token), **headers},
            content=None if body is None else body.replace(b"{id}", binary_id.encode()),
        )
        return answer, len(calls) > before

    for method, path, headers, body in MATRIX:
        # The lane first (it renders and remembers), the general path, then the lane again.
        first, first_general = await ask(method, path, headers, body, value)
        general, general_general = await ask(method, path, headers, body, cold(runtime, client_id))
        again, again_general = await ask(method, path, headers, body, value)
        case = (method, path, headers)
        assert general_general, case
        # Any error falls through to the general path: the lane gives only successes.
        assert first_general == again_general == (general.status_code >= 400), case
        assert comparable(first) == comparable(general) == comparable(again), case
        assert first.headers["x-request-id"] != general.headers["x-request-id"]
        if (method, general.status_code) == ("GET", 200) and general.headers.get(
            "content-type"
        ) == content_type:
            assert general.content == content, case


async def test_a_patient_tokens_answers_are_the_same_on_both_paths(
    spied: tuple[Starlette, httpx.AsyncClient, list[str]],
) -> None:
    app, client, calls = spied
    auth = bearer((await hot(app))[0])
    mine = await create(client, auth, b"mine", "text/plain", **{"X-Security-Context": "Patient/7"})
    theirs = await create(
        client, auth, b"theirs", "text/plain", **{"X-Security-Context": "Patient/8"}
    )
    paths = [
        f"/{mine}",
        f"/{mine}?_format=json",
        f"/{mine}/_history/1",
        f"/{theirs}",
        f"?_id={mine},{theirs}",
        "?_sort=-_lastUpdated",
    ]
    for path in paths:
        # Its client not looked up yet, the token's first request takes the general path.
        patient = bearer(await bound(app, "7", fresh=False))
        before = len(calls)
        general = await client.get(f"/fhir/Binary{path}", headers=patient)
        assert len(calls) == before + 1, path
        lane = await client.get(f"/fhir/Binary{path}", headers=patient)
        assert (len(calls) == before + 2) == (general.status_code >= 400), path
        assert comparable(lane) == comparable(general), path
        assert general.status_code == (404 if path == f"/{theirs}" else 200), path


async def test_a_form_body_the_lane_read_reaches_the_general_path_whole(
    spied: tuple[Starlette, httpx.AsyncClient, list[str]],
) -> None:
    """The lane reads a small POSTed form and declines (a bad parameter): the general path
    reads the same body again and refuses what it says."""
    app, client, calls = spied
    auth = bearer((await hot(app))[0])
    binary_id = await create(client, auth, PDF, "application/pdf")
    answer = await client.post(
        "/fhir/Binary/_search",
        content=f"_id={binary_id}&_count=x".encode(),
        headers={**auth, **FORM},
    )
    assert calls == ["search"]
    assert answer.status_code == 400
    assert "_count" in answer.text


# --- 4. a search by ids alone answers what the catalogue's query answers ----------------------


def entries(bundle: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(entry["fullUrl"], entry["resource"]) for entry in bundle.get("entry", [])]


async def test_a_search_by_ids_alone_answers_what_the_catalogues_query_answers(
    spied: tuple[Starlette, httpx.AsyncClient, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``?_id=…`` alone is answered by looking each id up (service._search_ids); the same
    search with a ``_lastUpdated`` that keeps everything takes the catalogue's query. Both must
    give the same entries, in the same order, and the same total."""
    app, client, _ = spied
    runtime = runtime_of(app)
    auth = bearer((await hot(app))[0])
    text = {**auth, "Content-Type": "text/plain"}

    async def put(binary_id: str, body: bytes, context: str | None = None) -> str:
        headers = {**text, **({"X-Security-Context": context} if context else {})}
        answer = await client.put(f"/fhir/Binary/{binary_id}", content=body, headers=headers)
        assert answer.status_code in (200, 201), answer.text
        return binary_id

    ids = [
        await put("plain", b"a"),
        await put("mine", b"b", "Patient/1"),
        await put("theirs", b"c", "Patient/2"),
        await put("mine-absolute", b"d", f"{BASE}/Patient/1"),
        await put("deleted", b"e"),
        await put("mine-deleted", b"f", "Patient/1"),
        await put("updated", b"g", "Patient/1"),
    ]
    # Some written at the very same instant: the order is then the id's, by code point.
    real_clock = runtime.service.clock
    instant = real_clock()
    monkeypatch.setattr(runtime.service, "clock", lambda: instant)
    ids += [
        await put("tie-b", b"h"),
        await put("Tie-B", b"i", "Patient/1"),
        await put("tie-a", b"j", "Patient/1"),
        await put("0-tie", b"k"),
    ]
    monkeypatch.setattr(runtime.service, "clock", real_clock)
    for binary_id in ("deleted", "mine-deleted"):
        assert (await client.delete(f"/fhir/Binary/{binary_id}", headers=auth)).status_code == 204
    await put("updated", b"g2", "Patient/1")
    await put("plain", b"a2")
    named = ",".join([*ids, "never-stored"])

    searches_made: list[object] = []
    real_search = runtime.catalogue.search

    async def counted(query: Any) -> Any:
        searches_made.append(query)
        return await real_search(query)

    monkeypatch.setattr(runtime.catalogue, "search", counted)

    async def both(query: str, headers: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        searches_made.clear()
        by_ids = await client.get(f"/fhir/Binary?{query}", headers=headers)
        assert by_ids.status_code == 200, by_ids.text
        assert searches_made == [], query  # looked up id by id
        by_query = await client.get(
            f"/fhir/Binary?{query}&_lastUpdated=gt1900-01-01", headers=headers
        )
        assert by_query.status_code == 200, by_query.text
        counting = "_summary=count" in query or "_count=0" in query
        assert len(searches_made) == (0 if counting else 1), query
        return by_ids.json(), by_query.json()

    patient = bearer(await bound(app, "1"))
    for headers, expected in ((auth, 9), (patient, 5)):
        for extra in ("", "&_sort=_lastUpdated", "&_sort=-_lastUpdated", "&_summary=true"):
            looked_up, queried = await both(f"_id={named}{extra}", headers)
            assert looked_up["total"] == queried["total"] == expected, extra
            assert entries(looked_up) == entries(queried), extra
            assert len(entries(looked_up)) == expected
        looked_up, queried = await both(f"_id={named}&_total=none", headers)
        assert "total" not in looked_up
        assert "total" not in queried
        assert entries(looked_up) == entries(queried)
        for extra in ("&_summary=count", "&_count=0"):
            looked_up, queried = await both(f"_id={named}{extra}", headers)
            assert looked_up["total"] == queried["total"] == expected, extra
            assert entries(looked_up) == entries(queried) == [], extra
        # Two _id parameters: the ids named by both.
        looked_up, queried = await both("_id=plain,mine,tie-a&_id=mine,tie-a,theirs", headers)
        assert looked_up["total"] == queried["total"] == 2
        assert entries(looked_up) == entries(queried)

    # Paging one at a time: the first page by lookup, the next ones (a cursor) by query.
    for headers in (auth, patient):
        for order in ("_lastUpdated", "-_lastUpdated"):
            pages: list[list[list[tuple[str, Any]]]] = []
            for extra in ("", "&_lastUpdated=gt1900-01-01"):
                found = []
                answer = await client.get(
                    f"/fhir/Binary?_id={named}&_count=1&_sort={order}{extra}", headers=headers
                )
                while True:
                    bundle = answer.json()
                    found.append(entries(bundle))
                    following = [x["url"] for x in bundle["link"] if x["relation"] == "next"]
                    if not following:
                        break
                    answer = await client.get(following[0], headers=headers)
                    assert answer.status_code == 200
                pages.append(found)
            assert pages[0] == pages[1], order
            assert all(len(page) == 1 for page in pages[0])
            assert len(pages[0]) == (9 if headers is auth else 5)


# --- 5. the lane's answers are audited like any other ----------------------------------------


async def test_reads_and_searches_through_the_lane_are_audited_like_any_other(
    spied: tuple[Starlette, httpx.AsyncClient, list[str]],
) -> None:
    app, client, calls = spied
    runtime = runtime_of(app)
    value, client_id = await hot(app)
    auth = bearer(value)
    binary_id = await create(client, auth, b"0123456789", "text/plain")
    assert (
        await client.put(
            f"/fhir/Binary/{binary_id}",
            content=b"012345",
            headers={**auth, "Content-Type": "text/plain"},
        )
    ).status_code == 200
    requests: list[tuple[str, str, dict[str, str], bytes | None]] = [
        ("GET", f"/{binary_id}", {}, None),
        ("GET", f"/{binary_id}/_history/1", {}, None),
        ("HEAD", f"/{binary_id}?_format=json", {}, None),
        ("GET", f"?_id={binary_id}&_count=5&ignored=1", {}, None),
        ("POST", "/_search", FORM, f"_id={binary_id}".encode()),
    ]
    answers = {}
    for n, (method, path, headers, body) in enumerate(requests):
        answer = await client.request(
            method,
            f"/fhir/Binary{path}",
            headers={**auth, **headers, "X-Request-Id": f"lane-{n}"},
            content=body,
        )
        assert answer.status_code == 200
        assert answer.headers["x-request-id"] == f"lane-{n}"
        answers[f"lane-{n}"] = answer
    assert calls == []  # every one answered by the lane
    await runtime.audit.flush()
    records = {
        r.request_id: r
        for r in await runtime.catalogue.search_audit(AuditQuery(limit=1000))
        if r.request_id is not None and r.request_id.startswith("lane-")
    }
    assert sorted(records) == [f"lane-{n}" for n in range(len(requests))]
    expected = {
        "lane-0": ("R", "read", f"Binary/{binary_id}", 2, None, 6),
        "lane-1": ("R", "vread", f"Binary/{binary_id}", 1, None, 10),
        "lane-2": ("R", "read", f"Binary/{binary_id}", 2, None, 0),
        "lane-3": ("E", "search-type", None, None, f"_id={binary_id}&_count=5", None),
        "lane-4": ("E", "search-type", None, None, f"_id={binary_id}", None),
    }
    for request_id, (action, subtype, entity, version, query, sent) in expected.items():
        record = records[request_id]
        assert (record.action, record.subtype, record.outcome, record.status) == (
            action,
            subtype,
            "0",
            200,
        ), request_id
        assert (record.entity, record.entity_version, record.query) == (entity, version, query)
        assert (record.client_id, record.subject, record.patient) == (client_id, client_id, None)
        assert record.bytes_sent == (len(answers[request_id].content) if sent is None else sent)


async def test_a_patient_tokens_lane_read_is_audited_with_its_patient(
    spied: tuple[Starlette, httpx.AsyncClient, list[str]],
) -> None:
    app, client, calls = spied
    runtime = runtime_of(app)
    auth = bearer((await hot(app))[0])
    binary_id = await create(
        client, auth, b"x", "text/plain", **{"X-Security-Context": "Patient/7"}
    )
    patient = bearer(await bound(app, "7"))
    answer = await client.get(
        f"/fhir/Binary/{binary_id}", headers={**patient, "X-Request-Id": "lane-patient"}
    )
    assert (answer.status_code, calls) == (200, [])
    await runtime.audit.flush()
    (record,) = [
        r
        for r in await runtime.catalogue.search_audit(AuditQuery(limit=1000))
        if r.request_id == "lane-patient"
    ]
    assert (record.entity, record.entity_version, record.patient) == (
        f"Binary/{binary_id}",
        1,
        "7",
    )


async def test_a_new_version_is_served_at_once(
    spied: tuple[Starlette, httpx.AsyncClient, list[str]],
) -> None:
    app, client, calls = spied
    auth = bearer((await hot(app))[0])
    binary_id = await create(client, auth, b"one", "text/plain")
    url = f"/fhir/Binary/{binary_id}"
    for n in range(2, 6):
        assert (await client.get(url, headers=auth)).status_code == 200
        assert (await client.get(f"{url}?_format=json", headers=auth)).status_code == 200
        body = f"version {n}".encode()
        put = await client.put(url, content=body, headers={**auth, "Content-Type": "text/plain"})
        assert put.status_code == 200
        answer = await client.get(url, headers=auth)
        assert (answer.content, answer.headers["etag"]) == (body, f'W/"{n}"')
        fhir = (await client.get(f"{url}?_format=json", headers=auth)).json()
        assert fhir["meta"]["versionId"] == str(n)
        search = (await client.get(f"/fhir/Binary?_id={binary_id}", headers=auth)).json()
        assert search["entry"][0]["resource"]["meta"]["versionId"] == str(n)
    assert calls == []
