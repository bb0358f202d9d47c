"""Engine construction: the one place that knows database and driver quirks.

Queries elsewhere are portable SQL; what differs between SQLite and PostgreSQL (connection
pragmas, who emits BEGIN, creating the database's folder, URL spellings, timeouts) is decided
here, once, for the store and for migrations alike.

Database URLs (``FHIRBIN_DATABASE_URL``) are accepted as operators write them and normalised
(``normalise_url``): ``postgresql://``, ``postgres://`` and any ``postgresql+<driver>://`` all
mean PostgreSQL through asyncpg, the driver chosen by measurement (docs/development.md);
libpq's ``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey`` and ``connect_timeout`` are
translated into asyncpg's arguments, other query parameters pass through. ``sqlite://`` means
SQLite through aiosqlite. ``database_display`` renders a URL for messages, password masked.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import sqlalchemy
from sqlalchemy import URL, event, make_url
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

# Execution option marking a connection whose transaction will write. On SQLite it makes BEGIN
# take the write lock up front (BEGIN IMMEDIATE), so concurrent writers queue on the busy timeout
# instead of failing when a read snapshot cannot be upgraded to a write.
WRITE_OPTION = "fhirbin_write"

SQLITE_BUSY_TIMEOUT_MS = 5000

#: The PostgreSQL driver: asyncpg (docs/development.md, "PostgreSQL: driver and read path").
POSTGRES_DRIVER: Final = "postgresql+asyncpg"
#: Seconds to establish a PostgreSQL connection (TCP, TLS and authentication) before giving up:
#: a database that is down must fail a request quickly (503), not hang it.
CONNECT_TIMEOUT_S: Final = 3.0
#: Seconds a request waits for a pooled connection when all are busy.
POOL_TIMEOUT_S: Final = 10.0
#: A statement on PostgreSQL that has not answered after this long fails (asyncpg's
#: ``command_timeout``), so a server that hangs silently (a partition dropping packets) cannot
#: hang a request: it becomes a 503. Schema upgrades run on an engine without it
#: (``migration_engine``): rewriting a large table may take longer.
COMMAND_TIMEOUT_S: Final = 15.0

_POSTGRES_SCHEMES = ("postgresql", "postgres")
#: libpq's TLS parameters; asyncpg takes one ``ssl`` argument (a mode or an SSLContext) instead.
_SSL_FILES = ("sslrootcert", "sslcert", "sslkey")
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _parse(url: str) -> URL:
    text = url.strip()
    # SQLAlchemy dropped the "postgres" alias that Heroku-style URLs (and libpq) still use.
    if text.startswith("postgres://") or text.startswith("postgres+"):
        text = "postgresql" + text[len("postgres") :]
    try:
        return make_url(text)
    except ArgumentError as error:
        raise ValueError(f"not a database URL: {database_display(url)}") from error


def normalise_url(url: str) -> URL:
    """``url`` with the driver fhirbin uses for its database; ValueError for other databases.

    PostgreSQL URLs keep their query parameters, libpq's TLS and timeout ones aside (those
    become connect arguments, ``postgres_connect_args``).
    """
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    if backend in _POSTGRES_SCHEMES:
        return parsed.set(drivername=POSTGRES_DRIVER)
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    raise ValueError(
        f"unsupported database {database_display(url)}: use a sqlite:// or postgresql:// URL"
    )


def postgres_connect_args(url: URL) -> tuple[URL, dict[str, Any]]:
    """Split libpq-style parameters asyncpg does not take off ``url``, as asyncpg arguments."""
    query: Mapping[str, str | tuple[str, ...]] = url.query
    single = {k: v if isinstance(v, str) else v[-1] for k, v in query.items()}
    args: dict[str, Any] = {"timeout": CONNECT_TIMEOUT_S}
    if "connect_timeout" in single:
        args["timeout"] = float(single["connect_timeout"])
    mode = single.get("sslmode", single.get("ssl"))
    if mode is not None and mode not in _SSL_MODES:
        raise ValueError(f"sslmode must be one of {', '.join(_SSL_MODES)}, got {mode!r}")
    files = {name: single[name] for name in _SSL_FILES if name in single}
    if files and mode != "disable":
        args["ssl"] = _ssl_context(mode or "verify-full", files)
    elif mode is not None:
        args["ssl"] = mode  # asyncpg accepts libpq's mode names
    stripped = url.difference_update_query(["sslmode", "ssl", "connect_timeout", *_SSL_FILES])
    return stripped, args


def postgres_pool_args(url: str) -> dict[str, Any]:
    """``asyncpg.connect``'s arguments for a PostgreSQL ``url``: what the engine connects with
    (host, port, user, password, database, other query parameters, TLS and connect timeout),
    for a pool of asyncpg's own (``PostgresMetadataStore``)."""
    parsed, connect_args = postgres_connect_args(normalise_url(url))
    _, options = PGDialect_asyncpg().create_connect_args(parsed)  # type: ignore[no-untyped-call]
    # SQLAlchemy's own options, which its adapter takes off before calling asyncpg.connect.
    for name in ("prepared_statement_cache_size", "prepared_statement_name_func"):
        options.pop(name, None)
    return {**options, **connect_args}


