"""create_app: builds the Starlette application from a Settings value.

No module-level state: everything a request needs hangs off the one ``Runtime`` of the process
(runtime.py, the composition root), opened by the lifespan and kept in ``app.state.runtime``,
closed when the server stops. Tests may hand in a runtime they opened themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from fhirbin.api.errors import error_response, exception_handlers
from fhirbin.api.fastlane import FastLane
from fhirbin.api.limits import LimitsMiddleware
from fhirbin.api.middleware import AuthMiddleware
from fhirbin.api.observe import ObserveMiddleware
from fhirbin.api.routes import routes
from fhirbin.config import Settings
from fhirbin.faults import DependencyUnavailable
from fhirbin.runtime import Runtime, key_refresh_interval, open_runtime

log = structlog.get_logger("fhirbin.app")


async def _refresh_keys(runtime: Runtime) -> None:
    """Keys other nodes made (auth/keyring.py), re-read every revocation check interval."""
    while True:
        await asyncio.sleep(key_refresh_interval(runtime.settings))
        try:
            await runtime.refresh_keys()
        except DependencyUnavailable as fault:  # the next round tries again
            log.warning("signing keys not refreshed", reason=fault.detail)


#: Seconds between two samples of the gauges no request sets (the audit backlog).
GAUGE_INTERVAL = 1.0


async def _every_second(runtime: Runtime) -> None:
    """The audit backlog drains between requests too: sampled here, not per request. The
    request metrics this process added up are handed to prometheus-client (metrics.py). And
    the access lines, written without a flush each (cli.configure_logging), leave standard
    error within a second even when no other request comes."""
    while True:
        runtime.metrics.audit_backlog.set(runtime.audit.pending)
        runtime.metrics.flush()
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        await asyncio.sleep(GAUGE_INTERVAL)


#: What browser apps may send and read across origins (FHIR's headers included).
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Accept",
    "Prefer",
    "If-Match",
    "If-None-Match",
    "If-Modified-Since",
    "If-Range",
    "Range",
    "X-Security-Context",
    "X-Request-Id",
]
CORS_EXPOSED_HEADERS = [
    "ETag",
    "Last-Modified",
    "Location",
    "Content-Location",
    "Content-Range",
    "Content-Disposition",
    "X-Security-Context",
    "X-Request-Id",
    "Retry-After",
    "WWW-Authenticate",
]


def _cors(settings: Settings) -> list[Middleware]:
    """CORS only for the configured origins; none by default (R4 http.html: SHOULD support
    CORS for browser clients — opt in, since PHI should not be readable from any origin)."""
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if not origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "HEAD", "POST", "PUT", "DELETE"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
            allow_credentials=False,
            max_age=600,
        )
    ]


def _fast_lane(settings: Settings, current: Callable[[], Runtime]) -> list[Middleware]:
    """The fast lane for reads and searches (api/fastlane.py); without it when rate limiting
    is on, since LimitsMiddleware must count every request."""
    if settings.rate_limit > 0:
        return []
    return [Middleware(FastLane, runtime=current, max_header_size=settings.max_header_size)]


class _Application(Starlette):
    """Starlette with ``outer`` middleware around its own stack, outside its error handler.

    Starlette's outermost layer (ServerErrorMiddleware, which turns an unexpected exception into
    a 500) wraps every ``send``; the observing middleware, CORS and the fast lane need none of
    it: the lane hands every request it cannot answer cleanly, unexpected errors included, to
    the stack inside, which renders them (api/fastlane.py)."""

    def __init__(self, outer: Sequence[Middleware], **kwargs: Any) -> None:
        self.outer = list(outer)
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        for cls, args, kwargs in reversed(self.outer):
            app = cls(app, *args, **kwargs)
        return app


def create_app(
    settings: Settings, runtime: Runtime | None = None, *, migrate: bool = True
) -> Starlette:
    """The application; its lifespan opens a runtime from ``settings`` (upgrading the schema
    unless ``migrate`` is False) unless one is given (then the caller closes it)."""

    def current() -> Runtime:
        """The runtime in ``app.state`` (tests may swap it for one with other parts)."""
        found: Runtime | None = getattr(app.state, "runtime", None)
        assert found is not None, "the application has not started"
        return found

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened = runtime is None
        opening = await open_runtime(settings, migrate=migrate) if runtime is None else runtime
        app.state.runtime = opening
        opening.audit.start()  # the audit records' background flush (auditlog.py)
        tasks = [
            asyncio.create_task(_refresh_keys(opening)),
            asyncio.create_task(_every_second(opening)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await opening.audit.close()  # flushes the buffered audit records
            opening.metrics.flush()
            if opened:
                await opening.close()

    outer = [
        # Outermost: the request context, metrics, access line and audit record of every
        # request (api/observe.py), the CORS preflights and the fast lane's answers included,
        # and the requests CORS and AuthMiddleware refuse.
        Middleware(ObserveMiddleware, runtime=current),
        *_cors(settings),
        *_fast_lane(settings, current),
    ]
    middleware = [
        Middleware(
            AuthMiddleware,
            authenticator=lambda: current().authenticator,
            clients=lambda: current().clients,
            audience=settings.public_base_url,
            render=error_response,
        ),
        Middleware(
            LimitsMiddleware,
            max_header_size=settings.max_header_size,
            body_timeout=settings.body_timeout,
            rate_limit=settings.rate_limit,
            rate_burst=settings.rate_burst,
            render=error_response,
        ),
    ]
    app = _Application(
        outer,
        routes=routes(),
        middleware=middleware,
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    if runtime is not None:
        app.state.runtime = runtime
    return app
