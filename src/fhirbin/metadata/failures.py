"""Driver failures -> the faults of ``fhirbin.faults``: the one place the catalogue decides what
a database error means for its callers.

Every connection the stores take goes through ``guarded`` (``SqlMetadataStore._connect`` and
``_write``, the SQLite hot paths, migrations), so no method translates errors itself:

- the database cannot serve now (connection refused or reset, a timeout, bad credentials, a
  database that does not exist, a server shutting down, SQLite busy past its timeout or unable
  to open its file) -> ``DependencyUnavailable("database", detail)``;
- it has no room (SQLite's SQLITE_FULL "database or disk is full", PostgreSQL's class 53
  "insufficient resources" such as 53100 disk_full, ENOSPC) -> ``OutOfSpace("database", ...)``;
- anything else (a constraint, a bug in a statement) passes through unchanged: it is not a
  fault of the dependency, and callers such as ``add_version`` rely on seeing IntegrityError.

The detail names the setting an operator would fix, ``FHIRBIN_DATABASE_URL``, and the database
with its password masked; a password that a driver echoes is scrubbed as well.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from sqlalchemy import exc

from fhirbin.faults import DependencyUnavailable, OutOfSpace

DATABASE: Final = "database"
SETTING: Final = "FHIRBIN_DATABASE_URL"

# SQLite primary result codes (sqlite3 exposes them as ``sqlite_errorcode``).
_SQLITE_FULL: Final = 13
_SQLITE_UNAVAILABLE: Final = frozenset(
    {
        5,  # SQLITE_BUSY: another writer held the lock past the busy timeout
        6,  # SQLITE_LOCKED
        10,  # SQLITE_IOERR
        14,  # SQLITE_CANTOPEN
    }
)
# PostgreSQL SQLSTATE classes and codes that mean "not now" rather than "not this".
_PG_UNAVAILABLE_CLASSES: Final = frozenset({"08", "28", "57"})  # connection, auth, operator
_PG_UNAVAILABLE_CODES: Final = frozenset(
    {
        "3D000",  # invalid_catalog_name: the database does not exist
        "53300",  # too_many_connections: transient, unlike the rest of class 53
        "40P01",  # deadlock_detected: the transaction was rolled back; retrying succeeds
    }
)


def _sqlite_code(error: BaseException) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None  # extended codes -> primary


def _sqlstate(error: BaseException) -> str | None:
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return state if isinstance(state, str) else None


def _reason(error: BaseException) -> str:
    origin = error.orig if isinstance(error, exc.DBAPIError) and error.orig else error
    text = str(origin).strip().splitlines()
    return f"{type(origin).__name__}: {text[0]}" if text else type(origin).__name__


def _detail(where: str, error: BaseException, secret: str | None) -> str:
    reason = _reason(error)
    if secret:
        reason = reason.replace(secret, "***")
    return f"{where} ({SETTING}): {reason}"


def fault_of(error: BaseException, where: str, secret: str | None = None) -> Exception | None:
    """The fault ``error`` stands for, or None when it is no fault of the database.

    ``where`` names the database for the detail (``engine.database_display``); ``secret``, its
    password, is scrubbed from the driver's message should the message contain it.
    """
    origin: BaseException = error
    if isinstance(error, exc.DBAPIError):
        if isinstance(error, exc.IntegrityError):
            return None
        if error.orig is not None:
            origin = error.orig
    code = _sqlite_code(origin)
    state = _sqlstate(origin)
    if code == _SQLITE_FULL or (state is not None and state.startswith("53") and state != "53300"):
        return OutOfSpace(DATABASE, _detail(f"{where} is full", error, secret))
    if isinstance(origin, OSError) and origin.errno == errno.ENOSPC:
        return OutOfSpace(DATABASE, _detail(f"{where} is full", error, secret))
    unavailable = (
        code in _SQLITE_UNAVAILABLE
        or (
            state is not None
            and (state[:2] in _PG_UNAVAILABLE_CLASSES or state in _PG_UNAVAILABLE_CODES)
        )
        or isinstance(origin, OSError | TimeoutError | exc.TimeoutError)
        or (isinstance(error, exc.DBAPIError) and error.connection_invalidated)
        # The driver's own connection errors (closed or broken connection) without a SQLSTATE.
        or (
            state is None
            and code is None
            and isinstance(error, exc.InterfaceError | exc.OperationalError)
        )
        or (isinstance(origin, sqlite3.OperationalError) and "unable to open" in str(origin))
    )
    if unavailable:
        return DependencyUnavailable(DATABASE, _detail(f"cannot use {where}", error, secret))
    return None


@contextmanager
def guarded(where: str, secret: str | None = None) -> Iterator[None]:
    """Translate database failures raised inside the block (see the module docstring)."""
    try:
        yield
    except (DependencyUnavailable, OutOfSpace):
        raise
    except Exception as error:
        fault = fault_of(error, where, secret)
        if fault is None:
            raise
        raise fault from error
