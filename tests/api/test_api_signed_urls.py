"""Signed URLs through the real app, on both deployments (docs/api.md, "Signed URLs";
docs/decisions.md#signed-urls).

``$signed-url`` answers a Parameters resource whose URL serves one version's native bytes
without a token, exactly as a native read does (Range, conditional requests, HEAD, the
safe-serving headers), until it expires; any change to it is a 403, a deletion a 410, an
expunge a 404; the read is audited as the asking client's vread, without the signature.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from defusedxml import ElementTree
from starlette.applications import Starlette

from fhirbin.auth import signed_urls
from fhirbin.config import Settings
from fhirbin.metadata.base import AuditQuery, AuditRecord
from fhirbin.runtime import rotate_keys, stored_keys
from fhirbin.security.serving import SANDBOX_CSP
from tests.api.conftest import BACKENDS, TokenFactory
from tests.security import samples
from tests.support import BASE, register, runtime_of, serving

pytestmark = pytest.mark.anyio

ORIGIN = "https://viewer.example.org"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # active content is stored on purpose, to see how a signed URL serves it
    return dataclasses.replace(settings, allow_expunge=True, inspect="off")


async def client_token(app: Starlette, client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    """A new client holding every Binary scope: its id and its Authorization headers."""
    client_id, secret = await register(app, "system/Binary.cruds")
    answer = await client.post(
        "/fhir/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/Binary.cruds"},
        auth=(client_id, secret),
    )
    return client_id, {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def upload(
    client: httpx.AsyncClient, auth: dict[str, str], body: bytes, content_type: str = "text/plain"
) -> str:
    response = await client.post(
        "/fhir/Binary", content=body, headers={**auth, "Content-Type": content_type}
    )
    assert response.status_code == 201, response.text
    return str(response.headers["location"].removeprefix(f"{BASE}/Binary/").split("/")[0])


async def signed(client: httpx.AsyncClient, auth: dict[str, str], path: str) -> str:
    """The URL ``GET path/$signed-url`` answers, relative to the test server."""
    response = await client.get(f"{path}/$signed-url", headers=auth)
    assert response.status_code == 200, response.text
    url = response.json()["parameter"][0]["valueUrl"]
    assert url.startswith(BASE + "/")
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def outcome_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return str(body["issue"][0]["code"])


_PER_REQUEST = {"date", "x-request-id", "content-type", "content-length", "content-range"}


def comparable(response: httpx.Response) -> dict[str, str]:
    """The headers that must be the same on a signed and a token read."""
    return {k: v for k, v in response.headers.items() if k not in _PER_REQUEST}


async def test_the_operation_answers_parameters_with_an_absolute_url_and_its_expiry(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await upload(client, auth, b"a discharge summary\n")
    before = int(time.time())
    response = await client.get(f"/fhir/Binary/{binary_id}/$signed-url", headers=auth)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["resourceType"] == "Parameters"
    (url,) = [p["valueUrl"] for p in body["parameter"] if p["name"] == "url"]
    (expires,) = [p["valueInstant"] for p in body["parameter"] if p["name"] == "expires"]
    assert url.startswith(f"{BASE}/Binary/{binary_id}/_history/1/$signed-content?sig=")
    left = datetime.fromisoformat(expires).timestamp() - before
    assert 299 <= left <= 301  # FHIRBIN_SIGNED_URL_TTL's default, 300 s
    xml = await client.get(
        f"/fhir/Binary/{binary_id}/$signed-url", headers={**auth, "Accept": "application/fhir+xml"}
    )
    assert xml.status_code == 200
    assert xml.headers["content-type"].startswith("application/fhir+xml")
    root = ElementTree.fromstring(xml.content)
    assert root.tag == "{http://hl7.org/fhir}Parameters"
    values = root.findall("{*}parameter/{*}valueUrl")
    assert len(values) == 1
    assert values[0].get("value", "").startswith(f"{BASE}/Binary/{binary_id}/_history/1/")


async def test_the_url_serves_the_bytes_without_a_token_with_a_native_reads_headers(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await upload(client, auth, samples.HTML, "text/html")
    url = await signed(client, auth, f"/fhir/Binary/{binary_id}")
    served = await client.get(url)
    assert served.status_code == 200
    assert served.content == samples.HTML
    assert served.headers["content-type"] == "text/html"
    normal = await client.get(f"/fhir/Binary/{binary_id}/_history/1", headers=auth)
    assert comparable(served) == comparable(normal)
    # the safe-serving headers of security/serving.py, CORP included (no origins configured)
    assert served.headers["content-security-policy"] == SANDBOX_CSP
    assert served.headers["content-disposition"].startswith("attachment;")
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.headers["cross-origin-resource-policy"] == "same-origin"


async def test_the_url_is_bound_to_its_version_when_the_binary_changes(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await upload(client, auth, b"version one")
    first = await signed(client, auth, f"/fhir/Binary/{binary_id}")
    update = await client.put(
        f"/fhir/Binary/{binary_id}",
        content=b"version two",
        headers={**auth, "Content-Type": "text/plain"},
    )
    assert update.status_code == 200
    old = await client.get(first)
    assert (old.status_code, old.content, old.headers["etag"]) == (200, b"version one", 'W/"1"')
    second = await signed(client, auth, f"/fhir/Binary/{binary_id}")
    assert "/_history/2/" in second
    new = await client.get(second)
    assert (new.content, new.headers["etag"]) == (b"version two", 'W/"2"')
    # a URL for a version named explicitly
    again = await signed(client, auth, f"/fhir/Binary/{binary_id}/_history/1")
    assert (await client.get(again)).content == b"version one"


async def test_range_conditional_requests_and_head_work_as_on_a_normal_read(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await upload(client, auth, b"0123456789")
    url = await signed(client, auth, f"/fhir/Binary/{binary_id}")
    vread = f"/fhir/Binary/{binary_id}/_history/1"
    cases: list[tuple[str, dict[str, str]]] = [
        ("GET", {"Range": "bytes=2-5"}),
        ("GET", {"Range": "bytes=1-2,7-8"}),
        ("GET", {"Range": "bytes=50-60"}),
        ("GET", {"If-None-Match": 'W/"1"'}),
        ("GET", {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}),
        ("HEAD", {}),
    ]
    for method, headers in cases:
        by_url = await client.request(method, url, headers=headers)
        by_token = await client.request(method, vread, headers={**auth, **headers})
        assert by_url.status_code == by_token.status_code, (method, headers)
        if by_url.status_code < 400:
            assert comparable(by_url) == comparable(by_token), (method, headers)
        if by_url.status_code != 206 or "," not in headers.get("Range", ""):
            assert by_url.content == by_token.content, (method, headers)  # not the boundary
    ranged = await client.get(url, headers={"Range": "bytes=2-5"})
    assert (ranged.status_code, ranged.content) == (206, b"2345")
    assert ranged.headers["content-range"] == "bytes 2-5/10"
    assert (await client.get(url, headers={"Range": "bytes=50-60"})).status_code == 416
    assert (await client.get(url, headers={"If-None-Match": 'W/"1"'})).status_code == 304
    head = await client.head(url)
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "10")


async def test_any_change_to_the_url_is_a_403_outcome(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await upload(client, auth, b"first")
    other_id = await upload(client, auth, b"second")
    url = await signed(client, auth, f"/fhir/Binary/{binary_id}")
    other = await signed(client, auth, f"/fhir/Binary/{other_id}")
    path, sig = url.split("?sig=")
    other_sig = other.split("?sig=")[1]
    head, claims, signature = sig.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    access_token = auth["Authorization"].removeprefix("Bearer ")
    altered = [
        path.replace(binary_id, other_id) + "?sig=" + sig,  # another Binary
        path.replace("/_history/1/", "/_history/2/") + "?sig=" + sig,  # another version
        path.replace("/_history/1/", "/_history/01/") + "?sig=" + sig,
        path + "?sig=" + other_sig,  # another Binary's signature
        path + "?sig=" + ".".join([head, claims, flipped]),  # a forged signature
        path + "?sig=" + sig + "&sig=" + sig,
        path + "?sig=" + sig + "&_format=json",
        path + "?sig=",
        path,
        path + "?sig=" + access_token,  # an access token is not a signature
    ]
    for changed in altered:
        response = await client.get(changed)
        assert response.status_code == 403, changed
        assert outcome_code(response) == "forbidden"
        assert "www-authenticate" not in response.headers
        assert sig not in response.text
    # nor is a signature an access token
    as_bearer = await client.get(
        f"/fhir/Binary/{binary_id}", headers={"Authorization": f"Bearer {sig}"}
    )
    assert as_bearer.status_code == 401
    assert (await client.get(url)).status_code == 200  # the genuine URL still works


async def test_an_expired_url_or_one_living_too_long_is_a_403(
    app: Starlette, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await upload(client, auth, b"soon gone")
    rt = runtime_of(app)
    path = f"/fhir{signed_urls.content_path(binary_id, 1)}"

    def sig(ttl: int, made: int) -> str:
        value, _ = signed_urls.sign(
            rt.issuer,
            base_url=rt.base_url,
            binary_id=binary_id,
            version=1,
            client_id="someone",
            ttl=ttl,
            now=made,
        )
        return value

    now = int(time.time())
    expired = await client.get(f"{path}?sig={sig(300, now - 301)}")
    assert expired.status_code == 403
    assert "expired" in expired.json()["issue"][0]["diagnostics"]
    assert outcome_code(expired) == "forbidden"
    # signed with the server's own key, but for longer than FHIRBIN_SIGNED_URL_TTL allows
    too_long = await client.get(f"{path}?sig={sig(3600, now)}")
    assert too_long.status_code == 403
    assert (await client.get(f"{path}?sig={sig(300, now)}")).status_code == 200


async def test_a_delete_ends_the_url_with_410_and_an_expunge_with_404(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await upload(client, auth, b"to be deleted")
    url = await signed(client, auth, f"/fhir/Binary/{binary_id}")
    assert (await client.delete(f"/fhir/Binary/{binary_id}", headers=auth)).status_code == 204
    gone = await client.get(url)
    assert gone.status_code == 410
    assert outcome_code(gone) == "deleted"
    made_after = await client.get(f"/fhir/Binary/{binary_id}/$signed-url", headers=auth)
    assert made_after.status_code == 410
    erased = await client.post(f"/fhir/Binary/{binary_id}/$expunge", headers=auth)
    assert erased.status_code == 200
    unknown = await client.get(url)
    assert unknown.status_code == 404
    assert outcome_code(unknown) == "not-found"


async def test_making_a_url_needs_a_token_that_may_read_the_binary(
    client: httpx.AsyncClient, token_for: TokenFactory, auth: dict[str, str]
) -> None:
    binary_id = await upload(client, auth, b"private")
    operation = f"/fhir/Binary/{binary_id}/$signed-url"
    assert (await client.get(operation)).status_code == 401
    writer = {"Authorization": f"Bearer {await token_for('system/Binary.cud')}"}
    refused = await client.get(operation, headers=writer)
    assert refused.status_code == 403
    assert outcome_code(refused) == "forbidden"
    assert (await client.get("/fhir/Binary/nope/$signed-url", headers=auth)).status_code == 404
    missing = await client.get(f"/fhir/Binary/{binary_id}/_history/9/$signed-url", headers=auth)
    assert missing.status_code == 404
    # POST is not the operation's method
    assert (await client.post(operation, headers=auth)).status_code == 405


async def audit_records(app: Starlette) -> list[AuditRecord]:
    rt = runtime_of(app)
    await rt.audit.flush()
    return await rt.catalogue.search_audit(AuditQuery(limit=100_000))


async def test_the_read_is_audited_as_the_asking_clients_vread_without_the_signature(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    client_id, auth = await client_token(app, client)
    binary_id = await upload(client, auth, b"audited content")
    url = await signed(client, auth, f"/fhir/Binary/{binary_id}")
    sig = url.split("?sig=")[1]
    assert (await client.get(url, headers={"X-Request-Id": "signed-read-1"})).status_code == 200
    refused = await client.get(url, headers={"Range": "bytes=99-", "X-Request-Id": "signed-416"})
    assert refused.status_code == 416
    records = {r.request_id: r for r in await audit_records(app)}
    for request_id, status in (("signed-read-1", 200), ("signed-416", 416)):
        record = records[request_id]
        assert (record.action, record.subtype, record.status) == ("R", "vread", status)
        assert (record.entity, record.entity_version) == (f"Binary/{binary_id}", 1)
        assert record.client_id == client_id
        assert record.query is None
    made = [r for r in records.values() if r.subtype == "operation" and r.entity]
    assert [(r.entity, r.entity_version, r.client_id) for r in made] == [
        (f"Binary/{binary_id}", 1, client_id)
    ]
    stored = " ".join(repr(r) for r in records.values())
    assert sig not in stored
    assert sig.split(".")[2] not in stored
    # The metrics (and the access line) count the served read as the vread it is.
    exposition = runtime_of(app).metrics.exposition().decode()
    assert 'fhirbin_requests_total{interaction="vread",status="200"} 1.0' in exposition
    assert 'fhirbin_requests_total{interaction="vread",status="416"} 1.0' in exposition


async def test_listed_origins_may_embed_signed_answers_and_nothing_else_changes(
    settings: Settings,
) -> None:
    listed = dataclasses.replace(settings, cors_origins=f"{ORIGIN}, https://other.example.org")
    async with serving(listed) as (app, client):
        _, auth = await client_token(app, client)
        binary_id = await upload(client, auth, samples.PNG, "image/png")
        url = await signed(client, auth, f"/fhir/Binary/{binary_id}")
        embedded = await client.get(url, headers={"Origin": ORIGIN})
        assert embedded.status_code == 200
        assert embedded.headers["cross-origin-resource-policy"] == "cross-origin"
        assert embedded.headers["access-control-allow-origin"] == ORIGIN
        normal = await client.get(f"/fhir/Binary/{binary_id}", headers={**auth, "Origin": ORIGIN})
        assert normal.headers["cross-origin-resource-policy"] == "same-origin"
        differing = {
            k
            for k in comparable(embedded).keys() | comparable(normal).keys()
            if embedded.headers.get(k) != normal.headers.get(k)
        }
        assert differing == {"cross-origin-resource-policy"}
        # an origin not listed gets no CORS grant (the CORP header cannot name origins)
        stranger = await client.get(url, headers={"Origin": "https://evil.example.com"})
        assert stranger.status_code == 200
        assert "access-control-allow-origin" not in stranger.headers
        ranged = await client.get(url, headers={"Range": "bytes=0-7"})
        assert ranged.headers["cross-origin-resource-policy"] == "cross-origin"
        assert ranged.content == samples.PNG[:8]


async def test_a_key_rotation_ends_no_url(
    app: Starlette, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """URLs made with the old key still open after a new key signs (docs/decisions.md#signed-urls:
    the ring keeps verifying with every key); new URLs are signed with the new key."""
    binary_id = await upload(client, auth, b"across a rotation")
    before = await signed(client, auth, f"/fhir/Binary/{binary_id}")
    rt = runtime_of(app)
    new = await rotate_keys(rt.catalogue)
    # as every node does once the new key is older than the activation delay
    rt.keys.load(
        await stored_keys(rt.catalogue, rt.settings), datetime.now(UTC) + timedelta(minutes=1)
    )
    assert rt.issuer.kid == new.kid
    after = await signed(client, auth, f"/fhir/Binary/{binary_id}")
    assert jwt.get_unverified_header(after.split("?sig=")[1])["kid"] == new.kid
    assert jwt.get_unverified_header(before.split("?sig=")[1])["kid"] != new.kid
    for url in (before, after):
        served = await client.get(url)
        assert (served.status_code, served.content) == (200, b"across a rotation")
