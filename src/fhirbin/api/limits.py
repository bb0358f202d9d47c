"""Limits against abusive or broken clients: header size, stalled bodies, request rates.

- Headers larger than ``max_header_size`` in total → 431 (RFC 6585 §5) before anything else.
- A request body that stalls longer than ``body_timeout`` seconds between two chunks → 408
  (RFC 9110 §15.5.9), so a slow client cannot hold an upload (and its temp file) open forever.
  The time to send the headers is bounded by the server (granian's header read timeout).
- More than ``rate_limit`` requests per second from one client (its token's client_id, else its
  address), beyond a burst of ``rate_burst`` → 429 with Retry-After (RFC 6585 §4). A token
  bucket per client, per server process; off when ``rate_limit`` is 0.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhirbin.api.context import context_of
from fhirbin.errors import FhirbinError, RequestTimeout, TooManyRequests

Render = Callable[[Exception, Scope], ASGIApp]


class HeaderTooLarge(FhirbinError):
    status = 431
    code = "too-long"


class LimitsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_header_size: int,
        body_timeout: float,
        rate_limit: int,
        rate_burst: int,
        render: Render,
    ) -> None:
        self.app = app
        self.max_header_size = max_header_size
        self.body_timeout = body_timeout
        self.render = render
        self.buckets = TokenBuckets(rate_limit, rate_burst) if rate_limit > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            size = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > self.max_header_size:
                raise HeaderTooLarge(
                    f"The request headers ({size} bytes) exceed this server's limit of "
                    f"{self.max_header_size} bytes."
                )
            if self.buckets is not None:
                wait = self.buckets.take(_client_key(scope))
                if wait > 0:
                    raise TooManyRequests(
                        "Too many requests from this client; slow down.",
                        retry_after=max(1, math.ceil(wait)),
                    )
        except FhirbinError as exc:
            await self.render(exc, scope)(scope, receive, send)
            return
        await self.app(scope, self._timed(receive), send)

    def _timed(self, receive: Receive) -> Receive:
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:  # after the body only a disconnect can come: no deadline
                return await receive()
            # asyncio.timeout, not anyio.fail_after: a body arrives in thousands of messages
            # and anyio's cancel scope per message cut a 1 GiB upload's receive rate from
            # ~1.6 to ~1.1 GiB/s (measured on granian); the server runs on asyncio anyway.
            try:
                async with asyncio.timeout(self.body_timeout):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"The request body stalled for more than {self.body_timeout:g} seconds."
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        return timed_receive


def _client_key(scope: Scope) -> str:
    claims = context_of(scope).claims
    if claims is not None:
        return f"client:{claims.client_id}"
    client = scope.get("client")
    return f"addr:{client[0]}" if client else "addr:unknown"


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens a second, holding at most ``burst``."""

    def __init__(self, rate: int, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(max(burst, 1))
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """Take one token; 0 if granted, else the seconds until one is available."""
        now = self.clock()
        tokens, last = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._store(key, tokens - 1, now)
            return 0.0
        self._store(key, tokens, now)
        return (1 - tokens) / self.rate

    def _store(self, key: str, tokens: float, now: float) -> None:
        if len(self.buckets) > 100_000:  # idle clients are full buckets: forgetting them is free
            self.buckets.clear()
        self.buckets[key] = (tokens, now)
