"""SQLite's hot paths (metadata/fastread.py): current versions remembered per process until the
shared change signal moves, and audit batches as multi-row INSERTs.

Several stores opened on one file stand in for several worker processes; one test uses a real
second process.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteReceiveStream
from sqlalchemy.exc import IntegrityError

from fhirbin.metadata import fastread
from fhirbin.metadata.base import AuditQuery, AuditRecord
from fhirbin.metadata.engine import sqlite_file
from fhirbin.metadata.sql import SqlMetadataStore, sqlite_url
from fhirbin.metadata.sqlite import SqliteMetadataStore
from tests.metadata.support import WHEN, marker, version

pytestmark = pytest.mark.anyio


@pytest.fixture
def url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "fhirbin.db")


async def test_a_write_by_another_store_is_seen_by_the_next_read(url: str) -> None:
    reader = await SqlMetadataStore.open(url)
    writer = await SqlMetadataStore.open(url)
    try:
        assert await reader.current("a") is None  # remembered as unknown
        await writer.add_version(version("a", 1))
        assert await reader.current("a") == version("a", 1)
        await writer.add_version(version("a", 2, size=99))
        assert await reader.current("a") == version("a", 2, size=99)
        await writer.add_version(marker("a", 3))
        current = await reader.current("a")
        assert current is not None
        assert current.deleted
    finally:
        await reader.close()
        await writer.close()


async def test_reads_are_remembered_until_the_signal_moves(url: str) -> None:
    store = await SqlMetadataStore.open(url)
    try:
        await store.add_version(version("a", 1))
        assert await store.current("a") == version("a", 1)
        database = sqlite_file(url)
        assert database is not None
        # A row written behind fhirbin's back (no signal) is not seen while remembered ...
        with sqlite3.connect(database) as raw:
            raw.execute("UPDATE binary_version SET size = 7 WHERE id = 'a'")
        assert await store.current("a") == version("a", 1)
        # ... and is once the signal moves.
        assert isinstance(store, SqliteMetadataStore)
        store.changes.changed()
        assert await store.current("a") == version("a", 1, size=7)
    finally:
        await store.close()


async def test_nothing_is_remembered_longer_than_max_age(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastread, "MAX_AGE", 0.0)
    store = await SqlMetadataStore.open(url)
    try:
        await store.add_version(version("a", 1))
        assert await store.current("a") == version("a", 1)
        database = sqlite_file(url)
        assert database is not None
        with sqlite3.connect(database) as raw:  # no signal: only the age bound can reveal it
            raw.execute("UPDATE binary_version SET size = 7 WHERE id = 'a'")
        assert await store.current("a") == version("a", 1, size=7)
    finally:
        await store.close()


async def test_a_failed_write_changes_nothing_remembered(url: str) -> None:
    store = await SqlMetadataStore.open(url)
    try:
        await store.add_version(version("a", 1))
        with pytest.raises(IntegrityError):
            await store.add_version(version("a", 2, content_type=None))  # NOT NULL
        assert await store.current("a") == version("a", 1)
    finally:
        await store.close()


async def test_a_write_by_another_process_is_seen_at_once(url: str) -> None:
    # The other process opens its store (which signals a change) before this one remembers
    # anything, then writes when told to: only the signal after its commit can reveal it.
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from fhirbin.metadata.sql import SqlMetadataStore
        from tests.metadata.support import version

        async def main():
            store = await SqlMetadataStore.open({url!r})
            await store.add_version(version("b", 1))
            print("1", flush=True)
            sys.stdin.readline()
            await store.add_version(version("b", 2))
            print("2", flush=True)
            await store.close()

        asyncio.run(main())
        """
    )
    store = await SqlMetadataStore.open(url)
    try:
        with anyio.fail_after(60):
            async with await anyio.open_process(
                [sys.executable, "-c", script], cwd=Path.cwd()
            ) as other:
                assert other.stdout is not None
                assert other.stdin is not None
                assert await _line(other.stdout) == b"1\n"
                assert await store.current("b") == version("b", 1)  # now remembered
                await other.stdin.send(b"go\n")
                assert await _line(other.stdout) == b"2\n"
                assert await store.current("b") == version("b", 2)
    finally:
        await store.close()


async def _line(stream: ByteReceiveStream) -> bytes:
    # A pipe may deliver a line in pieces: read up to the newline.
    received = b""
    while not received.endswith(b"\n"):
        received += await stream.receive()
    return received


def audit(number: int) -> AuditRecord:
    return AuditRecord(
        id=f"rec-{number:06d}",
        recorded=WHEN,
        action="R",
        subtype="read",
        outcome="0",
        status=200,
        entity=f"Binary/{number}",
        bytes_sent=number,
    )


async def test_a_sqlite_file_opens_as_the_sqlite_store_and_memory_as_the_portable_one(
    url: str,
) -> None:
    store = await SqlMetadataStore.open(url)
    memory = await SqlMetadataStore.open("sqlite://")
    try:
        assert type(store) is SqliteMetadataStore
        assert type(memory) is SqlMetadataStore
    finally:
        await store.close()
        await memory.close()


async def test_audit_batches_of_several_inserts_are_stored_whole(url: str) -> None:
    store = await SqlMetadataStore.open(url)
    try:
        records = [audit(n) for n in range(2 * fastread.ROWS_PER_INSERT + 3)]
        await store.add_audit(records)
        stored = await store.search_audit(AuditQuery(limit=10_000))
        assert sorted(stored, key=lambda r: r.id) == records
    finally:
        await store.close()


async def test_an_audit_batch_that_fails_stores_nothing(url: str) -> None:
    store = await SqlMetadataStore.open(url)
    try:
        await store.add_audit([audit(0)])
        # The duplicate is in the second INSERT of the batch: the first must roll back too.
        batch = [audit(n) for n in range(1, fastread.ROWS_PER_INSERT + 5)]
        batch[-1] = dataclasses.replace(batch[-1], id=audit(0).id)
        with pytest.raises(sqlite3.IntegrityError):
            await store.add_audit(batch)
        assert [r.id for r in await store.search_audit(AuditQuery(limit=10_000))] == [audit(0).id]
    finally:
        await store.close()
