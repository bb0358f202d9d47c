"""The ``fhirbin`` command: serve, client, keys, migrate, gc, verify, copy-deployment, put, get,
export, import, config-docs.

The only module that reads the environment: settings come from the one table in config.py,
``FHIRBIN_<NAME>`` variables first, then flags. ``serve`` runs granian with the ASGI interface;
granian starts its workers from the import string ``fhirbin.cli:asgi_app``, which rebuilds the
settings from the environment the parent prepared.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import click
import orjson
import structlog
from rich.console import Console
from rich.table import Table

from fhirbin import __version__, transfer
from fhirbin.auth.clients import hash_secret, new_client_id, new_client_secret
from fhirbin.auth.jwks import JwksError, parse_jwks_text, validate_jwks_url
from fhirbin.auth.scopes import idle_scopes, validate_registration_scope
from fhirbin.config import SETTINGS, Settings, SettingsError, load_settings, settings_markdown
from fhirbin.metadata.base import Client, MetadataStore

#: granian's per-connection read buffer (hyper's max_buf_size; 408 KiB by default), which is
#: also the largest body chunk it hands over. Measured on 1 GiB uploads (curl, 2 cores):
#: 2.2 s at the default, 1.5 s at 2 MiB (a quarter of the messages through the event loop).
#: The buffer grows only as data arrives; headers are still refused over
#: FHIRBIN_MAX_HEADER_SIZE by LimitsMiddleware, and hyper answers 431 past this buffer.
READ_BUFFER = 2 * 1024 * 1024


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(os.environ, overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


def _serve_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """One click option per settings row marked ``serve_flag``; help text from the table."""
    for setting in reversed([s for s in SETTINGS if s.serve_flag]):
        kind: Any = click.Path(path_type=Path) if setting.type is Path else setting.type
        func = click.option(
            setting.flag,
            setting.name,
            type=kind,
            default=None,
            help=f"{setting.help} [env: {setting.env}; default: {setting.default}]",
        )(func)
    return func


def _data_dir_option(func: Callable[..., Any]) -> Callable[..., Any]:
    setting = next(s for s in SETTINGS if s.name == "data_dir")
    return click.option(
        "--data-dir",
        "data_dir",
        type=click.Path(path_type=Path),
        default=None,
        help=f"{setting.help} [env: {setting.env}]",
    )(func)


def configure_logging(level: str, log_format: str = "auto") -> None:
    """structlog (and the standard library's loggers: granian, alembic) to standard error, one
    line per event: JSON, or text for a person at a terminal (FHIRBIN_LOG_FORMAT).

    Every request writes an access line (api/observe.py), so the JSON path is kept lean: a
    timestamp formatted once a second, orjson, bytes straight to the stream, each logger
    resolved once (bench/observe_cost.py measured each of these on the 1 KiB read).
    """
    log_format = resolve_log_format(log_format)
    shared = _shared_processors(log_format)
    renderer: Any
    factory: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        lines = _Lines(sys.stderr.buffer)
        factory = lambda *_: lines  # noqa: E731
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        factory = structlog.WriteLoggerFactory(sys.stderr)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(log_format))
    logging.basicConfig(handlers=[handler], level=level.upper(), force=True)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


class _Lines:
    """structlog's JSON lines to a byte stream. Access lines (info, debug) are written without
    a flush of their own: they leave in batches, at most :data:`FLUSH_AFTER` seconds late (a
    write past it flushes, and the app's lifespan flushes standard error every second), which
    saves a system call per request; warnings and errors are flushed at once."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._flushed = time.monotonic()

    def info(self, message: bytes) -> None:
        with self._lock:
            self._stream.write(message + b"\n")
            now = time.monotonic()
            if now - self._flushed >= FLUSH_AFTER:
                self._stream.flush()
                self._flushed = now

    debug = info

    def msg(self, message: bytes) -> None:
        with self._lock:
            self._stream.write(message + b"\n")
            self._stream.flush()
            self._flushed = time.monotonic()

    warning = error = critical = exception = fatal = failure = err = log = msg


#: Seconds an access line may wait in the buffer of standard error.
FLUSH_AFTER = 1.0


def resolve_log_format(log_format: str) -> str:
    """FHIRBIN_LOG_FORMAT's ``auto``: text for a person at a terminal, JSON otherwise."""
    if log_format == "auto":
        return "text" if sys.stderr.isatty() else "json"
    return log_format


def _shared_processors(log_format: str) -> list[Any]:
    pid = os.getpid()  # each worker configures its own logging (asgi_app)
    shared: list[Any] = [structlog.processors.add_log_level, _timestamp, _with_pid(pid)]
    if log_format == "json":
        shared.append(structlog.processors.format_exc_info)
    return shared


def log_formatter(log_format: str) -> logging.Formatter:
    """The standard library's records (granian, alembic) in the same shape as fhirbin's own."""
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_text)
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *_shared_processors(log_format)],
    )