def _ssl_context(mode: str, files: Mapping[str, str]) -> ssl.SSLContext:
    # As libpq: verify-full checks the chain and the host name, verify-ca the chain only; with a
    # root certificate given, require behaves as verify-ca. allow/prefer cannot be expressed with
    # a context (they fall back to plain text): treated as require.
    context = ssl.create_default_context(cafile=files.get("sslrootcert"))
    context.check_hostname = mode == "verify-full"
    if mode not in ("verify-full", "verify-ca") and "sslrootcert" not in files:
        context.verify_mode = ssl.CERT_NONE
    if "sslcert" in files:
        context.load_cert_chain(files["sslcert"], files.get("sslkey"))
    return context


def database_display(url: str | URL) -> str:
    """``url`` fit for logs and messages: the password (in the URL or its query) masked."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url.strip())
    except ArgumentError:
        return "<unparseable database URL>"
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": "***"})
    return parsed.render_as_string(hide_password=True)


def sqlite_url(path: Path) -> str:
    """The async SQLAlchemy URL of a SQLite database file (made absolute)."""
    return URL.create("sqlite+aiosqlite", database=str(path.resolve())).render_as_string()


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory SQLite."""
    parsed = _parse(url)
    return _sqlite_file(parsed) if _is_sqlite(parsed) else None


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (in any spelling ``normalise_url`` takes)."""
    return _parse(url).get_backend_name() in _POSTGRES_SCHEMES


def _is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _sqlite_file(url: URL) -> Path | None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url``, configured for safe concurrent use by several processes."""
    parsed = normalise_url(url)
    if not _is_sqlite(parsed):
        parsed, connect_args = postgres_connect_args(parsed)
        connect_args.setdefault("command_timeout", COMMAND_TIMEOUT_S)
        kwargs["connect_args"] = {**connect_args, **kwargs.get("connect_args", {})}
        if "poolclass" not in kwargs:
            kwargs.setdefault("pool_timeout", POOL_TIMEOUT_S)
        engine = create_async_engine(parsed, **kwargs)
        # A pooled connection may have died with its server (a restart, a failover). Instead of
        # pool_pre_ping's round trip on every checkout, a connection asyncpg already saw closed
        # is replaced at checkout (no round trip), so the first request after the database is
        # back succeeds; one that dies unseen fails its statement, and SQLAlchemy then
        # invalidates the whole pool (docs/development.md, "PostgreSQL: driver and read path").
        event.listen(engine.sync_engine, "checkout", _replace_closed_connection)
        return engine
    database = _sqlite_file(parsed)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(parsed, **kwargs)
    event.listen(engine.sync_engine, "connect", _configure_sqlite_writer)
    event.listen(engine.sync_engine, "begin", _begin_sqlite_transaction)
    return engine


def migration_engine(url: str) -> AsyncEngine:
    """An unpooled engine for schema upgrades: on PostgreSQL without the statement time limit
    (see ``COMMAND_TIMEOUT_S``)."""
    if _is_sqlite(normalise_url(url)):
        return create_engine(url, poolclass=NullPool)
    return create_engine(url, poolclass=NullPool, connect_args={"command_timeout": None})


def _replace_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    driver_connection = getattr(dbapi_connection, "_connection", None)  # the asyncpg connection
    if driver_connection is not None and driver_connection.is_closed():
        # The pool discards this connection and checks out (or makes) another.
        raise sqlalchemy.exc.DisconnectionError("the database closed this pooled connection")


def create_read_engine(database: Path) -> Engine:
    """A synchronous engine for catalogue reads of one SQLite file (SqliteMetadataStore._read):
    the same connection set-up as the async engine, connections pooled and reused."""
    url = URL.create("sqlite", database=str(database.resolve()))
    engine = sqlalchemy.create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _configure_sqlite_reader)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_writer(dbapi_connection: Any, record: Any) -> None:
    # synchronous=FULL: in WAL mode every COMMIT then syncs the WAL before it returns, so an
    # acknowledged write survives power loss too, not only a crash of the process (NORMAL).
    # Measured cost: docs/development.md, "SQLite: durable commits".
    _configure_sqlite_connection(dbapi_connection, record, synchronous="FULL")


def _configure_sqlite_reader(dbapi_connection: Any, record: Any) -> None:
    # The read engine never commits a write: its sync setting costs and protects nothing.
    _configure_sqlite_connection(dbapi_connection, record, synchronous="NORMAL")


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any, *, synchronous: str) -> None:
    # Let SQLAlchemy emit BEGIN itself (see _begin_sqlite_transaction): the sqlite3 driver's
    # legacy mode never begins a transaction for SELECT or DDL, so reads were not repeatable and
    # migrations not atomic.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # First, so that even switching the journal mode waits for another process's lock
        # instead of failing with "database is locked".
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL lets readers proceed while one writer commits; ``synchronous`` decides whether a
        # commit also waits for the disk (the callers above).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
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


#: An arbitrary constant naming fhirbin's schema-upgrade lock among PostgreSQL advisory locks.
UPGRADE_LOCK: Final = 0x46484942  # "FHIB"


async def lock_for_upgrade(connection: AsyncConnection) -> None:
    """Wait until no other process upgrades this database; held until the transaction ends.

    PostgreSQL has no BEGIN IMMEDIATE: without this transaction-scoped advisory lock, nodes
    starting together would all create the same tables. Any role may take an advisory lock, so
    the database user need not be a superuser. SQLite's write transaction already holds the
    database's write lock.
    """
    if connection.dialect.name == "postgresql":
        await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({UPGRADE_LOCK})")
