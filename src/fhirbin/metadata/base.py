"""The MetadataStore interface: the catalogue of Binary versions and OAuth2 clients.

A MetadataStore knows nothing of FHIR or HTTP. Every write is one transaction. Versions are
integers 1, 2, ... per id; the unique key on (id, version) is what makes optimistic concurrency
safe across processes and nodes: of two writers adding the same version, exactly one wins and
the other gets ``VersionConflict``.
"""

from __future__ import annotations

from collections.abc import Sequence
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

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class VersionConflict(Exception):
    """Another writer already added that version of that id."""


class ClientExists(Exception):
    """A client with that client_id is already registered."""


class MetadataStore(Protocol):
    async def add_version(self, version: BinaryVersion) -> None:
        """Insert one version row; raises VersionConflict if (id, version) exists."""
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

    async def close(self) -> None: ...