def _json_text(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _granian_logging(log_format: str) -> dict[str, Any]:
    """granian's own lines (start, workers, shutdown) on stderr, formatted as fhirbin's."""
    return {
        "formatters": {
            "fhirbin": {"()": "fhirbin.cli.log_formatter", "log_format": log_format},
        },
        "handlers": {
            "stderr": {
                "formatter": "fhirbin",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "_granian": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        },
    }


_second: tuple[int, str] = (0, "")


def _timestamp(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
    """ISO 8601 UTC with microseconds, the date and time formatted once a second."""
    global _second
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    event["timestamp"] = f"{_second[1]}.{int((now - whole) * 1_000_000):06d}Z"
    return event


def _with_pid(pid: int) -> Callable[[Any, str, dict[str, Any]], dict[str, Any]]:
    def add_pid(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
        event["pid"] = pid
        return event

    return add_pid


@click.group()
@click.version_option(__version__, prog_name="fhirbin")
def cli() -> None:
    """fhirbin: a FHIR R4 Binary service."""
    # Health data: whatever fhirbin creates (database, journal, blobs, keys, temp files) is the
    # service user's alone (docs/operations.md, "Data folder").
    os.umask(0o077)


@cli.command()
@_serve_options
def serve(**flags: Any) -> None:
    """Serve FHIR R4 at http://HOST:PORT/fhir on the embedded store (SQLite + a folder)."""
    settings = _settings(**flags)
    configure_logging(settings.log_level, settings.log_format)
    from fhirbin.runtime import build_inspector, build_screener
    from fhirbin.security.sniff import MissingLibraryError

    try:
        build_screener(settings)  # as each worker will: needs libmagic when it sniffs
        build_inspector(settings)  # an unknown rule in FHIRBIN_INSPECT_ALLOW stops here
    except (MissingLibraryError, SettingsError) as exc:
        raise click.ClickException(str(exc)) from None
    # Granian binds with SO_REUSEPORT, so a second server on a port in use would silently
    # share it (and answer half the requests from another data folder). A plain bind first
    # (SO_REUSEADDR only skips connections left in TIME_WAIT) finds any listener there.
    import socket

    family, kind, proto, _, address = socket.getaddrinfo(
        settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise click.ClickException(
                f"cannot serve on {settings.host}:{settings.port}: {exc.strerror}. Another "
                "server (another fhirbin serve?) is listening there; stop it or choose "
                "another --port."
            ) from None
    _raise_file_limit()
    # Workers rebuild their settings from the environment (asgi_app below).
    for setting in SETTINGS:
        os.environ[setting.env] = str(getattr(settings, setting.name))
    # Each worker keeps its metrics in files here, summed by whichever answers /metrics
    # (metrics.py); fresh for every serve, so no count of an earlier run leaks in. Set
    # before anything imports prometheus-client, which reads it once.
    import shutil
    import tempfile

    from fhirbin.runtime import MULTIPROC_ENV

    metrics_dir = tempfile.mkdtemp(prefix="fhirbin-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    # A SIGTERM before granian takes over its signals still removes the folder.
    signal.signal(signal.SIGTERM, _exit_on_term)
    try:
        _serve(settings)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _serve(settings: Settings) -> None:
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings

    _say_where(settings)
    _say_accel_redirect(settings)
    swept = asyncio.run(_prepare(settings))
    if swept:
        click.echo(f"removed {swept} leftovers of interrupted uploads", err=True)
    click.echo(f"fhirbin {__version__} serving {settings.public_base_url}", err=True)
    Granian(
        target="fhirbin.cli:asgi_app",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.worker_count,
        log_level=settings.log_level,  # type: ignore[arg-type]
        log_dictconfig=_granian_logging(resolve_log_format(settings.log_format)),
        websockets=False,
        # Idle and slow connections must not lock new clients out (docs/operations.md): the
        # kernel queue holds up to 4,096 connections not yet accepted (capped by
        # net.core.somaxconn), and each worker takes up to 16,384 at once (granian's default,
        # backlog / workers, let ~1,000 idle sockets take every place for 30 s or more).
        backlog=4096,
        backpressure=16384,
        # Slow clients: the headers must arrive within FHIRBIN_HEADER_TIMEOUT; an idle
        # keep-alive connection is closed after it too.
        http1_settings=HTTP1Settings(
            header_read_timeout=settings.header_timeout * 1000,
            keep_alive=True,
            max_buffer_size=READ_BUFFER,
        ),
    ).serve()


def _raise_file_limit() -> None:
    """Every connection takes a file descriptor: the soft limit goes up to the hard one, so
    that thousands of idle connections cannot exhaust it (docs/operations.md, "Running")."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def asgi_app() -> Any:
    """Granian's factory target: one application per worker process."""
    from fhirbin.api.app import create_app

    settings = load_settings(os.environ)
    configure_logging(settings.log_level, settings.log_format)
    # ``serve`` migrated once before starting the workers: no worker repeats it (or logs it).
    app = create_app(settings, migrate=False)
    tune_gc()
    return app


def tune_gc() -> None:
    """Keep the garbage collector off the request path's tail latency.

    Everything imported so far (modules, the app) lives as long as the process: ``gc.freeze``
    moves it out of the collector's sight, and a higher first-generation threshold makes the
    young collections that a burst of requests triggers rarer. Measured on the 1 KiB read under
    64 connections: the p99 came from full collections walking the whole heap (bench/).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


#: ``serve`` removes what interrupted uploads left that is untouched for this long (an upload
#: in progress writes at least every megabyte, and FHIRBIN_BODY_TIMEOUT ends a stalled one).
START_SWEEP_AGE = 900


def _say_where(settings: Settings) -> None:
    """Every command that touches the data says which (docs/operations.md, "Data folder")."""
    from fhirbin.runtime import describe

    click.echo(f"fhirbin: {describe(settings)}", err=True)


def _say_accel_redirect(settings: Settings) -> None:
    """FHIRBIN_ACCEL_REDIRECT answers large downloads with no body: only nginx configured for
    it makes them whole (docs/deployment.md, "nginx sends the files"), so say so at start."""
    from fhirbin.runtime import accel_redirect

    if not settings.accel_redirect:
        return
    env = "FHIRBIN_ACCEL_REDIRECT"
    if accel_redirect(settings) is None:
        click.echo(
            f"fhirbin: {env} is set but ignored: the content is not in a local folder", err=True
        )
        return
    click.echo(
        f"fhirbin: {env}={settings.accel_redirect}: large native downloads are answered with "
        "X-Accel-Redirect and no body; only nginx configured for it (docs/deployment.md) may "
        "stand between fhirbin and its clients",
        err=True,
    )


async def _prepare(settings: Settings) -> int:
    """Before the workers start: migrate (under a lock on PostgreSQL), make sure a signing key
    exists, and sweep old upload leftovers; returns how many leftovers went."""
    from fhirbin.runtime import open_runtime

    runtime = await open_runtime(settings)
    try:
        failing = await runtime.check()
        if failing:
            raise click.ClickException(
                "cannot start: " + "; ".join(f"{name}: {why}" for name, why in failing.items())
            )
        return len(await runtime.blobs.leftovers(START_SWEEP_AGE, remove=True))
    finally:
        await runtime.close()


@cli.command()
@_data_dir_option
def migrate(data_dir: Path | None) -> None:
    """Create or upgrade the catalogue schema (serve does this too); idempotent."""
    settings = _settings(data_dir=data_dir)
    asyncio.run(_with_store(settings, _nothing))
    click.echo("the catalogue schema is up to date")


async def _nothing(store: MetadataStore) -> None:
    return None


@cli.group()
def client() -> None:
    """Register, list and revoke OAuth2 clients (works with or without a running server)."""


async def _with_store(settings: Settings, work: Callable[[MetadataStore], Any]) -> Any:
    from fhirbin.runtime import open_catalogue

    _say_where(settings)
    store = await open_catalogue(settings)
    try:
        return await work(store)
    finally:
        await store.close()


@client.command("create")
@click.argument("name")
@click.option(
    "--scope", required=True, help='Scopes the client may ask for, e.g. "system/Binary.rs".'
)
@click.option(
    "--jwks-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="SMART Backend Services: the client's public JWK Set (JSON file); the client then "
    "authenticates with private_key_jwt and gets no secret.",
)
@click.option(
    "--jwks-url",
    help="SMART Backend Services: the https URL of the client's public JWK Set (fetched when "
    "needed); the client authenticates with private_key_jwt and gets no secret.",
)
@_data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def client_create(
    name: str,
    scope: str,
    jwks_file: Path | None,
    jwks_url: str | None,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Register a client; prints its client_id and client_secret (shown only this once).

    With --jwks-file or --jwks-url the client authenticates with signed assertions
    (private_key_jwt) instead, and no secret is made.
    """
    try:
        scope = validate_registration_scope(scope)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scope") from exc
    for item in idle_scopes(scope):
        click.echo(
            f"warning: {item} grants nothing on this server (it serves Binary and AuditEvent)",
            err=True,
        )
    jwks = _registered_jwks(jwks_file, jwks_url)
    settings = _settings(data_dir=data_dir)
    client_id = new_client_id()
    if jwks_file is not None or jwks_url is not None:
        record = Client(
            client_id=client_id,
            name=name,
            scope=scope,
            secret_hash="",  # a key client has no secret (and cannot use one)
            created_at=datetime.now(UTC),
            jwks=jwks,
            jwks_url=jwks_url,
        )
        asyncio.run(_with_store(settings, lambda store: store.add_client(record)))
        keys = f"JWKS at {jwks_url}" if jwks_url else f"JWKS from {jwks_file}"
        if as_json:
            out = {"client_id": client_id, "name": name, "scope": scope}
            click.echo(json.dumps({**out, "token_endpoint_auth_method": "private_key_jwt"}))
            return
        click.echo(f"client_id:     {client_id}")
        click.echo(f"auth method:   private_key_jwt ({keys})")
        click.echo(f"scope:         {scope}")
        return
    secret = new_client_secret()
    record = Client(
        client_id=client_id,
        name=name,
        scope=scope,
        secret_hash=hash_secret(secret),
        created_at=datetime.now(UTC),
    )
    asyncio.run(_with_store(settings, lambda store: store.add_client(record)))
    if as_json:
        click.echo(
            json.dumps(
                {"client_id": client_id, "client_secret": secret, "name": name, "scope": scope}
            )
        )
        return
    click.echo(f"client_id:     {client_id}")
    click.echo(f"client_secret: {secret}")
    click.echo(f"scope:         {scope}")
    click.echo("The secret is shown only now; fhirbin keeps only a slow hash of it.", err=True)


def _registered_jwks(jwks_file: Path | None, jwks_url: str | None) -> str | None:
    """The JWK Set text to store for --jwks-file (checked strictly), after checking --jwks-url."""
    if jwks_file is not None and jwks_url is not None:
        raise click.UsageError("give --jwks-file or --jwks-url, not both")
    if jwks_url is not None:
        try:
            validate_jwks_url(jwks_url)
        except JwksError as exc:
            raise click.BadParameter(str(exc), param_hint="--jwks-url") from exc
        return None
    if jwks_file is None:
        return None
    try:
        text = jwks_file.read_text(encoding="utf-8")
        parse_jwks_text(text, strict=True)
    except (OSError, UnicodeDecodeError, JwksError) as exc:
        raise click.BadParameter(f"{jwks_file}: {exc}", param_hint="--jwks-file") from exc
    document = json.loads(text)
    if "keys" not in document:  # one bare JWK: stored as a set of one
        document = {"keys": [document]}
    return json.dumps(document, separators=(",", ":"))


@client.command("list")
@_data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def client_list(data_dir: Path | None, as_json: bool) -> None:
    """List registered clients (never their secrets)."""
    clients: list[Client] = asyncio.run(
        _with_store(_settings(data_dir=data_dir), lambda store: store.list_clients())
    )
    rows = [
        {
            "client_id": c.client_id,
            "name": c.name,
            "scope": c.scope,
            "auth": "client_secret" if c.secret_hash else "private_key_jwt",
            "created_at": c.created_at.isoformat(),
            "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None,
        }
        for c in clients
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    columns = ("client_id", "name", "auth", "scope", "created", "status")
    lines = [
        (
            row["client_id"],
            row["name"],
            row["auth"],
            row["scope"],
            row["created_at"],
            f"revoked {row['revoked_at']}" if row["revoked_at"] else "active",
        )
        for row in rows
    ]
    if not sys.stdout.isatty():
        # Not a terminal: whole values, one client a line, tab-separated (nothing cut).
        click.echo("\t".join(columns))
        for line in lines:
            click.echo("\t".join(str(value) for value in line))
        return
    table = Table(*columns)
    for line in lines:
        table.add_row(*(str(value) for value in line))
    Console().print(table)


@client.command("revoke")
@click.argument("client_id")
@_data_dir_option
def client_revoke(client_id: str, data_dir: Path | None) -> None:
    """Revoke a client: no new tokens, and its live tokens stop working."""
    when = datetime.now(UTC)
    found = asyncio.run(
        _with_store(
            _settings(data_dir=data_dir), lambda store: store.revoke_client(client_id, when)
        )
    )
    if not found:
        raise click.ClickException(f"no client with id {client_id}")
    click.echo(f"revoked {client_id}")


@cli.group()
def keys() -> None:
    """The token signing keys kept in the catalogue and shared by every node."""


@keys.command("rotate")
@_data_dir_option
def keys_rotate(data_dir: Path | None) -> None:
    """Add a new signing key. Nodes sign with it once every node has seen it; older keys
    keep verifying the tokens they signed until those expire."""
    from fhirbin.runtime import rotate_keys

    settings = _settings(data_dir=data_dir)
    if settings.signing_key_path is not None:
        raise click.UsageError(
            "FHIRBIN_SIGNING_KEY names a key file: replace that file on every node instead"
        )
    material = asyncio.run(_with_store(settings, rotate_keys))
    click.echo(f"new signing key {material.kid}")


@keys.command("list")
@_data_dir_option
def keys_list(data_dir: Path | None) -> None:
    """List the signing keys (ids and ages, never the keys)."""
    settings = _settings(data_dir=data_dir)

    async def listing(store: MetadataStore) -> list[tuple[str, str]]:
        return [(k.kid, k.created_at.isoformat()) for k in await store.signing_keys()]

    for kid, created in asyncio.run(_with_store(settings, listing)):
        click.echo(f"{kid}\t{created}")


@cli.command("gc")
@_data_dir_option
@click.option(
    "--older-than",
    type=click.IntRange(min=0),
    default=3600,
    show_default=True,
    help="Only remove what is older than this many seconds (uploads in flight are younger).",
)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
def gc_command(data_dir: Path | None, older_than: int, dry_run: bool) -> None:
    """Remove content no version references and leftovers of interrupted uploads."""
    from fhirbin.maintenance import collect

    settings = _settings(data_dir=data_dir)
    _say_where(settings)

    async def work() -> Any:
        from fhirbin.runtime import open_runtime

        runtime = await open_runtime(settings)
        try:
            return await collect(
                runtime.blobs.inner, runtime.catalogue, older_than=older_than, dry_run=dry_run
            )
        finally:
            await runtime.close()

    done = asyncio.run(work())
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} {len(done.blobs)} unreferenced contents and {len(done.leftovers)} upload "
        f"leftovers: {done.count} objects, {done.bytes} bytes"
    )


@cli.command("verify")
@_data_dir_option
def verify_command(data_dir: Path | None) -> None:
    """Re-hash every content the catalogue references; exit 1 naming each missing or corrupt
    one (its hash and the Binary ids that use it)."""
    from fhirbin.maintenance import verify

    settings = _settings(data_dir=data_dir)
    _say_where(settings)

    async def work() -> Any:
        from fhirbin.runtime import open_runtime

        runtime = await open_runtime(settings)
        try:
            return await verify(runtime.blobs.inner, runtime.catalogue)
        finally:
            await runtime.close()

    checked, problems = asyncio.run(work())
    for problem in problems:
        ids = ", ".join(f"Binary/{i}" for i in problem.binary_ids)
        detail = f" ({problem.detail})" if problem.detail else ""
        click.echo(f"{problem.kind}: {problem.sha256} used by {ids}{detail}", err=True)
    click.echo(f"checked {checked} contents: {len(problems)} missing or corrupt")
    if problems:
        sys.exit(1)


@cli.command("copy-deployment")
@_data_dir_option
@click.option("--to-database-url", required=True, help="The target catalogue (postgresql://...).")
@click.option("--to-storage-url", default="", help="The target content store (s3://bucket/prefix).")
@click.option("--to-s3-endpoint-url", default="", help="The target store's S3 endpoint.")
def copy_deployment(
    data_dir: Path | None, to_database_url: str, to_storage_url: str, to_s3_endpoint_url: str
) -> None:
    """Copy this deployment (FHIRBIN_* settings: catalogue with history, clients, keys, audit,
    and every content) into another one, checking every content's hash on arrival. Idempotent:
    run it again to copy what was added meanwhile (docs/deployment.md)."""
    from dataclasses import replace

    from fhirbin.maintenance import copy_content
    from fhirbin.metadata.transfer import copy_catalogue
    from fhirbin.runtime import open_catalogue, open_content_store

    source = _settings(data_dir=data_dir)
    target = replace(
        source,
        database_url=to_database_url,
        storage_url=to_storage_url,
        s3_endpoint_url=to_s3_endpoint_url,
    )
    _say_where(source)
    click.echo("copying into:", err=True)
    _say_where(target)

    async def work() -> tuple[dict[str, int], tuple[int, int]]:
        from_catalogue = await open_catalogue(source)
        to_catalogue = await open_catalogue(target)
        from_blobs = open_content_store(source, os.environ)
        to_blobs = open_content_store(target, os.environ)
        try:
            contents = await copy_content(from_blobs, to_blobs, from_catalogue)
            # Content first: the target's catalogue never names content it does not have.
            counts = await copy_catalogue(from_catalogue, to_catalogue)
            return counts, contents
        finally:
            for store in (from_blobs, to_blobs):
                await store.close()
            for catalogue in (from_catalogue, to_catalogue):
                await catalogue.close()

    counts, (copied, skipped) = asyncio.run(work())
    summary = ", ".join(f"{count} {kind}" for kind, count in counts.items())
    click.echo(f"copied {copied} contents ({skipped} were there already); catalogue: {summary}")


# --- moving data over HTTP: put, get, export, import (transfer.py) --------------------------


def _server_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--server, --client-id and --client-secret, each also from its FHIRBIN_* variable."""
    for flag, env, what in reversed(
        [
            ("--server", "FHIRBIN_SERVER", "The FHIR base URL, e.g. https://host/fhir."),
            ("--client-id", "FHIRBIN_CLIENT_ID", "The client's id (client_credentials)."),
            ("--client-secret", "FHIRBIN_CLIENT_SECRET", "The client's secret."),
        ]
    ):
        func = click.option(
            flag, envvar=env, required=True, show_envvar=True, help=f"{what} [env: {env}]"
        )(func)
    return func


@contextlib.contextmanager
def _session(server: str, client_id: str, client_secret: str) -> Iterator[transfer.Session]:
    """A transfer session; a failure that ends the command exits with its code."""
    try:
        with transfer.Session(server, client_id, client_secret) as session:
            yield session
    except transfer.TransferError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)


@contextlib.contextmanager
def _meter(label: str, total: int | None) -> Iterator[transfer.Meter]:
    """A rich progress bar (bytes, bytes/s, ETA) on a terminal's standard error; else nothing."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda _: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(label, total=total)
        yield lambda moved: progress.advance(task, moved)


def _failed(failures: list[str]) -> None:
    for failure in failures:
        click.echo(f"Error: {failure}", err=True)


@cli.command("put")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--type", "content_type", help="The content type (default: guessed per file).")
@click.option("--security-context", help="The securityContext reference, e.g. Patient/123.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_server_options
def put_command(
    files: tuple[Path, ...],
    content_type: str | None,
    security_context: str | None,
    as_json: bool,
    server: str,
    client_id: str,
    client_secret: str,
) -> None:
    """Store each FILE as a new Binary and print its id (exit 1 if any was refused)."""
    failures: list[str] = []
    total = sum(path.stat().st_size for path in files)
    with _session(server, client_id, client_secret) as session, _meter("put", total) as meter:
        for path in files:
            try:
                stored = session.put(path, content_type, security_context, meter=meter)
            except transfer.TransferError as exc:
                if exc.exit_code != transfer.EXIT_FAILED:
                    raise
                failures.append(str(exc))
                continue
            if as_json:
                click.echo(json.dumps(stored.manifest(file=str(path))))
            else:
                click.echo(stored.id)
    _failed(failures)
    sys.exit(transfer.EXIT_FAILED if failures else transfer.EXIT_OK)


@cli.command("get")
@click.argument("binary_id", metavar="ID")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file (default: standard output).",
)  # fmt: skip
@click.option("--version", "version", type=click.IntRange(min=1), help="A past version.")
@_server_options
def get_command(
    binary_id: str,
    output: Path | None,
    version: int | None,
    server: str,
    client_id: str,
    client_secret: str,
) -> None:
    """Write a Binary's content (its native bytes) to FILE or standard output."""
    with _session(server, client_id, client_secret) as session:
        if output is None:
            session.get(binary_id, sys.stdout.buffer, version=version)
            sys.stdout.buffer.flush()
            return
        partial = output.with_name(output.name + ".part")
        try:
            with _meter(binary_id, None) as meter, partial.open("wb") as sink:
                session.get(binary_id, sink, version=version, meter=meter)
            partial.replace(output)
        finally:
            partial.unlink(missing_ok=True)


@cli.command("export")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per exported Binary.")
@_server_options
def export_command(
    folder: Path, as_json: bool, server: str, client_id: str, client_secret: str
) -> None:
    """Every current Binary into FOLDER: content/<id> and manifest.ndjson; run it again to
    resume (what is there already is skipped)."""
    with _session(server, client_id, client_secret) as session, _meter("export", None) as meter:
        outcome = transfer.export(session, folder, meter=meter)
    lines = [f"{entry['id']}\t{entry['size']}" for entry in outcome.done]
    _finish(outcome, "exported", "Binaries", lines, as_json)


def _finish(
    outcome: transfer.Outcome, verb: str, things: str, lines: list[str], as_json: bool
) -> None:
    """An export's or an import's result: a line (or JSON object) per Binary on stdout, the
    counts on stderr, the exit code."""
    for entry, line in zip(outcome.done, lines, strict=True):
        click.echo(json.dumps(entry) if as_json else line)
    click.echo(
        f"{verb} {len(outcome.done)} {things}, {outcome.skipped} were there already, "
        f"{len(outcome.failures)} failed",
        err=True,
    )
    _failed(outcome.failures)
    sys.exit(outcome.exit_code)


@cli.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--jobs", type=click.IntRange(min=1, max=64), default=4, show_default=True,
              help="Transfers in parallel.")  # fmt: skip
@click.option("--type", "content_type", help="Content type of plain files (default: guessed).")
@click.option("--security-context", help="securityContext of plain files, e.g. Patient/123.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per stored Binary.")
@_server_options
def import_command(
    folder: Path,
    jobs: int,
    content_type: str | None,
    security_context: str | None,
    as_json: bool,
    server: str,
    client_id: str,
    client_secret: str,
) -> None:
    """Store FOLDER: an export keeps its ids (update-as-create); any other folder of files gets
    new ids, recorded in FOLDER/fhirbin-import.ndjson. Running it again stores nothing new."""
    try:
        plan = transfer.plan_import(folder)
    except transfer.TransferError as exc:
        raise click.ClickException(str(exc)) from None
    total = sum(path.stat().st_size for path, _ in plan if path.is_file())
    with _session(server, client_id, client_secret) as session, _meter("import", total) as meter:
        outcome = transfer.import_folder(
            session, folder, jobs=jobs, content_type=content_type,
            security_context=security_context, meter=meter,
        )  # fmt: skip
    outcome.done.sort(key=lambda e: str(e["file"]))
    lines = [f"{entry['file']}\t{entry['id']}" for entry in outcome.done]
    _finish(outcome, "imported", "files", lines, as_json)


@cli.command("config-docs")
@click.option("--write", is_flag=True, help="Rewrite docs/configuration.md and the README table.")
def config_docs(write: bool) -> None:
    """Print (or write) the configuration table generated from the settings table."""
    from fhirbin.docs import write_config_docs

    if write:
        for path in write_config_docs(Path.cwd()):
            click.echo(f"wrote {path}")
    else:
        click.echo(settings_markdown(), nl=False)


def main() -> None:
    from fhirbin.faults import DependencyUnavailable, OutOfSpace

    try:
        cli()
    except (DependencyUnavailable, OutOfSpace) as fault:
        # A command that cannot reach the database or the content store says which and why
        # (the detail names the setting, never a password), not a traceback.
        click.echo(f"Error: {fault}", err=True)
        sys.exit(1)
