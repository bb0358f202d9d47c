"""ClientStatusCache: whether a client is still active, as every node learns it.

A revoked client's tokens must stop working on every node; each node re-reads a client's status
from the shared catalogue at most every ``FHIRBIN_REVOCATION_CHECK_INTERVAL`` seconds, so a
revocation takes effect everywhere within that interval. Pure: the lookup is the caller's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class ClientStatusCache:
    """Whether a client is still active, re-read from the catalogue at most every ``ttl`` s.

    Single-flight: when an entry expires under load, one lookup runs and every request for that
    client awaits it, instead of each starting its own query (which queued 64 connections'
    worth of queries behind the pool every ``ttl`` seconds: the read path's p99).
    """

    def __init__(self, lookup: Callable[[str], Awaitable[bool]], ttl: float) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._seen: dict[str, tuple[bool, float]] = {}
        self._pending: dict[str, asyncio.Future[bool]] = {}

    def fresh(self, client_id: str) -> bool | None:
        """What is known of the client, if it was looked up less than ``ttl`` s ago."""
        hit = self._seen.get(client_id)
        if hit is not None and time.monotonic() - hit[1] < self._ttl:
            return hit[0]
        return None

    async def is_active(self, client_id: str) -> bool:
        known = self.fresh(client_id)
        if known is not None:
            return known
        pending = self._pending.get(client_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending[client_id] = future
        try:
            active = await self._lookup(client_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        finally:
            del self._pending[client_id]
        future.set_result(active)
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[client_id] = (active, time.monotonic())
        return active
