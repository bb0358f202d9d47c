"""Fetching and caching JWK Sets: SMART client keys by URL and an external issuer's keys.

A JWK Set comes from an ``https://`` / ``http://`` URL (GET with ``Accept: application/json``,
no redirects followed, at most 512 KiB, 5 s timeout) or from a ``file://`` path. The rules:

- A fetched set is fresh for its ``Cache-Control: max-age`` (minus ``Age``); ``no-store``,
  ``no-cache`` or ``max-age=0`` make it stale at once (SMART client-confidential-asymmetric: the
  server MUST NOT cache beyond the client's Cache-Control, SHOULD cache per it). No header: 5
  minutes. Never longer than an hour, so a key removed from the set stops working within an hour.
  A file is re-read every 5 minutes.
- An unknown ``kid`` (a rotated key) triggers a refetch, at most once a minute per source.
- A failed fetch is not retried for a minute.
- ``floor=True`` (the external issuer): never fetched more than once a minute per source,
  whatever its Cache-Control says; the keys of the last fetch are used meanwhile, and when a
  fetch fails, keys fetched less than an hour ago are still used (stale-if-error).

The clock is injectable (``clock``); caches are per process (each granian worker keeps its own).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread
import httpx
import structlog

from fhirbin.auth.jwks import JwksError, PublicJwk, parse_jwks_text

__all__ = ["MAX_JWKS_BYTES", "JwksCache", "JwksUnavailable", "new_http_client"]

MAX_JWKS_BYTES = 512 * 1024
MIN_INTERVAL = 60.0
DEFAULT_TTL = 300.0
MAX_TTL = 3600.0
MAX_STALE = 3600.0
HTTP_TIMEOUT = 5.0

log = structlog.get_logger("fhirbin.providers")


class JwksUnavailable(Exception):
    """The JWK Set could not be obtained (network, HTTP status, size, not a JWK Set)."""


def new_http_client() -> httpx.AsyncClient:
    """The HTTP client the providers use: short timeouts, no redirects, no cookies kept."""
    return httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False)


@dataclass
class _Entry:
    keys: tuple[PublicJwk, ...] | None  # from the last successful fetch
    attempted_at: float  # last fetch, successful or not
    fresh_until: float
    fetched_at: float  # last successful fetch
    error: str | None = None  # why the last fetch failed, if it did


class JwksCache:
    """JWK Sets by source (URL or file:// path), fetched and cached by the rules above."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        floor: bool = False,
        min_interval: float = MIN_INTERVAL,
    ) -> None:
        self._http = http
        self._clock = clock
        self._floor = floor
        self._min_interval = min_interval
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, anyio.Lock] = {}
        #: How many fetches each source has had (tests count them; cheap to keep).
        self.fetches: dict[str, int] = {}

    async def keys(self, source: str, *, refresh: bool = False) -> tuple[PublicJwk, ...]:
        """The keys of ``source``; ``refresh`` asks for a refetch (an unknown kid was seen).

        Raises JwksUnavailable when there are no keys to give.
        """
        cached = self._cached(source, refresh)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(source, anyio.Lock())
        async with lock:
            # Another request may have fetched while this one waited for the lock.
            cached = self._cached(source, refresh)
            if cached is not None:
                return cached
            return await self._fetch(source)

    def _cached(self, source: str, refresh: bool) -> tuple[PublicJwk, ...] | None:
        """The keys to use without fetching, or None when a fetch is due."""
        entry = self._entries.get(source)
        if entry is None:
            return None
        now = self._clock()
        # Nothing is fetched twice within a minute after a failure or for an unknown kid.
        recent = now - entry.attempted_at < self._min_interval
        if entry.keys is None:  # only failures so far
            if recent:
                raise JwksUnavailable(entry.error or "the JWK Set could not be fetched")
            return None
        if refresh:
            return entry.keys if recent else None
        if now < entry.fresh_until:
            return entry.keys
        if recent:
            if self._floor and now - entry.fetched_at < MAX_STALE:
                return entry.keys
            if entry.error is not None:
                raise JwksUnavailable(entry.error)
        return None

    async def _fetch(self, source: str) -> tuple[PublicJwk, ...]:
        now = self._clock()
        self.fetches[source] = self.fetches.get(source, 0) + 1
        previous = self._entries.get(source)
        try:
            text, ttl = await self._load(source)
            keys = parse_jwks_text(text, strict=False)
        except (JwksUnavailable, JwksError) as exc:
            reason = f"the JWK Set at {source} could not be used: {exc}"
            log.warning("jwks_fetch_failed", source=source, reason=str(exc))
            if previous is None:
                self._entries[source] = _Entry(None, now, now, now, reason)
            else:
                previous.attempted_at = now
                previous.error = reason
            if (
                self._floor
                and previous is not None
                and previous.keys is not None
                and now - previous.fetched_at < MAX_STALE
            ):
                return previous.keys  # stale-if-error (external issuer only)
            raise JwksUnavailable(reason) from None
        self._entries[source] = _Entry(keys, now, now + ttl, now)
        return keys

    async def _load(self, source: str) -> tuple[bytes, float]:
        parts = urlsplit(source)
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise JwksUnavailable("a file:// URL must name a local path")
            path = Path(unquote(parts.path))
            try:
                data = await anyio.to_thread.run_sync(_read_file, path)
            except OSError as exc:
                raise JwksUnavailable(f"cannot read {path}: {exc.strerror}") from None
            return data, DEFAULT_TTL
        if parts.scheme not in ("https", "http"):
            raise JwksUnavailable("only https://, http:// and file:// JWK Set URLs are supported")
        try:
            async with self._http.stream(
                "GET", source, headers={"Accept": "application/json"}
            ) as response:
                if response.status_code != 200:
                    raise JwksUnavailable(f"HTTP status {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise JwksUnavailable(f"larger than {MAX_JWKS_BYTES} bytes")
                ttl = freshness(response.headers.get_list("cache-control"), response.headers)
        except httpx.HTTPError as exc:
            raise JwksUnavailable(f"{type(exc).__name__}: {exc}") from None
        return bytes(body), ttl


def freshness(cache_control: list[str], headers: httpx.Headers) -> float:
    """Seconds a response stays fresh per RFC 9111 §4.2.1 (max-age, less Age), capped."""
    directives: dict[str, str | None] = {}
    for value in cache_control:
        for item in value.split(","):
            name, _, arg = item.strip().partition("=")
            if name:
                directives[name.strip().lower()] = arg.strip().strip('"') or None
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    max_age = directives.get("max-age")
    if max_age is None:
        return DEFAULT_TTL
    try:
        seconds = float(int(max_age))
    except ValueError:
        return 0.0  # RFC 9111 §4.2.1: an invalid max-age is treated as stale
    age_header = headers.get("age")
    if age_header is not None and age_header.strip().isdigit():
        seconds -= int(age_header.strip())
    if not math.isfinite(seconds):
        return 0.0
    return max(0.0, min(seconds, MAX_TTL))


def _read_file(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(MAX_JWKS_BYTES + 1)
    if len(data) > MAX_JWKS_BYTES:
        raise OSError(0, f"larger than {MAX_JWKS_BYTES} bytes")
    return data
