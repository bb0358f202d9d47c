"""Database failures reach callers as ``fhirbin.faults`` (metadata/failures.py), on real failures:
a PostgreSQL server stopped and started again, bad credentials, a missing database, a SQLite
database that is really full (``PRAGMA max_page_count``) and a PostgreSQL table on a disk that is
really full (a tiny tmpfs tablespace; needs root, as CI has)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]  # no stubs; only its exception classes are used
import pytest
from sqlalchemy import event
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import OperationalError

from fhirbin.faults import DependencyUnavailable, OutOfSpace
from fhirbin.metadata.base import AuditQuery, CatalogueQuery, HistoryQuery
from fhirbin.metadata.failures import fault_of
from fhirbin.metadata.postgres import PostgresMetadataStore
from fhirbin.metadata.sql import SqlMetadataStore, sqlite_url
from fhirbin.metadata.sqlite import SqliteMetadataStore
from tests.metadata.support import version
from tests.metadata.test_metadata_fastread import audit
from tests.pg_support import PASSWORD, PostgresCluster

pytestmark = pytest.mark.anyio


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test's own, as it is stopped and started (the session's is shared)."""
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def assert_safe(fault: DependencyUnavailable | OutOfSpace) -> None:
    assert fault.dependency == "database"
    assert "FHIRBIN_DATABASE_URL" in fault.detail
    assert PASSWORD not in str(fault)


async def test_a_stopped_server_is_unavailable_quickly_and_the_same_store_recovers(
    own_cluster: PostgresCluster,
) -> None:
    store = await SqlMetadataStore.open(own_cluster.new_database())
    assert isinstance(store, PostgresMetadataStore)
    by_id = CatalogueQuery(ids=frozenset({"a"}))
    try:
        await store.add_version(version("a", 1))
        own_cluster.stop()
        for call in (
            lambda: store.current("a"),  # the hot reads, on the store's asyncpg pool
            lambda: store.get_version("a", 1),
            lambda: store.current_many(["a"]),
            lambda: store.search(by_id),
            lambda: store.count(by_id),
            lambda: store.get_client("app"),
            lambda: store.add_version(version("a", 2)),  # SQLAlchemy's pool
            lambda: store.search_audit(AuditQuery()),
        ):
            began = time.monotonic()
            with anyio.fail_after(10), pytest.raises(DependencyUnavailable) as raised:
                await call()
            assert time.monotonic() - began < 10
            assert_safe(raised.value)

        own_cluster.resume()
        # No restart of the store: its pools replace the connections that died.
        assert await store.current("a") == version("a", 1)
        assert await store.search(by_id) == [version("a", 1)]
        assert await store.count(by_id) == 1
        assert await store.get_client("app") is None
        await store.add_version(version("a", 2))
        assert await store.current("a") == version("a", 2)
    finally:
        await store.close()


