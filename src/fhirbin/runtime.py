"""The composition root: everything fhirbin runs on, built from Settings in one place.

``open_runtime`` chooses the catalogue by ``FHIRBIN_DATABASE_URL`` (empty: the embedded SQLite
file; ``postgresql://``: PostgreSQL) and the content store by ``FHIRBIN_STORAGE_URL`` (empty: a
local folder; ``s3://``: a bucket), wraps the store in the small-content cache, and builds the
screener, the token keys, the verifier and the authenticator. The web application (through its
lifespan), every CLI command and the tests use the same frozen ``Runtime``; only this module and
``cli.py`` read settings, and only this module decides which backend serves.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from fhirbin.auditlog import AuditLog
from fhirbin.auth.keyfile import load_or_create_signing_key
from fhirbin.auth.keyring import KeyMaterial, KeyRing, material_of, new_key_material
from fhirbin.auth.revocation import ClientStatusCache
from fhirbin.auth.tokens import TokenIssuer, TokenVerifier
from fhirbin.config import Settings, SettingsError
from fhirbin.faults import DependencyUnavailable, OutOfSpace
from fhirbin.inspection.inspector import Inspector
from fhirbin.inspection.rules import Limits, parse_rules
from fhirbin.metadata.base import MetadataStore, SigningKeyRecord
from fhirbin.metadata.sql import SqlMetadataStore
from fhirbin.metrics import Metrics
from fhirbin.providers.assertion_verifier import ClientAssertions
from fhirbin.providers.authenticator import Authenticator
from fhirbin.providers.external_idp import ExternalTokens
from fhirbin.providers.introspection import Introspector
from fhirbin.providers.jwks_cache import JwksCache, new_http_client
from fhirbin.scanning.clamd import ClamdAddress, ping
from fhirbin.scanning.screener import Screener
from fhirbin.security.policy import TypePolicy, parse_types
from fhirbin.security.sniff import check_libmagic
from fhirbin.service import BinaryService
from fhirbin.storage.base import BlobStore
from fhirbin.storage.cached import CachedBlobStore
from fhirbin.storage.filesystem import FilesystemBlobStore

# --- the parts built from settings (leaf packages receive plain values) ----------------------


def type_policy(settings: Settings) -> TypePolicy:
    """The content-type rules of FHIRBIN_DENY_TYPES, FHIRBIN_ALLOW_TYPES, FHIRBIN_TYPE_MISMATCH."""
    return TypePolicy(
        deny=parse_types(settings.deny_types, "FHIRBIN_DENY_TYPES"),
        allow=parse_types(settings.allow_types, "FHIRBIN_ALLOW_TYPES"),
        reject_mismatch=settings.type_mismatch == "reject",
    )


def build_authenticator(
    settings: Settings,
    own: TokenVerifier,
    *,
    clock: Callable[[], float] = time.time,
    http: httpx.AsyncClient | None = None,
) -> Authenticator:
    """The authenticator ``settings`` ask for; ``clock`` and ``http`` are for tests."""
    if settings.external_issuer and not settings.external_jwks:
        raise SettingsError("FHIRBIN_EXTERNAL_ISSUER is set but FHIRBIN_EXTERNAL_JWKS is not")
    client = http if http is not None else new_http_client()
    external = None
    if settings.external_issuer:
        external = ExternalTokens(
            settings.external_issuer,
            settings.external_jwks,
            JwksCache(client, clock=clock, floor=True),
            clock=clock,
        )
    introspection = None
    if settings.introspection_url:
        introspection = Introspector(
            settings.introspection_url,
            settings.introspection_client_id,
            settings.introspection_client_secret,
            http=client,
            cache_ttl=settings.introspection_cache_ttl,
            clock=clock,
        )
    return Authenticator(
        own,
        assertions=ClientAssertions(JwksCache(client, clock=clock), clock=clock),
        http=client,
        external=external,
        introspection=introspection,
        audience=settings.audience,
    )


def build_screener(
    settings: Settings, verdicts: Callable[[str], None] | None = None
) -> Screener | None:
    """The screener the settings ask for; None when there is nothing to check. ``verdicts``
    hears each screening outcome (metrics.VERDICTS).

    Bad values (an unparsable FHIRBIN_CLAMAV or type list) raise SettingsError at start-up.
    """
    policy = type_policy(settings)
    clamd = clamd_address(settings)
    if clamd is None and not policy.sniffs and not policy.allow:
        return None
    check_libmagic()  # each worker fails at start, saying what is missing, not at an upload
    return Screener(
        policy=policy,
        clamd=clamd,
        fail_open=settings.clamav_fail_open,
        timeout=float(settings.clamav_timeout),
        verdicts=verdicts,
    )


def clamd_address(settings: Settings) -> ClamdAddress | None:
    return ClamdAddress.parse(settings.clamav) if settings.clamav.strip() else None


#: Seconds a readiness check waits for clamd's PONG.
CLAMD_CHECK_TIMEOUT = 3.0

#: The environment variable prometheus-client reads for its multiprocess folder.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def build_metrics(environ: Mapping[str, str]) -> Metrics:
    """Per-process metrics, summed across the workers when ``serve`` set a multiprocess folder."""
    folder = environ.get(MULTIPROC_ENV, "").strip()
    return Metrics(Path(folder) if folder else None)


def build_inspector(
    settings: Settings, verdicts: Callable[[str], None] | None = None
) -> Inspector | None:
    """The deep inspection FHIRBIN_INSPECT asks for (None when off); an unknown rule in
    FHIRBIN_INSPECT_ALLOW is a SettingsError at start-up. ``verdicts`` hears each refusal."""
    if settings.inspect == "off":
        return None
    try:
        allowed = parse_rules(settings.inspect_allow, "FHIRBIN_INSPECT_ALLOW")
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    check_libmagic()
    limits = Limits(
        zip_max_expanded=settings.inspect_zip_max_expanded,
        zip_max_ratio=settings.inspect_zip_max_ratio,
        zip_max_depth=settings.inspect_zip_max_depth,
        max_pixels=settings.inspect_max_pixels,
        allowed=allowed,
    )
    return Inspector(limits, spool_dir=settings.data_dir / "tmp", verdicts=verdicts)


def uses_embedded_catalogue(settings: Settings) -> bool:
    return not settings.database_url.strip()


def uses_local_content(settings: Settings) -> bool:
    return not settings.storage_url.strip()


def describe(settings: Settings) -> str:
    """Where this deployment keeps its data, for start-up lines and CLI output (no secrets)."""
    from fhirbin.metadata.engine import database_display

    catalogue = (
        f"SQLite {settings.database_path.resolve()}"
        if uses_embedded_catalogue(settings)
        else database_display(settings.database_url)
    )
    content = (
        str(settings.blob_dir.resolve())
        if uses_local_content(settings)
        else settings.storage_url.strip()
    )
    return f"catalogue {catalogue}; content {content}"


async def open_catalogue(settings: Settings, *, migrate: bool = True) -> SqlMetadataStore:
    """The catalogue ``FHIRBIN_DATABASE_URL`` names, its schema upgraded unless ``migrate`` is
    False (on PostgreSQL under a lock, so that nodes starting together take turns)."""
    if uses_embedded_catalogue(settings):
        _private_folder(settings.data_dir)
    return await SqlMetadataStore.open(settings.catalogue_url, migrate=migrate)


def accel_redirect(settings: Settings) -> tuple[str, Path] | None:
    """FHIRBIN_ACCEL_REDIRECT's prefix and the blob folder it names files under; None when it
    is off or the content is not in a local folder (an S3 store has no file for nginx)."""
    if not settings.accel_redirect or settings.storage_url.strip():
        return None
    return settings.accel_redirect, settings.blob_dir


def open_content_store(settings: Settings, environ: Mapping[str, str]) -> BlobStore:
    """The content store ``FHIRBIN_STORAGE_URL`` names (not cached; see ``open_runtime``)."""
    url = settings.storage_url.strip()
    if not url:
        _private_folder(settings.data_dir)
        return FilesystemBlobStore(settings.blob_dir)
    if url.startswith("s3://"):
        from fhirbin.storage.s3 import S3BlobStore

        return S3BlobStore.from_url(
            url, endpoint_url=settings.s3_endpoint_url.strip() or None, env=environ
        )
    raise SettingsError(
        f"FHIRBIN_STORAGE_URL: {url!r} is neither empty (a local folder) nor s3://bucket/prefix"
    )


#: What a data folder of fhirbin's holds; a folder holding anything else is not tightened.
_OWN_ENTRIES = frozenset({"fhirbin.db", "fhirbin.db-wal", "fhirbin.db-shm", "fhirbin.db-changes",
                          "blobs", "signing-key.pem"})  # fmt: skip


def _private_folder(folder: Path) -> None:
    # Health data: the data folder belongs to the service user alone (docs/operations.md),
    # also when an operator made it beforehand with the usual 0755. A folder that holds other
    # things (FHIRBIN_DATA_DIR=/srv, say) is left as it is.
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_mode & 0o077 and {e.name for e in folder.iterdir()} <= _OWN_ENTRIES:
        folder.chmod(0o700)


async def stored_keys(catalogue: MetadataStore, settings: Settings) -> list[KeyMaterial]:
    """The token signing keys: the mounted file when ``FHIRBIN_SIGNING_KEY`` names one, else
    the catalogue's, made on first start (a key file of an older release is taken over)."""
    path = settings.signing_key_path
    if path is not None:
        return [material_of(load_or_create_signing_key(path), datetime.now(UTC))]

    def first() -> SigningKeyRecord:
        legacy = settings.legacy_signing_key_path
        if legacy.exists():
            material = material_of(load_or_create_signing_key(legacy), datetime.now(UTC))
        else:
            material = new_key_material(datetime.now(UTC))
        return _record(material)

    await catalogue.ensure_signing_key(first)
    return [_material(record) for record in await catalogue.signing_keys()]


