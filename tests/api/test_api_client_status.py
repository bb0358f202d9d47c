"""ClientStatusCache: a client's status looked up at most once per interval, single-flight."""

from __future__ import annotations

import anyio
import pytest

from fhirbin.auth.revocation import ClientStatusCache

pytestmark = pytest.mark.anyio


async def test_status_is_fresh_for_the_interval_then_looked_up_again() -> None:
    lookups: list[str] = []
    active = {"c1": True}

    async def lookup(client_id: str) -> bool:
        lookups.append(client_id)
        return active[client_id]

    cache = ClientStatusCache(lookup, ttl=0.2)
    assert cache.fresh("c1") is None  # never looked up
    assert await cache.is_active("c1") is True
    assert cache.fresh("c1") is True
    assert await cache.is_active("c1") is True
    assert lookups == ["c1"]
    active["c1"] = False  # revoked
    await anyio.sleep(0.25)
    assert cache.fresh("c1") is None
    assert await cache.is_active("c1") is False
    assert cache.fresh("c1") is False
    assert lookups == ["c1", "c1"]


async def test_concurrent_requests_share_one_lookup() -> None:
    lookups = 0
    release = anyio.Event()

    async def lookup(client_id: str) -> bool:
        nonlocal lookups
        lookups += 1
        await release.wait()
        return True

    cache = ClientStatusCache(lookup, ttl=60)
    answers: list[bool] = []

    async def ask() -> None:
        answers.append(await cache.is_active("c1"))

    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(ask)
        await anyio.sleep(0.05)
        release.set()
    assert answers == [True] * 10
    assert lookups == 1