async def test_a_server_that_hangs_silently_fails_writes_and_reads_in_time(
    own_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition that drops packets looks like a server that stopped answering: its
    processes frozen (SIGSTOP) stand in for it. Connected statements must fail with the
    statement time limit, not hang (engine.COMMAND_TIMEOUT_S, shortened here)."""
    from fhirbin.metadata import engine as engine_module

    monkeypatch.setattr(engine_module, "COMMAND_TIMEOUT_S", 2.0)
    store = await SqlMetadataStore.open(own_cluster.new_database())
    frozen: list[int] = []
    try:
        await store.add_version(version("a", 1))
        assert await store.current("a") == version("a", 1)
        postmaster = int((own_cluster.data / "postmaster.pid").read_text().split()[0])
        found = await anyio.run_process(["pgrep", "-P", str(postmaster)], check=False)
        children = found.stdout.decode().split()
        frozen = [postmaster, *map(int, children)]
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        with anyio.fail_after(30), pytest.raises(DependencyUnavailable) as raised:
            await store.add_version(version("a", 2))  # SQLAlchemy's pool
        assert_safe(raised.value)
        with anyio.fail_after(30), pytest.raises(DependencyUnavailable) as raised:
            await store.current("a")  # the hot reads' pool
        assert_safe(raised.value)
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        await store.close()


async def test_the_first_calls_after_a_restart_succeed(own_cluster: PostgresCluster) -> None:
    """Both pools hold connections when the server restarts, and nothing is asked while it is
    down: the first read and the first write afterwards must not fail on a dead connection."""
    store = await SqlMetadataStore.open(own_cluster.new_database())
    try:
        await store.add_version(version("a", 1))
        assert await store.current("a") == version("a", 1)
        own_cluster.stop()
        # stop() blocks the event loop; a serving process's loop runs on while the database
        # restarts, and so sees its pooled connections closed by the server.
        await anyio.sleep(0.2)
        own_cluster.resume()
        with anyio.fail_after(10):
            await store.add_version(version("a", 2))
            assert await store.current("a") == version("a", 2)
            assert await store.history(HistoryQuery(binary_id="a")) != []
    finally:
        await store.close()


async def test_bad_credentials_and_a_missing_database_are_unavailable_without_the_password(
    postgres: PostgresCluster,
) -> None:
    wrong = "not-the-password-xyz"
    with pytest.raises(DependencyUnavailable) as raised:
        await SqlMetadataStore.open(postgres.url("postgres", password=wrong))
    assert_safe(raised.value)
    assert wrong not in str(raised.value)
    assert "***" in raised.value.detail

    with pytest.raises(DependencyUnavailable) as missing:
        await SqlMetadataStore.open(postgres.url("no_such_database"))
    assert_safe(missing.value)
    assert "no_such_database" in missing.value.detail


async def test_nothing_listening_is_unavailable(postgres: PostgresCluster) -> None:
    store = await SqlMetadataStore.open(postgres.new_database())
    url = store.engine.url.set(port=postgres.port + 1 if postgres.port < 65535 else 1)
    await store.close()
    with anyio.fail_after(10), pytest.raises(DependencyUnavailable) as raised:
        await SqlMetadataStore.open(url.render_as_string(hide_password=False))
    assert_safe(raised.value)


def fill_up(connection: Any, *_: object) -> None:
    # A database that may not grow by a single page: every write that needs one fails with
    # SQLITE_FULL, exactly as on a full disk.
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {pages}")


async def test_a_full_sqlite_database_is_out_of_space_and_keeps_what_it_had(
    tmp_path: Path,
) -> None:
    store = await SqlMetadataStore.open(sqlite_url(tmp_path / "full.db"))
    assert isinstance(store, SqliteMetadataStore)
    try:
        await store.add_version(version("a", 1))
        await store.engine.dispose()  # new connections only, each made full on connect
        event.listen(store.engine.sync_engine, "connect", fill_up)
        big = "x" * 20_000  # needs new pages
        with pytest.raises(OutOfSpace) as raised:
            await store.add_version(version("a", 2, content_type=big))
        assert_safe(raised.value)
        assert "full" in raised.value.detail

        fill_up(store.audit_writer._connection)
        records = [replace(audit(n), detail=big) for n in range(3)]
        with pytest.raises(OutOfSpace):
            await store.add_audit(records)

        assert await store.current("a") == version("a", 1)
    finally:
        await store.close()


def test_the_translation_of_real_sqlite_errors(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "t.db")
    raw.execute("CREATE TABLE t (x TEXT)")
    fill_up(raw)
    with pytest.raises(sqlite3.OperationalError) as full:
        raw.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    assert isinstance(fault_of(full.value, "db"), OutOfSpace)
    raw.close()
    other = sqlite3.connect(tmp_path / "u.db")
    other.execute("CREATE TABLE u (x TEXT PRIMARY KEY)")
    with pytest.raises(sqlite3.IntegrityError) as constraint:
        other.execute("INSERT INTO u VALUES ('a'), ('a')")
    other.close()
    assert fault_of(constraint.value, "db") is None  # not the database's fault
    with pytest.raises(sqlite3.OperationalError) as cannot_open:
        sqlite3.connect(f"file:{tmp_path}/missing/x.db?mode=ro", uri=True)
    assert isinstance(fault_of(cannot_open.value, "db"), DependencyUnavailable)


def test_postgresql_class_53_is_out_of_space_except_too_many_connections() -> None:
    # 53100 on a really full disk is tested below (as root); the driver's own exceptions, wrapped
    # as SQLAlchemy wraps them, stand in for the rest of class 53.
    def wrapped(error: Exception) -> OperationalError:
        adapted = AsyncAdapt_asyncpg_dbapi.OperationalError(str(error), error)  # type: ignore[no-untyped-call]
        return OperationalError("INSERT ...", {}, adapted)

    disk_full = wrapped(asyncpg.exceptions.DiskFullError("could not extend file"))
    assert isinstance(fault_of(disk_full, "db"), OutOfSpace)
    too_many = wrapped(asyncpg.exceptions.TooManyConnectionsError("too many clients"))
    assert isinstance(fault_of(too_many, "db"), DependencyUnavailable)


@pytest.fixture
def tiny_filesystem(postgres: PostgresCluster) -> Iterator[Path]:
    """A 1 MiB tmpfs, writable by the PostgreSQL server: a disk that really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    # In the cluster's folder: the server's OS user must reach it.
    mountpoint = postgres.root / f"tiny-{time.monotonic_ns()}"
    mountpoint.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mountpoint)], check=True
    )
    try:
        shutil.chown(mountpoint, "postgres", "postgres")
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


async def fill(store: SqlMetadataStore) -> None:
    for n in range(2, 2_000):
        # Random text does not compress: every row takes its full size on the disk.
        await store.add_version(version("a", n, content_type=os.urandom(4000).hex()))


async def test_a_full_postgresql_disk_is_out_of_space_and_keeps_what_it_had(
    postgres: PostgresCluster, tiny_filesystem: Path
) -> None:
    url = postgres.new_database()
    name = url.rsplit("/", 1)[1]
    store = await SqlMetadataStore.open(url)
    space = f"tiny_{name}"
    try:
        await store.add_version(version("a", 1))
        # The versions table (and its TOAST table) onto the tiny disk; the rest stays put.
        postgres.sql(f"CREATE TABLESPACE {space} LOCATION '{tiny_filesystem}'")
        postgres.sql(f"ALTER TABLE binary_version SET TABLESPACE {space}", database=name)
        await store.engine.dispose()  # the relation moved: start from fresh connections
        with pytest.raises(OutOfSpace) as raised:
            await fill(store)
        assert_safe(raised.value)
        assert "No space left on device" in raised.value.detail  # the server's own words
        current = await store.current("a")
        assert current is not None
        assert await store.get_version("a", current.version + 1) is None
    finally:
        await store.close()
        postgres.sql(f"DROP DATABASE IF EXISTS {name}")
        postgres.sql(f"DROP TABLESPACE IF EXISTS {space}")