def _record(material: KeyMaterial) -> SigningKeyRecord:
    return SigningKeyRecord(material.kid, material.private_pem, material.created_at)


def _material(record: SigningKeyRecord) -> KeyMaterial:
    return KeyMaterial(record.kid, record.private_pem, record.created_at)


async def rotate_keys(catalogue: MetadataStore) -> KeyMaterial:
    """Add a new signing key to the catalogue (``fhirbin keys rotate``); nodes sign with it once
    every node has seen it (auth/keyring.py)."""
    material = new_key_material(datetime.now(UTC))
    await catalogue.add_signing_key(_record(material))
    return material


def key_refresh_interval(settings: Settings) -> float:
    """Seconds between two readings of the shared signing keys: the revocation check interval,
    but at least a second (an interval of 0 checks revocation on every request; keys need no
    such haste, and re-reading them in a loop would only burn a core)."""
    return max(float(settings.revocation_check_interval), 1.0)


@dataclass(frozen=True)
class Runtime:
    """Everything a request or a command needs; made by ``open_runtime``, closed by ``close``."""

    settings: Settings
    base_url: str
    catalogue: MetadataStore
    blobs: CachedBlobStore
    service: BinaryService
    keys: KeyRing
    verifier: TokenVerifier
    authenticator: Authenticator
    clients: ClientStatusCache
    #: buffered audit records; the web app starts and stops its background writer
    audit: AuditLog
    metrics: Metrics
    #: the virus scanner, when FHIRBIN_CLAMAV names one (checked for readiness)
    clamd: ClamdAddress | None = None

    @property
    def issuer(self) -> TokenIssuer:
        """The token issuer of the key that signs now."""
        return self.keys.signer

    async def refresh_keys(self) -> None:
        """Take keys made by other nodes (``fhirbin keys rotate``); run every few seconds."""
        if self.settings.signing_key_path is not None:
            return
        self.keys.load(
            [_material(r) for r in await self.catalogue.signing_keys()], datetime.now(UTC)
        )
        self.verifier.trust(self.keys.public_keys)

    async def check(self) -> dict[str, str]:
        """The dependencies that cannot serve now, each with what is wrong; empty when ready."""
        failing: dict[str, str] = {}
        try:
            await self.catalogue.check()
        except (DependencyUnavailable, OutOfSpace) as fault:
            failing["database"] = fault.detail
        try:
            await self.blobs.check()
        except (DependencyUnavailable, OutOfSpace) as fault:
            failing["content store"] = fault.detail
        if self.clamd is not None and not await ping(self.clamd, CLAMD_CHECK_TIMEOUT):
            failing["virus scanner"] = "clamd does not answer PING"
        return failing

    async def close(self) -> None:
        try:
            await self.authenticator.close()
        finally:
            try:
                await self.blobs.close()
            finally:
                await self.catalogue.close()


