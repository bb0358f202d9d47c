"""The one-step lane for plain reads (api/hotread.py): which requests it answers, and that its
answers are exactly the general path's.

The shared API fixtures set ``revocation_check_interval`` to 0, which keeps every request off
this lane (a client's status is never fresh); these tests use the default-like 60 s. To see
which path answered, the general read handler is replaced by one answering 299 before the
application is built: a 200 can then only have come from the lane.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from fhirbin.api import reads
from fhirbin.api.audit import audit_log
from fhirbin.config import Settings, load_settings
from fhirbin.metadata.base import AuditQuery
from tests.support import ALL_SCOPES, BASE, register, runtime_of, serving

pytestmark = pytest.mark.anyio

GENERAL = 299


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
    return make_settings(tmp_path)


async def general(request: Request) -> Response:
    """Stands in for the general read handler: only says it was called."""
    return Response(status_code=GENERAL)


@pytest.fixture
async def marked_pair(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    monkeypatch.setattr(reads, "read", general)
    async with serving(settings) as pair:
        yield pair


@pytest.fixture
def marked_app(marked_pair: tuple[Starlette, httpx.AsyncClient]) -> Starlette:
    """An application whose general read handler only says it was called."""
    return marked_pair[0]


@pytest.fixture
def marked(marked_pair: tuple[Starlette, httpx.AsyncClient]) -> httpx.AsyncClient:
    return marked_pair[1]


async def token(app: Starlette, client: httpx.AsyncClient, scope: str = ALL_SCOPES) -> str:
    client_id, secret = await register(app, scope)
    answer = await client.post(
        "/fhir/auth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(client_id, secret),
    )
    assert answer.status_code == 200, answer.text
    value: str = answer.json()["access_token"]
    return value


async def create(
    client: httpx.AsyncClient, auth: dict[str, str], body: bytes, content_type: str, **extra: str
) -> str:
    answer = await client.post(
        "/fhir/Binary", content=body, headers={**auth, "Content-Type": content_type, **extra}
    )
    assert answer.status_code == 201, answer.text
    return answer.headers["location"].split("/Binary/")[1].split("/")[0]


async def warm(client: httpx.AsyncClient, auth: dict[str, str], binary_id: str) -> None:
    """One read through the general path: verifies the token and looks the client up."""
    answer = await client.get(f"/fhir/Binary/{binary_id}", headers={**auth, "Range": "bytes=0-0"})
    assert answer.status_code == GENERAL


@pytest.fixture
async def ready(marked_app: Starlette, marked: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    auth = {"Authorization": f"Bearer {await token(marked_app, marked)}"}
    binary_id = await create(marked, auth, b"%PDF-1.4\n%%EOF\n", "application/pdf")
    await warm(marked, auth, binary_id)
    return auth, binary_id


async def test_a_plain_read_with_a_hot_token_is_answered_by_the_lane(
    marked: httpx.AsyncClient, ready: tuple[dict[str, str], str]
) -> None:
    auth, binary_id = ready
    answer = await marked.get(f"/fhir/Binary/{binary_id}", headers=auth)
    assert answer.status_code == 200
    assert answer.content == b"%PDF-1.4\n%%EOF\n"
    assert answer.headers["content-type"] == "application/pdf"
    for accept in ("*/*", "application/pdf", "application/json", "text/html,*/*;q=0.8"):
        answer = await marked.get(f"/fhir/Binary/{binary_id}", headers={**auth, "Accept": accept})
        assert answer.status_code == 200, accept


@pytest.mark.parametrize(
    ("suffix", "headers"),
    [
        ("?_format=json", {}),
        ("?_pretty=true", {}),
        ("", {"Accept": "application/fhir+json"}),
        ("", {"Accept": "application/fhir+xml"}),
        ("", {"Accept": "application/fhir+json; fhirVersion=3.0"}),  # a 406
        ("", {"Range": "bytes=0-3"}),
        ("", {"If-None-Match": 'W/"1"'}),
        ("", {"If-Modified-Since": "Thu, 01 Jan 2099 00:00:00 GMT"}),
        ("", {"If-Range": 'W/"1"'}),
        ("", {"If-Match": 'W/"1"'}),
    ],
)
async def test_anything_but_a_plain_native_read_takes_the_general_path(
    marked: httpx.AsyncClient,
    ready: tuple[dict[str, str], str],
    suffix: str,
    headers: dict[str, str],
) -> None:
    auth, binary_id = ready
    answer = await marked.get(f"/fhir/Binary/{binary_id}{suffix}", headers={**auth, **headers})
    assert answer.status_code == GENERAL


async def test_tokens_that_are_not_hot_or_not_system_wide_take_the_general_path(
    marked_app: Starlette, marked: httpx.AsyncClient, ready: tuple[dict[str, str], str]
) -> None:
    auth, binary_id = ready
    url = f"/fhir/Binary/{binary_id}"
    # A token never verified yet: the general path verifies it (and answers).
    fresh = await token(marked_app, marked)
    assert (await marked.get(url, headers={"Authorization": f"Bearer {fresh}"})).status_code == (
        GENERAL
    )
    # Two Authorization headers, no token, another scheme.
    doubled = httpx.Headers([("Authorization", auth["Authorization"])] * 2)
    assert (await marked.get(url, headers=doubled)).status_code == 400
    assert (await marked.get(url)).status_code == 401
    assert (await marked.get(url, headers={"Authorization": "Basic eDp5"})).status_code == 401
    # A patient-bound token of fhirbin's own, verified once: its access is decided generally.
    runtime = runtime_of(marked_app)
    client_id, _ = await register(marked_app, "patient/Binary.rs")
    patient_token = runtime.issuer.issue(
        audience=BASE, client_id=client_id, scope="patient/Binary.rs", ttl=300
    )
    runtime.verifier.verify(patient_token, BASE)
    await runtime.clients.is_active(client_id)
    answer = await marked.get(url, headers={"Authorization": f"Bearer {patient_token}"})
    assert answer.status_code == GENERAL  # whose handler refuses it (no patient in context)


async def test_unknown_deleted_and_revoked_take_the_general_path(
    marked_app: Starlette, marked: httpx.AsyncClient, ready: tuple[dict[str, str], str]
) -> None:
    auth, binary_id = ready
    assert (await marked.get("/fhir/Binary/unknown-id", headers=auth)).status_code == GENERAL
    assert (await marked.delete(f"/fhir/Binary/{binary_id}", headers=auth)).status_code == 204
    assert (await marked.get(f"/fhir/Binary/{binary_id}", headers=auth)).status_code == GENERAL


async def test_a_revoked_client_leaves_the_lane_once_its_status_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reads, "read", general)
    async with serving(make_settings(tmp_path, revocation_check_interval=0.2)) as (app, c):
        auth = {"Authorization": f"Bearer {await token(app, c)}"}
        binary_id = await create(c, auth, b"x", "text/plain")
        await warm(c, auth, binary_id)
        assert (await c.get(f"/fhir/Binary/{binary_id}", headers=auth)).status_code == 200
        runtime = runtime_of(app)
        claims = runtime.verifier.cached(auth["Authorization"][7:], BASE)
        assert claims is not None
        await runtime.catalogue.revoke_client(claims.client_id, datetime.now(UTC))
        await anyio.sleep(0.3)
        answer = await c.get(f"/fhir/Binary/{binary_id}", headers=auth)
        assert answer.status_code == 401


# --- the lane's answers are the general path's ----------------------------------------------
# (tests/api/conftest.py's ``app`` and ``client``, built from this module's ``settings``)


@pytest.mark.parametrize(
    ("body", "content_type", "extra"),
    [
        (b"%PDF-1.4\n%%EOF\n", "application/pdf", {}),
        (b"<html><p>hello</p></html>", "text/html", {}),
        (bytes(range(256)) * 4, "application/octet-stream", {"X-Security-Context": "Patient/7"}),
        (b"", "text/plain; charset=utf-8", {}),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "image/png", {}),
    ],
)
async def test_the_lane_answers_exactly_what_the_general_path_answers(
    app: Starlette,
    client: httpx.AsyncClient,
    body: bytes,
    content_type: str,
    extra: dict[str, str],
) -> None:
    auth = {"Authorization": f"Bearer {await token(app, client)}"}
    binary_id = await create(client, auth, body, content_type, **extra)
    url = f"/fhir/Binary/{binary_id}"
    # If-None-Match with a tag that never matches: the general path, answering 200.
    general = await client.get(url, headers={**auth, "If-None-Match": '"never"'})
    hot = await client.get(url, headers=auth)
    assert general.status_code == hot.status_code == 200
    assert hot.content == general.content == body

    def comparable(answer: httpx.Response) -> list[tuple[str, str]]:
        return [(k, v) for k, v in answer.headers.multi_items() if k != "x-request-id"]

    assert comparable(hot) == comparable(general)
    assert hot.headers["x-request-id"] != general.headers["x-request-id"]


async def test_a_read_through_the_lane_is_audited_like_any_other(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    auth = {"Authorization": f"Bearer {await token(app, client)}"}
    binary_id = await create(client, auth, b"0123456789", "text/plain")
    url = f"/fhir/Binary/{binary_id}"
    await client.get(url, headers={**auth, "If-None-Match": '"never"'})  # warms the token
    hot = await client.get(url, headers={**auth, "X-Request-Id": "hot-read-1"})
    assert hot.status_code == 200
    assert hot.headers["x-request-id"] == "hot-read-1"
    runtime = runtime_of(app)
    await audit_log(runtime).flush()
    records = await runtime.catalogue.search_audit(AuditQuery(limit=100))
    (record,) = [r for r in records if r.request_id == "hot-read-1"]
    claims = runtime.verifier.cached(auth["Authorization"][7:], BASE)
    assert claims is not None
    assert (record.action, record.subtype, record.outcome, record.status) == ("R", "read", "0", 200)
    assert record.entity == f"Binary/{binary_id}"
    assert record.entity_version == 1
    assert record.client_id == claims.client_id
    assert record.bytes_sent == 10


async def test_a_new_version_is_served_at_once(app: Starlette, client: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"Bearer {await token(app, client)}"}
    binary_id = await create(client, auth, b"one", "text/plain")
    url = f"/fhir/Binary/{binary_id}"
    await client.get(url, headers={**auth, "If-None-Match": '"never"'})
    for n in range(2, 6):
        assert (await client.get(url, headers=auth)).status_code == 200
        body = f"version {n}".encode()
        put = await client.put(url, content=body, headers={**auth, "Content-Type": "text/plain"})
        assert put.status_code == 200
        answer = await client.get(url, headers=auth)
        assert (answer.content, answer.headers["etag"]) == (body, f'W/"{n}"')


async def test_with_rate_limiting_on_every_read_is_counted_by_the_limits(
    tmp_path: Path,
) -> None:
    async with serving(make_settings(tmp_path, rate_limit=1, rate_burst=3)) as (app, c):
        auth = {"Authorization": f"Bearer {await token(app, c)}"}
        binary_id = await create(c, auth, b"x", "text/plain")
        statuses = [
            (await c.get(f"/fhir/Binary/{binary_id}", headers=auth)).status_code for _ in range(4)
        ]
    assert 429 in statuses
