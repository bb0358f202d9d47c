"""Engine construction: the one place that knows database and driver quirks.

Queries elsewhere are portable SQL; what differs between SQLite and PostgreSQL (connection
pragmas, who emits BEGIN, creating the database's folder) is decided here, once, for the store
and for migrations alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import URL, event, make_url
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

# Execution option marking a connection whose transaction will write. On SQLite it makes BEGIN
# take the write lock up front (BEGIN IMMEDIATE), so concurrent writers queue on the busy timeout
# instead of failing when a read snapshot cannot be upgraded to a write.
WRITE_OPTION = "fhirbin_write"

SQLITE_BUSY_TIMEOUT_MS = 5000


def sqlite_url(path: Path) -> str:
    """The async SQLAlchemy URL of a SQLite database file (made absolute)."""
    return URL.create("sqlite+aiosqlite", database=str(path.resolve())).render_as_string()


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    return _sqlite_file(parsed) if _is_sqlite(parsed) else None


def _is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _sqlite_file(url: URL) -> Path | None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url``, configured for safe concurrent use by several processes."""
    parsed = make_url(url)
    if not _is_sqlite(parsed):
        return create_async_engine(parsed, **kwargs)
    database = _sqlite_file(parsed)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(parsed, **kwargs)
    event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
    event.listen(engine.sync_engine, "begin", _begin_sqlite_transaction)
    return engine


def create_read_engine(database: Path) -> Engine:
    """A synchronous engine for catalogue reads of one SQLite file (SqlMetadataStore._read):
    the same connection set-up as the async engine, connections pooled and reused."""
    url = URL.create("sqlite", database=str(database.resolve()))
    engine = sqlalchemy.create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (see _begin_sqlite_transaction): the sqlite3 driver's
    # legacy mode never begins a transaction for SELECT or DDL, so reads were not repeatable and
    # migrations not atomic.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # First, so that even switching the journal mode waits for another process's lock
        # instead of failing with "database is locked".
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL lets readers proceed while one writer commits. With synchronous=NORMAL a commit is
        # durable against a crash of the process (the WAL is written before COMMIT returns); only
        # an OS crash or power loss may roll back the last transactions, never corrupt the file.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    if connection.get_execution_options().get(WRITE_OPTION):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One write transaction: committed when the block ends, rolled back if it raises."""
    async with engine.connect() as connection:
        await connection.execution_options(**{WRITE_OPTION: True})
        async with connection.begin():
            yield connection
