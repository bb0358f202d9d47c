"""JwksCache over real HTTP: Cache-Control, the once-a-minute rules, failures, file:// sets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhirbin.providers.jwks_cache import MAX_JWKS_BYTES, JwksCache, JwksUnavailable, new_http_client
from tests.providers.support import (
    EC_P384,
    RSA_KEY,
    FakeClock,
    LoopbackServer,
    Reply,
    closed_port_url,
    jwk,
    jwks,
    loopback_server,
)

pytestmark = pytest.mark.anyio

PATH = "/jwks.json"


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


def kids(keys: Any) -> list[str | None]:
    return [k.kid for k in keys]


async def test_fetch_sends_accept_json_and_caches_per_max_age(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    server.serve_json(PATH, jwks(jwk(RSA_KEY, "a")), **{"Cache-Control": "public, max-age=120"})
    cache = JwksCache(http, clock=clock)
    url = server.url(PATH)
    assert kids(await cache.keys(url)) == ["a"]
    assert server.seen[0].headers["accept"] == "application/json"
    clock.advance(119)
    await cache.keys(url)
    assert server.hits(PATH) == 1
    clock.advance(2)  # stale now
    await cache.keys(url)
    assert server.hits(PATH) == 2


async def test_age_header_shortens_freshness(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    server.serve_json(
        PATH, jwks(jwk(RSA_KEY, "a")), **{"Cache-Control": "max-age=100", "Age": "90"}
    )
    cache = JwksCache(http, clock=clock)
    await cache.keys(server.url(PATH))
    clock.advance(11)
    await cache.keys(server.url(PATH))
    assert server.hits(PATH) == 2


async def test_no_header_means_five_minutes_and_max_age_is_capped_at_an_hour(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    server.serve_json("/plain", jwks(jwk(RSA_KEY, "a")))
    server.serve_json("/long", jwks(jwk(RSA_KEY, "a")), **{"Cache-Control": "max-age=86400"})
    cache = JwksCache(http, clock=clock)
    for path in ("/plain", "/long"):
        await cache.keys(server.url(path))
    clock.advance(299)
    for path in ("/plain", "/long"):
        await cache.keys(server.url(path))
    assert (server.hits("/plain"), server.hits("/long")) == (1, 1)
    clock.advance(2)
    await cache.keys(server.url("/plain"))
    assert server.hits("/plain") == 2
    clock.advance(3600)
    await cache.keys(server.url("/long"))
    assert server.hits("/long") == 2


async def test_client_keys_honour_no_store(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    # SMART: MUST NOT cache beyond the client's Cache-Control.
    server.serve_json(PATH, jwks(jwk(RSA_KEY, "a")), **{"Cache-Control": "no-store"})
    cache = JwksCache(http, clock=clock)
    for _ in range(3):
        await cache.keys(server.url(PATH))
    assert server.hits(PATH) == 3


async def test_external_keys_are_fetched_at_most_once_a_minute(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    server.serve_json(PATH, jwks(jwk(RSA_KEY, "a")), **{"Cache-Control": "no-store"})
    cache = JwksCache(http, clock=clock, floor=True)
    for _ in range(5):
        await cache.keys(server.url(PATH))
        await cache.keys(server.url(PATH), refresh=True)
        clock.advance(10)
    assert server.hits(PATH) == 1
    clock.advance(11)  # 61 s after the first fetch
    await cache.keys(server.url(PATH))
    assert server.hits(PATH) == 2


async def test_unknown_kid_refresh_at_most_once_a_minute(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    current: dict[str, Any] = jwks(jwk(RSA_KEY, "old"))
    server.serve_json(PATH, lambda: current, **{"Cache-Control": "max-age=3600"})
    cache = JwksCache(http, clock=clock)
    url = server.url(PATH)
    assert kids(await cache.keys(url)) == ["old"]
    # Within the first minute a refresh is not allowed: the set was just fetched.
    current = jwks(jwk(RSA_KEY, "old"), jwk(EC_P384, "new"))
    assert kids(await cache.keys(url, refresh=True)) == ["old"]
    assert server.hits(PATH) == 1
    clock.advance(60)
    assert kids(await cache.keys(url, refresh=True)) == ["old", "new"]
    assert server.hits(PATH) == 2
    # An attacker sending unknown kids cannot make fhirbin fetch more than once a minute.
    for _ in range(10):
        await cache.keys(url, refresh=True)
        clock.advance(5)
    assert server.hits(PATH) == 2


async def test_http_errors_are_unavailable_and_not_retried_for_a_minute(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    server.routes[PATH] = lambda _seen: Reply(500, b"boom")
    cache = JwksCache(http, clock=clock)
    url = server.url(PATH)
    with pytest.raises(JwksUnavailable, match="HTTP status 500"):
        await cache.keys(url)
    with pytest.raises(JwksUnavailable):
        await cache.keys(url)
    assert server.hits(PATH) == 1
    server.serve_json(PATH, jwks(jwk(RSA_KEY, "a")))
    clock.advance(60)
    assert kids(await cache.keys(url)) == ["a"]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(200, b"not json"), "not valid JSON"),
        (Reply.json({"keys": "x"}), "keys"),
        (Reply(302, b"", {"Location": "https://elsewhere.example/jwks"}), "HTTP status 302"),
        (Reply(200, b" " * (MAX_JWKS_BYTES + 1)), "larger than"),
    ],
)
async def test_unusable_answers(
    server: LoopbackServer, http: httpx.AsyncClient, reply: Reply, reason: str
) -> None:
    server.routes[PATH] = lambda _seen: reply
    with pytest.raises(JwksUnavailable, match=reason):
        await JwksCache(http).keys(server.url(PATH))


async def test_unreachable(http: httpx.AsyncClient) -> None:
    with pytest.raises(JwksUnavailable, match="ConnectError"):
        await JwksCache(http).keys(closed_port_url(PATH))


async def test_unsupported_scheme(http: httpx.AsyncClient) -> None:
    with pytest.raises(JwksUnavailable, match="only https"):
        await JwksCache(http).keys("ftp://example.org/jwks")


async def test_external_keys_survive_an_outage_for_an_hour(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    server.serve_json(PATH, jwks(jwk(RSA_KEY, "a")), **{"Cache-Control": "max-age=60"})
    cache = JwksCache(http, clock=clock, floor=True)
    url = server.url(PATH)
    await cache.keys(url)
    server.routes[PATH] = lambda _seen: Reply(503, b"down")
    clock.advance(61)
    assert kids(await cache.keys(url)) == ["a"]  # stale-if-error
    assert server.hits(PATH) == 2
    clock.advance(3600)
    with pytest.raises(JwksUnavailable):
        await cache.keys(url)


async def test_client_keys_do_not_survive_an_outage(
    server: LoopbackServer, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    server.serve_json(PATH, jwks(jwk(RSA_KEY, "a")), **{"Cache-Control": "max-age=60"})
    cache = JwksCache(http, clock=clock)
    url = server.url(PATH)
    await cache.keys(url)
    server.routes[PATH] = lambda _seen: Reply(503, b"down")
    clock.advance(61)
    with pytest.raises(JwksUnavailable):
        await cache.keys(url)
    with pytest.raises(JwksUnavailable):  # and not refetched for a minute
        await cache.keys(url)
    assert server.hits(PATH) == 2


async def test_file_source_is_reread_on_refresh_once_a_minute(
    tmp_path: Path, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    import json

    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(jwk(RSA_KEY, "a"))))
    cache = JwksCache(http, clock=clock, floor=True)
    source = path.as_uri()
    assert kids(await cache.keys(source)) == ["a"]
    path.write_text(json.dumps(jwks(jwk(RSA_KEY, "a"), jwk(EC_P384, "b"))))
    assert kids(await cache.keys(source, refresh=True)) == ["a"]  # within the minute
    clock.advance(60)
    assert kids(await cache.keys(source, refresh=True)) == ["a", "b"]
    assert cache.fetches[source] == 2


async def test_missing_file(tmp_path: Path, http: httpx.AsyncClient) -> None:
    with pytest.raises(JwksUnavailable, match="cannot read"):
        await JwksCache(http).keys((tmp_path / "nope.json").as_uri())


async def test_concurrent_requests_share_one_fetch(
    server: LoopbackServer, http: httpx.AsyncClient
) -> None:
    import anyio

    server.serve_json(PATH, jwks(jwk(RSA_KEY, "a")))
    cache = JwksCache(http)
    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(cache.keys, server.url(PATH))
    assert server.hits(PATH) == 1
