"""Rows <-> the dataclasses of ``base``: datetimes as integer microseconds since the Unix epoch
(UTC) going in, timezone-aware datetimes coming out (``times``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping

from fhirbin.metadata.base import BinaryVersion, Client, SigningKeyRecord
from fhirbin.metadata.times import from_micros, to_micros


def version_from_row(row: RowMapping) -> BinaryVersion:
    return BinaryVersion(
        id=row["id"],
        version=row["version"],
        last_updated=from_micros(row["last_updated"]),
        content_type=row["content_type"],
        security_context=row["security_context"],
        size=row["size"],
        sha256=row["sha256"],
        deleted=bool(row["deleted"]),
    )


def version_values(version: BinaryVersion) -> dict[str, Any]:
    return {
        "id": version.id,
        "version": version.version,
        "last_updated": to_micros(version.last_updated),
        "content_type": version.content_type,
        "security_context": version.security_context,
        "size": version.size,
        "sha256": version.sha256,
        "deleted": version.deleted,
    }


def key_from_row(row: RowMapping) -> SigningKeyRecord:
    return SigningKeyRecord(row["kid"], row["private_pem"], from_micros(row["created_at"]))


def client_from_row(row: RowMapping) -> Client:
    revoked_at = row["revoked_at"]
    return Client(
        client_id=row["client_id"],
        name=row["name"],
        scope=row["scope"],
        secret_hash=row["secret_hash"],
        created_at=from_micros(row["created_at"]),
        revoked_at=None if revoked_at is None else from_micros(revoked_at),
        jwks=row["jwks"],
        jwks_url=row["jwks_url"],
    )


def client_values(new: Client) -> dict[str, Any]:
    return {
        "client_id": new.client_id,
        "name": new.name,
        "scope": new.scope,
        "secret_hash": new.secret_hash,
        "created_at": to_micros(new.created_at),
        "revoked_at": None if new.revoked_at is None else to_micros(new.revoked_at),
        "jwks": new.jwks,
        "jwks_url": new.jwks_url,
    }


def key_values(record: SigningKeyRecord) -> dict[str, Any]:
    return {
        "kid": record.kid,
        "private_pem": record.private_pem,
        "created_at": to_micros(record.created_at),
    }
