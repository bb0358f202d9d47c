"""Copying a whole catalogue from one MetadataStore into another: moving an embedded (SQLite)
deployment into PostgreSQL.

``copy_catalogue`` reads the source page by page in a stable key order and writes each page in
one transaction, skipping rows the target already has: running it twice adds nothing, and a copy
that was interrupted resumes by running it again. Versions keep every field (deletion markers,
exact timestamps); the target recomputes which version of each id is current. Clients keep their
revocation, signing keys their kid and age, and the whole audit trail comes along. Seen
client-assertion ids are not copied: they only matter until the assertions expire (minutes).

Copy while no node writes to the source; a write made during the copy may be missed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from fhirbin.metadata.base import AuditQuery, ClientExists, KeyExists, MetadataStore
from fhirbin.metadata.times import to_micros

#: Rows per page (one read and one write transaction each).
PAGE: Final = 1000

Progress = Callable[[str, int], None]


async def copy_catalogue(
    source: MetadataStore, target: MetadataStore, progress: Progress | None = None
) -> dict[str, int]:
    """Copy everything from ``source`` to ``target``; how many rows of each kind were new.

    ``progress(kind, rows)`` is called after each page with the rows of that kind read so far.
    Kinds: ``versions``, ``clients``, ``signing_keys``, ``audit``.
    """
    report = progress or (lambda _kind, _rows: None)
    added = {"versions": 0, "clients": 0, "signing_keys": 0, "audit": 0}

    seen = 0
    after: tuple[str, int] | None = None
    while page := await source.versions_page(after, PAGE):
        added["versions"] += await target.import_versions(page)
        seen += len(page)
        after = (page[-1].id, page[-1].version)
        report("versions", seen)

    clients = await source.list_clients()
    for client in clients:
        try:
            await target.add_client(client)  # revoked_at included
            added["clients"] += 1
        except ClientExists:
            pass
    report("clients", len(clients))

    # Oldest first, so that a target that had none ends with the same newest key.
    keys = list(reversed(await source.signing_keys()))
    for key in keys:
        try:
            await target.add_signing_key(key)
            added["signing_keys"] += 1
        except KeyExists:
            pass
    report("signing_keys", len(keys))

    seen = 0
    mark: tuple[int, str] | None = None
    while records := await source.search_audit(AuditQuery(after=mark, limit=PAGE)):
        added["audit"] += await target.import_audit(records)
        seen += len(records)
        last = records[-1]
        mark = (to_micros(last.recorded), last.id)
        report("audit", seen)
    return added