async def open_runtime(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    *,
    migrate: bool = True,
    metrics: Metrics | None = None,
) -> Runtime:
    """Open the stores and build everything on them (see the module docstring)."""
    env = os.environ if environ is None else environ
    # Every node keeps its temporary files (spooled FHIR JSON bodies) in the data folder, even
    # when the catalogue and the content live elsewhere.
    _private_folder(settings.data_dir)
    catalogue = await open_catalogue(settings, migrate=migrate)
    try:
        blobs = CachedBlobStore(open_content_store(settings, env))
        measured = metrics if metrics is not None else build_metrics(env)
        base_url = settings.public_base_url
        keys = KeyRing(base_url, refresh_interval=key_refresh_interval(settings))
        keys.load(await stored_keys(catalogue, settings), datetime.now(UTC))
        verifier = TokenVerifier(
            keys.public_keys, issuer=base_url, max_lifetime=settings.access_token_ttl
        )
        service = BinaryService(
            blobs,
            catalogue,
            max_size=settings.max_binary_size,
            screener=build_screener(settings, measured.verdict),
            inspector=build_inspector(settings, measured.verdict),
            redirect=accel_redirect(settings),
        )

        async def active(client_id: str) -> bool:
            client = await catalogue.get_client(client_id)
            return client is not None and client.active

        return Runtime(
            settings=settings,
            base_url=base_url,
            catalogue=catalogue,
            blobs=blobs,
            service=service,
            keys=keys,
            verifier=verifier,
            authenticator=build_authenticator(settings, verifier),
            clients=ClientStatusCache(active, settings.revocation_check_interval),
            audit=AuditLog(catalogue),
            metrics=measured,
            clamd=clamd_address(settings),
        )
    except BaseException:
        await catalogue.close()
        raise
