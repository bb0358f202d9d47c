"""RFC 7662 introspection over real HTTP: the request, the positive-only cache, failures."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from fhirbin.errors import Unauthorized
from fhirbin.providers.introspection import Introspector
from fhirbin.providers.jwks_cache import new_http_client
from tests.providers.support import (
    FakeClock,
    LoopbackServer,
    Reply,
    Seen,
    closed_port_url,
    loopback_server,
)

pytestmark = pytest.mark.anyio

PATH = "/introspect"
AUD = "https://fhir.example.org/fhir"


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with loopback_server() as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with new_http_client() as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def introspector(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock, ttl: int = 30
) -> Introspector:
    return Introspector(
        server.url(PATH), "fhir:bin", "s3cret", http=http, cache_ttl=ttl, clock=clock
    )


def answering(server: LoopbackServer, value: Any) -> None:
    server.routes[PATH] = lambda _seen: Reply.json(value() if callable(value) else value)


def active(clock: FakeClock, **extra: Any) -> dict[str, Any]:
    return {
        "active": True,
        "scope": "system/Binary.rs",
        "client_id": "app",
        "exp": int(clock.now) + 300,
        **extra,
    }


async def test_request_shape(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    answering(server, active(clock, patient="p-9"))
    claims = await introspector(server, http, clock).introspect("opaque-1", AUD)
    assert (claims.client_id, claims.scope, claims.patient) == ("app", "system/Binary.rs", "p-9")
    (seen,) = server.seen
    assert seen.method == "POST"
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    assert seen.headers["accept"] == "application/json"
    # RFC 6749 §2.3.1: form-urlencoded id and secret, then Basic.
    assert (
        seen.headers["authorization"] == "Basic " + base64.b64encode(b"fhir%3Abin:s3cret").decode()
    )
    assert parse_qs(seen.body.decode()) == {
        "token": ["opaque-1"],
        "token_type_hint": ["access_token"],
    }


async def test_active_answers_are_cached_for_the_ttl(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    answering(server, lambda: active(clock))
    checker = introspector(server, http, clock, ttl=30)
    for _ in range(3):
        await checker.introspect("opaque-1", AUD)
        clock.advance(9)
    assert server.hits(PATH) == 1
    clock.advance(4)  # 31 s after the first answer
    await checker.introspect("opaque-1", AUD)
    assert server.hits(PATH) == 2


async def test_the_cache_never_outlives_exp(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    answering(server, active(clock, exp=int(clock.now) + 10))
    checker = introspector(server, http, clock, ttl=300)
    await checker.introspect("opaque-1", AUD)
    clock.advance(11)  # past exp (but within the 5 s leeway): asked again, not cached
    await checker.introspect("opaque-1", AUD)
    assert server.hits(PATH) == 2
    clock.advance(5)
    with pytest.raises(Unauthorized, match="expired"):
        await checker.introspect("opaque-1", AUD)
    assert server.hits(PATH) == 3


async def test_negative_answers_are_not_cached(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    state = {"active": False}
    answering(server, lambda: active(clock) if state["active"] else {"active": False})
    checker = introspector(server, http, clock)
    for _ in range(2):
        with pytest.raises(Unauthorized, match="not active"):
            await checker.introspect("opaque-1", AUD)
    state["active"] = True
    assert (await checker.introspect("opaque-1", AUD)).client_id == "app"
    assert server.hits(PATH) == 3


async def test_zero_ttl_disables_the_cache(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    answering(server, active(clock))
    checker = introspector(server, http, clock, ttl=0)
    await checker.introspect("t", AUD)
    await checker.introspect("t", AUD)
    assert server.hits(PATH) == 2


async def test_audience_is_checked_on_cache_hits_too(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    answering(server, active(clock, aud=AUD))
    checker = introspector(server, http, clock)
    await checker.introspect("t", AUD)
    with pytest.raises(Unauthorized, match="aud"):
        await checker.introspect("t", "https://other.example/fhir")


def _status(status: int) -> Any:
    return lambda _seen: Reply(status, b"{}")


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        (_status(401), "answered HTTP 401"),
        (_status(500), "answered HTTP 500"),
        (lambda _seen: Reply(200, b"<html>"), "not JSON"),
        (lambda _seen: Reply(200, b"[" + b"1," * 40000 + b"1]"), "more than"),
    ],
)
async def test_failures_are_401(
    server: LoopbackServer,
    http: httpx.AsyncClient,
    clock: FakeClock,
    route: Any,
    reason: str,
) -> None:
    server.routes[PATH] = route
    with pytest.raises(Unauthorized, match=reason) as info:
        await introspector(server, http, clock).introspect("t", AUD)
    assert info.value.error == "invalid_token"


async def test_unreachable_endpoint_is_401(http: httpx.AsyncClient) -> None:
    checker = Introspector(closed_port_url(PATH), "", "", http=http, cache_ttl=30)
    with pytest.raises(Unauthorized, match="did not answer"):
        await checker.introspect("t", AUD)


async def test_no_credentials_no_authorization_header(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    answering(server, active(clock))
    checker = Introspector(server.url(PATH), "", "", http=http, cache_ttl=30, clock=clock)
    await checker.introspect("t", AUD)
    seen: Seen = server.seen[0]
    assert "authorization" not in seen.headers
