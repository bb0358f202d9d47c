"""create_app: builds the Starlette application from a Settings value.

No module-level state: everything a request needs hangs off one ``Runtime`` per application,
filled in by the lifespan (open the catalogue and run migrations, open the content store, load or
create the signing key) and closed when the server stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from fhirbin.api.audit import AuditMiddleware, audit_log, start_audit, stop_audit
from fhirbin.api.errors import error_response, exception_handlers
from fhirbin.api.hotread import HotRead
from fhirbin.api.limits import LimitsMiddleware
from fhirbin.api.middleware import AuthMiddleware, ClientStatusCache
from fhirbin.api.routes import routes
from fhirbin.auth.tokens import TokenIssuer, TokenVerifier, load_or_create_signing_key
from fhirbin.config import Settings
from fhirbin.identity.authenticator import Authenticator, build_authenticator
from fhirbin.metadata.base import MetadataStore
from fhirbin.metadata.sql import SqlMetadataStore
from fhirbin.scanning.screener import build_screener
from fhirbin.service import BinaryService
from fhirbin.storage.base import BlobStore
from fhirbin.storage.filesystem import FilesystemBlobStore


@dataclass
class Runtime:
    """What the handlers share; set up by the lifespan, never a module global."""

    settings: Settings
    base_url: str
    _service: BinaryService | None = None
    _issuer: TokenIssuer | None = None
    _verifier: TokenVerifier | None = None
    _clients: ClientStatusCache | None = None
    _authenticator: Authenticator | None = None
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def service(self) -> BinaryService:
        assert self._service is not None, "the application has not started"
        return self._service

    @property
    def issuer(self) -> TokenIssuer:
        assert self._issuer is not None, "the application has not started"
        return self._issuer

    @property
    def verifier(self) -> TokenVerifier:
        assert self._verifier is not None, "the application has not started"
        return self._verifier

    @property
    def authenticator(self) -> Authenticator:
        assert self._authenticator is not None, "the application has not started"
        return self._authenticator

    @property
    def clients(self) -> ClientStatusCache:
        assert self._clients is not None, "the application has not started"
        return self._clients

    @property
    def catalogue(self) -> MetadataStore:
        return self.service.catalogue


async def _open(runtime: Runtime) -> None:
    settings = runtime.settings
    catalogue = await SqlMetadataStore.open(settings.database_url)
    blobs: BlobStore = FilesystemBlobStore(settings.blob_dir)
    runtime._service = BinaryService(
        blobs,
        catalogue,
        max_size=settings.max_binary_size,
        screener=build_screener(settings),
    )
    key = load_or_create_signing_key(settings.signing_key_path)
    issuer = TokenIssuer(key, issuer=runtime.base_url)
    runtime._issuer = issuer
    runtime._verifier = TokenVerifier({issuer.kid: key.public_key()}, issuer=runtime.base_url)
    runtime._authenticator = build_authenticator(settings, runtime._verifier)

    async def active(client_id: str) -> bool:
        client = await catalogue.get_client(client_id)
        return client is not None and client.active

    runtime._clients = ClientStatusCache(active, settings.revocation_check_interval)


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


def _hot_read(runtime: Runtime) -> list[Middleware]:
    """The one-step lane for plain reads (api/hotread.py); without it when rate limiting is on,
    since LimitsMiddleware must count every request."""
    settings = runtime.settings
    if settings.rate_limit > 0:
        return []
    return [Middleware(HotRead, runtime=runtime, max_header_size=settings.max_header_size)]


def create_app(settings: Settings) -> Starlette:
    runtime = Runtime(settings=settings, base_url=settings.public_base_url)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await _open(runtime)
        start_audit(runtime)
        try:
            yield
        finally:
            await stop_audit(runtime)  # flushes the buffered audit records
            await runtime.authenticator.close()
            await runtime.catalogue.close()

    middleware = [
        *_cors(settings),
        # Outside AuthMiddleware, so the requests it refuses are audited too.
        Middleware(AuditMiddleware, log=lambda: audit_log(runtime)),
        *_hot_read(runtime),
        Middleware(
            AuthMiddleware,
            authenticator=lambda: runtime.authenticator,
            clients=lambda: runtime.clients,
            audience=runtime.base_url,
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
    app = Starlette(
        routes=routes(),
        middleware=middleware,
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app
