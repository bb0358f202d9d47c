"""A private PostgreSQL cluster for the tests: started once per session, a fresh database per test.

``PostgresCluster.start()`` runs ``initdb`` and ``pg_ctl`` from Debian's ``postgresql`` package
(``/usr/lib/postgresql/<major>/bin``, installed by ``scripts/system-deps.sh``) in a temporary
folder, listening on a free loopback port and on a Unix socket in that folder. As root the server
runs as the ``postgres`` OS user (PostgreSQL refuses to run as root). Durability is switched off
(``fsync=off``): a test cluster never survives a crash, and every commit would otherwise wait for
the disk. Text compares by ICU's en-US collation by default, where "a" sorts before "B" (unlike
code point order): the catalogue's ordered id columns must not depend on that (schema.py).

The superuser reaches the server only through the Unix socket (trust); TCP connections need a
password (scram-sha-256). Tests connect as ``fhirbin``, a role that is NOT a superuser but owns
each database it is given, as a production deployment would.

Missing binaries fail the tests with a message saying how to install them: a backend that is not
tested must not look like a backend that passed.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

ROLE: Final = "fhirbin"
PASSWORD: Final = "fhirbin-test-password"  # a throwaway cluster's; never a real secret
_SUPERUSER: Final = "postgres"

_SETTINGS: Final = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
log_min_messages = warning
"""


class PostgresMissing(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def find_binaries(root: Path = Path("/usr/lib/postgresql")) -> Path:
    """The newest ``<root>/<major>/bin`` holding ``initdb`` and ``pg_ctl``."""
    found = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists() and (p / "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise PostgresMissing(
            f"PostgreSQL server binaries not found in {root}/*/bin: install Debian's "
            "`postgresql` package (scripts/system-deps.sh, which `make test` runs, does it)"
        )
    return found[-1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class PostgresCluster:
    """One running cluster in ``root``; ``new_database()`` hands out fresh databases."""

    root: Path
    port: int
    binaries: Path
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    running: bool = False
    _migrated: str | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @classmethod
    def start(cls) -> PostgresCluster:
        """Create and start a cluster; stopped and removed at exit whatever happens."""
        binaries = find_binaries()
        root = Path(tempfile.mkdtemp(prefix="fhirbin-pg-"))
        cluster = cls(root=root, port=free_port(), binaries=binaries)
        atexit.register(cluster.destroy)
        try:
            if os.geteuid() == 0:
                shutil.chown(root, _SUPERUSER, _SUPERUSER)
            cluster._run(
                "initdb", "-D", str(cluster.data), "-U", _SUPERUSER, "--no-sync",
                "--encoding=UTF8", "--locale=C.UTF-8", "--locale-provider=icu",
                "--icu-locale=en-US", "--auth-local=trust", "--auth-host=scram-sha-256",
            )  # fmt: skip
            settings = _SETTINGS.format(port=cluster.port, socket_dir=root)
            with (cluster.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
                conf.write(settings)
            cluster.resume()
            cluster.sql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.binaries / program), *args]
        if os.geteuid() == 0:  # the server refuses to run as root
            return ["runuser", "-u", _SUPERUSER, "--", *command]
        return command

    def _run(self, program: str, *args: str) -> str:
        done = subprocess.run(
            self._command(program, *args), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stderr or done.stdout}"
            )
        return done.stdout

    def resume(self) -> None:
        """Start the server (again), waiting until it accepts connections."""
        log = self.root / "server.log"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(log), "-w", "-t", "60", "start")
        self.running = True

    def stop(self) -> None:
        """Stop the server, cutting every connection (as when a database host goes away).

        "fast", not "immediate": with synchronous_commit off, an immediate stop could lose the
        last commits, and a test that starts the server again expects to find them.
        """
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.running = False

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement as the superuser (over the Unix socket); its output, unaligned."""
        return self._run(
            "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.root),
            "-p", str(self.port), "-U", _SUPERUSER, "-d", database, "-c", statement,
        )  # fmt: skip

    def url(self, database: str, *, password: str = PASSWORD) -> str:
        """The plain ``postgresql://`` URL of ``database`` as the ``fhirbin`` role."""
        return f"postgresql://{ROLE}:{password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database owned by the non-superuser role; its URL."""
        name = f"t_{os.getpid()}_{next(self._names)}"
        # FILE_COPY: with fsync off, copying the template's files beats WAL-logging them.
        self.sql(f"CREATE DATABASE {name} OWNER {ROLE} STRATEGY FILE_COPY")
        return self.url(name)

    def migrated_database(self) -> str:
        """A fresh database with the schema at head, copied from a template migrated once per
        session (what every app test needs; the migration tests use ``new_database``)."""
        if self._migrated is None:
            from fhirbin.metadata.migrate import migrate_sync

            template = f"t_{os.getpid()}_migrated"
            self.sql(f"CREATE DATABASE {template} OWNER {ROLE} STRATEGY FILE_COPY")
            # In a thread of its own: callers may be inside a running event loop.
            with ThreadPoolExecutor(1) as pool:
                pool.submit(migrate_sync, self.url(template)).result()
            self._migrated = template
        name = f"t_{os.getpid()}_{next(self._names)}"
        self.sql(
            f"CREATE DATABASE {name} OWNER {ROLE} TEMPLATE {self._migrated} STRATEGY FILE_COPY"
        )
        return self.url(name)
