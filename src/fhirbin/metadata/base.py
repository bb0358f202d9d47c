"""The MetadataStore interface: the catalogue of Binary versions and OAuth2 clients.

A MetadataStore knows nothing of FHIR or HTTP. Every write is one transaction. Versions are
integers 1, 2, ... per id; the unique key on (id, version) is what makes optimistic concurrency
safe across processes and nodes: of two writers adding the same version, exactly one wins and
the other gets ``VersionConflict``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class BinaryVersion:
    """One stored version of a Binary. ``last_updated`` is timezone-aware UTC, microseconds."""

    id: str
    version: int
    last_updated: datetime
    content_type: str
    security_context: str | None
    size: int
    sha256: str | None  # None for a deletion marker
    deleted: bool = False


@dataclass(frozen=True)
class Client:
    """A registered OAuth2 client. ``secret_hash`` is a slow (argon2id) hash, never the secret."""

    client_id: str
    name: str
    scope: str
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None = None
    #: SMART Backend Services: the public JWK Set by value (JSON text) or by URL; a key
    #: client (private_key_jwt) has an empty ``secret_hash``.
    jwks: str | None = None
    jwks_url: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class AuditRecord:
    """One audited event (FHIR AuditEvent, IHE Basic Audit Log Patterns). Never holds content
    bytes or tokens.

    ``action``: AuditEvent.action C R U D E. ``subtype``: the FHIR restful-interaction code
    (read, vread, create, update, delete, search-type, history-instance, history-type) or
    ``login`` for the token endpoint. ``outcome``: AuditEvent.outcome "0" success, "4" minor
    failure (a refused request), "8" serious failure (a server error). ``entity``: e.g.
    ``Binary/123``; ``query``: the search parameters applied; ``detail``: why a request was
    refused.
    """

    id: str
    recorded: datetime
    action: str
    subtype: str
    outcome: str
    status: int
    client_id: str | None = None
    subject: str | None = None
    source: str | None = None
    entity: str | None = None
    entity_version: int | None = None
    query: str | None = None
    bytes_sent: int | None = None
    detail: str | None = None
    request_id: str | None = None
    #: the SMART launch-context Patient id of the token (BALP entity:patient), if any
    patient: str | None = None


@dataclass(frozen=True)
class AuditQuery:
    """Audit records, oldest first by (recorded, id); ``id`` and ``entity`` exact; recorded in
    [since_us, until_us); ``after``: (recorded_us, id) keyset; at most ``limit``."""

    id: str | None = None
    entity: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    after: tuple[int, str] | None = None
    limit: int = 100


@dataclass(frozen=True)
class Keyset:
    """A position in an ordered listing: the sort key of the row a page ends (or starts) at.

    Listings are ordered by (last_updated, id, version); keyset paging stays stable when rows
    are added while a client pages (unlike offsets).
    """

    last_updated_us: int
    id: str
    version: int


@dataclass(frozen=True)
class UpdatedRange:
    """A condition on last_updated in µs since the epoch, UTC.

    ``inside``: ``lower <= t < upper``; not ``inside``: ``t < lower or t >= upper``. A missing
    bound is open (unbounded on that side).
    """

    lower_us: int | None
    upper_us: int | None
    inside: bool = True


@dataclass(frozen=True)
class CatalogueQuery:
    """A search over current, non-deleted versions.

    ``ids``: None = any id; otherwise the id must be in the set (an empty set matches nothing).
    ``updated``: every range must hold (AND). Order: (last_updated, id) ascending, or
    descending when ``descending``. ``after`` / ``before``: only rows strictly after / before
    that keyset *in the query's order* (``before`` pages backwards; results are still returned
    in the query's order). ``limit``: at most this many rows.
    """

    ids: frozenset[str] | None = None
    updated: tuple[UpdatedRange, ...] = ()
    #: None = any; otherwise security_context must be one of these (an empty set matches none)
    security_contexts: frozenset[str] | None = None
    descending: bool = False
    after: Keyset | None = None
    before: Keyset | None = None
    limit: int = 100


@dataclass(frozen=True)
class HistoryQuery:
    """Versions (deletion markers included), newest first: (last_updated, id, version) desc.

    ``binary_id``: one resource's history, or None for the whole type. ``since_us``: only
    versions with last_updated >= since (R4 http.html#history ``_since``). ``after`` /
    ``before`` and ``limit`` as in CatalogueQuery, relative to the newest-first order.
    """

    binary_id: str | None = None
    since_us: int | None = None
    #: None = any; otherwise the version's security_context must be one of these
    security_contexts: frozenset[str] | None = None
    after: Keyset | None = None
    before: Keyset | None = None
    limit: int = 100


@dataclass(frozen=True)
class SigningKeyRecord:
    """A token signing key shared by every node: its key id and private key (PEM, PKCS#8)."""

    kid: str
    private_pem: str
    created_at: datetime


@dataclass(frozen=True)
class ContentRef:
    """One stored content as the catalogue refers to it: by hash, with the ids whose versions
    (any version, deletion markers aside) name it, sorted."""

    sha256: str
    size: int
    binary_ids: tuple[str, ...]


@dataclass(frozen=True)
class Expunged:
    """What ``MetadataStore.expunge`` removed: how many versions, the highest version number
    (numbering continues after it), and the contents (sha256) the removed versions named."""

    versions: int
    last_version: int
    contents: frozenset[str]


class VersionConflict(Exception):
    """Another writer already added that version of that id."""


class ClientExists(Exception):
    """A client with that client_id is already registered."""


class KeyExists(Exception):
    """A signing key with that kid is already stored."""


class MetadataStore(Protocol):
    async def add_version(self, version: BinaryVersion, audit: AuditRecord | None = None) -> None:
        """Insert one version row, and its audit record in the same transaction; raises
        VersionConflict if (id, version) exists (and then stores neither)."""
        ...

    async def expunge(self, binary_id: str, audit: AuditRecord | None = None) -> Expunged | None:
        """Remove every version of an id (deletion markers included) and remember the highest
        version number it had (``last_expunged``), storing ``audit`` in the same transaction;
        None (and nothing stored) when the id has no versions."""
        ...

    async def last_expunged(self, binary_id: str) -> int:
        """The highest version number an id had when it was last expunged; 0 if never."""
        ...

    async def current(self, binary_id: str) -> BinaryVersion | None:
        """The newest version of an id (possibly a deletion marker), or None if never stored."""
        ...

    async def current_many(self, binary_ids: Sequence[str]) -> list[BinaryVersion]:
        """The newest non-deleted version of each id that has one, ordered by id."""
        ...

    async def current_all(self) -> list[BinaryVersion]:
        """The newest version of every id whose newest version is not a deletion, ordered by id."""
        ...

    async def get_version(self, binary_id: str, version: int) -> BinaryVersion | None:
        """One version of an id (possibly a deletion marker), or None."""
        ...

    async def search(self, query: CatalogueQuery) -> list[BinaryVersion]:
        """Current non-deleted versions matching the query, in its order, at most ``limit``."""
        ...

    async def count(self, query: CatalogueQuery) -> int:
        """How many current non-deleted versions match ``ids`` and ``updated`` (paging ignored)."""
        ...

    async def history(self, query: HistoryQuery) -> list[BinaryVersion]: ...

    async def count_history(self, query: HistoryQuery) -> int:
        """How many versions match ``binary_id`` and ``since_us`` (paging ignored)."""
        ...

    async def add_client(self, client: Client) -> None:
        """Register a client; raises ClientExists for a duplicate client_id."""
        ...

    async def get_client(self, client_id: str) -> Client | None: ...

    async def list_clients(self) -> list[Client]:
        """All clients, revoked ones included, oldest first."""
        ...

    async def revoke_client(self, client_id: str, when: datetime) -> bool:
        """Mark a client revoked; False if there is no such client."""
        ...

    async def remember_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Record a client-assertion id; False if (issuer, jti) was already recorded (a replay).

        Expired records may be purged: an assertion past its ``exp`` is refused anyway.
        """
        ...

    async def add_audit(self, records: Sequence[AuditRecord]) -> None:
        """Store audit records in one transaction."""
        ...

    async def search_audit(self, query: AuditQuery) -> list[AuditRecord]: ...

    # Token signing keys, shared by every node.

    async def add_signing_key(self, record: SigningKeyRecord) -> None:
        """Store a key; raises KeyExists for a duplicate kid."""
        ...

    async def signing_keys(self) -> list[SigningKeyRecord]:
        """Every stored key, newest first (created_at, then kid, descending)."""
        ...

    async def ensure_signing_key(self, make: Callable[[], SigningKeyRecord]) -> SigningKeyRecord:
        """The newest key; if there is none, one made by ``make`` is stored first. Nodes starting
        together all get the same key: exactly one of their keys is ever stored."""
        ...

    # Contents, for garbage collection and verification.

    async def referenced(self, keys: Collection[str]) -> set[str]:
        """Those of ``keys`` (sha256 values) that some version row refers to."""
        ...

    async def contents(self, after: str | None, limit: int) -> list[ContentRef]:
        """Referenced contents, by sha256 ascending, strictly after ``after``, at most ``limit``."""
        ...

    # Whole-catalogue copies (``transfer.copy_catalogue``).

    async def versions_page(self, after: tuple[str, int] | None, limit: int) -> list[BinaryVersion]:
        """Every version (deletion markers included) by (id, version), after that key."""
        ...

    async def import_versions(self, versions: Sequence[BinaryVersion]) -> int:
        """Store versions as they are, skipping any (id, version) already stored, and keep each
        id's highest version current; one transaction. How many were new."""
        ...

    async def import_audit(self, records: Sequence[AuditRecord]) -> int:
        """Store audit records, skipping ids already stored; one transaction. How many were new."""
        ...

    async def check(self) -> None:
        """Raise ``faults.DependencyUnavailable`` unless the database answers now."""
        ...

    async def close(self) -> None: ...
