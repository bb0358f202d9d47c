"""The transfer client: moving Binaries in and out of a running fhirbin over HTTP.

``fhirbin put``, ``get``, ``export`` and ``import`` (cli.py) are thin shells over this module:
it holds the HTTP conversation (a client_credentials token, refreshed when it expires; native
uploads and downloads streamed from and to files, never read whole), the export layout and the
import rules. What the user sees (progress bars, lines, JSON) is the CLI's; here progress is a
callback told how many bytes moved.

Export layout (docs/operations.md#moving-data): ``DIR/manifest.ndjson``, one JSON object per
line (``id``, ``version``, ``contentType``, ``securityContext``, ``sha256``, ``size``, ``file``),
and each content in ``DIR/content/<id>``. A line is appended only once its file is complete, so
an interrupted export resumes where it stopped; the last line of an id wins.

Import: a folder with ``manifest.ndjson`` is an export and keeps its ids (PUT, update-as-create,
so references such as a DocumentReference's still resolve); any other folder is a set of files,
each stored under a new id (POST) and recorded in ``DIR/fhirbin-import.ndjson``. Either way a
second run stores nothing new: an export's Binary whose current content on the server already
has the same bytes is skipped, and a file already recorded with the same SHA-256 is skipped.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import httpx

from fhirbin.security.sniff import UNIDENTIFIED, MissingLibraryError, sniff

#: Exit codes of the transfer commands.
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # the server refused or failed at least one transfer
EXIT_USAGE: Final = 2  # click's own: a bad flag or a missing argument
EXIT_AUTH: Final = 3  # the credentials were refused
EXIT_UNREACHABLE: Final = 4  # no answer from the server

MANIFEST: Final = "manifest.ndjson"
IMPORTED: Final = "fhirbin-import.ndjson"
CONTENT: Final = "content"
CHUNK: Final = 1024 * 1024
#: Binaries listed per search page by ``export``.
PAGE: Final = 1000
#: A token is renewed this many seconds before it expires.
TOKEN_MARGIN_S: Final = 30.0

#: Told how many more bytes moved.
Meter = Callable[[int], None]


def _nothing(_: int) -> None:
    return None


class Sink(Protocol):
    """Where downloaded bytes go: a file opened for writing, standard output, a hasher."""

    def write(self, data: bytes, /) -> int: ...


class TransferError(Exception):
    """A transfer that did not happen; ``exit_code`` is what the command exits with."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Stored:
    """One Binary version as the server stored or served it."""

    id: str
    version: int
    content_type: str
    security_context: str | None
    sha256: str
    size: int

    def manifest(self, **extra: object) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "contentType": self.content_type,
            "securityContext": self.security_context,
            "sha256": self.sha256,
            "size": self.size,
            **extra,
        }


@dataclass(frozen=True)
class Listed:
    """A current Binary as a search lists it (without its content)."""

    id: str
    version: int
    content_type: str
    security_context: str | None


def guess_type(path: Path) -> str:
    """The media type of a file: from its bytes (libmagic) when they say something specific,
    else from its name, else ``application/octet-stream``."""
    with path.open("rb") as stream:
        head = stream.read(8192)
    by_name, _ = mimetypes.guess_type(path.name, strict=False)
    try:
        by_bytes = sniff(head).media_type
    except MissingLibraryError:  # no libmagic: the name alone decides
        by_bytes = UNIDENTIFIED
    generic = {UNIDENTIFIED, "application/octet-stream", "text/plain", "application/x-empty"}
    if by_bytes not in generic:
        return by_bytes
    return by_name or (by_bytes if by_bytes != UNIDENTIFIED else "application/octet-stream")


def _file_chunks(path: Path, meter: Meter, digest: Any) -> Iterator[bytes]:
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            meter(len(chunk))
            yield chunk


def _version_of(etag: str | None) -> int:
    if not etag:
        raise TransferError("the server's answer has no ETag")
    return int(etag.removeprefix("W/").strip('"'))


def _diagnostics(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        issues = body.get("issue") or []
        if issues and isinstance(issues[0], dict) and issues[0].get("diagnostics"):
            return str(issues[0]["diagnostics"])
        if body.get("error_description"):
            return str(body["error_description"])
    return response.reason_phrase


class Session:
    """An HTTP session with one fhirbin (``server``: its FHIR base URL) as one client.

    Thread-safe: ``import`` runs transfers in parallel on one session.
    """

    def __init__(
        self,
        server: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self._credentials = (client_id, client_secret)
        self.http = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), transport=transport)
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # Tokens.

    def _bearer(self, *, renew: bool = False) -> dict[str, str]:
        with self._lock:
            if renew or self._token is None or self._token[1] < time.monotonic():
                self._token = self._fetch_token()
            return {"Authorization": f"Bearer {self._token[0]}"}

    def _fetch_token(self) -> tuple[str, float]:
        response = self._call(
            lambda: self.http.post(
                f"{self.server}/auth/token",
                data={"grant_type": "client_credentials"},
                auth=self._credentials,
            )
        )
        if response.status_code != 200:
            raise TransferError(
                f"the server refused the client credentials: {_diagnostics(response)}",
                EXIT_AUTH,
            )
        body = response.json()
        lifetime = float(body.get("expires_in", 300))
        return str(body["access_token"]), time.monotonic() + lifetime - TOKEN_MARGIN_S

    def _call(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        try:
            return send()
        except httpx.TransportError as exc:
            raise TransferError(
                f"no answer from {self.server}: {exc or type(exc).__name__}", EXIT_UNREACHABLE
            ) from exc

    def _request(
        self, method: str, path: str, *, body: Callable[[], Iterable[bytes]] | None = None,
        headers: dict[str, str] | None = None, params: dict[str, str] | None = None,
    ) -> httpx.Response:  # fmt: skip
        """One request with a token; a 401 (the token expired early) is retried once with a
        new one, the body read again from its file."""

        def send(auth: dict[str, str]) -> httpx.Response:
            return self._call(
                lambda: self.http.request(
                    method,
                    f"{self.server}/{path}",
                    content=None if body is None else body(),
                    headers={**(headers or {}), **auth},
                    params=params,
                )
            )

        response = send(self._bearer())
        if response.status_code == 401:
            response = send(self._bearer(renew=True))
        return response

    @staticmethod
    def _ok(response: httpx.Response, what: str) -> None:
        if response.status_code >= 400:
            raise TransferError(f"{what}: {response.status_code} {_diagnostics(response)}")

    # Uploads.

    def put(
        self,
        path: Path,
        content_type: str | None = None,
        security_context: str | None = None,
        *,
        binary_id: str | None = None,
        meter: Meter = _nothing,
    ) -> Stored:
        """Store a file's bytes: a new Binary (POST), or a version of ``binary_id`` (PUT,
        update-as-create when the id is new)."""
        kind = content_type or guess_type(path)
        size = path.stat().st_size
        headers = {"Content-Type": kind, "Content-Length": str(size), "Prefer": "return=minimal"}
        if security_context:
            headers["X-Security-Context"] = security_context
        digest = hashlib.sha256()

        def body() -> Iterator[bytes]:
            nonlocal digest
            digest = hashlib.sha256()
            return _file_chunks(path, meter, digest)

        if binary_id is None:
            response = self._request("POST", "Binary", body=body, headers=headers)
        else:
            response = self._request("PUT", f"Binary/{binary_id}", body=body, headers=headers)
        self._ok(response, str(path))
        location = response.headers.get("location", "")
        stored_id = location.split("/Binary/", 1)[-1].split("/", 1)[0] if location else binary_id
        if not stored_id:
            raise TransferError(f"{path}: the server's answer has no Location")
        return Stored(
            stored_id,
            _version_of(response.headers.get("etag")),
            kind,
            security_context,
            digest.hexdigest(),
            size,
        )

    # Downloads.

    def get(
        self, binary_id: str, sink: Sink, *, version: int | None = None,
        meter: Meter = _nothing,
    ) -> Stored:  # fmt: skip
        """Stream a Binary's native bytes (the current version, or ``version``) into ``sink``."""
        path = f"Binary/{binary_id}" + (f"/_history/{version}" if version is not None else "")
        for renew in (False, True):
            auth = self._bearer(renew=renew)
            try:
                with self.http.stream(
                    "GET", f"{self.server}/{path}", headers={**auth, "Accept": "*/*"}
                ) as response:
                    if response.status_code == 401 and not renew:
                        continue
                    if response.status_code >= 400:
                        response.read()
                        self._ok(response, f"Binary/{binary_id}")
                    digest = hashlib.sha256()
                    size = 0
                    for chunk in response.iter_bytes(CHUNK):
                        sink.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        meter(len(chunk))
                    return Stored(
                        binary_id,
                        _version_of(response.headers.get("etag")),
                        response.headers.get("content-type", "application/octet-stream"),
                        response.headers.get("x-security-context"),
                        digest.hexdigest(),
                        size,
                    )
            except httpx.TransportError as exc:
                raise TransferError(
                    f"no answer from {self.server}: {exc or type(exc).__name__}",
                    EXIT_UNREACHABLE,
                ) from exc
        raise TransferError(f"Binary/{binary_id}: the server refused the token", EXIT_AUTH)

    def current(self, binary_id: str) -> tuple[int, int] | None:
        """(version, size) of a Binary's current version; None if unknown or deleted."""
        response = self._request("HEAD", f"Binary/{binary_id}", headers={"Accept": "*/*"})
        if response.status_code in (404, 410):
            return None
        self._ok(response, f"Binary/{binary_id}")
        length = int(response.headers.get("content-length", "0"))
        return _version_of(response.headers.get("etag")), length

    def listing(self) -> Iterator[Listed]:
        """Every current Binary, by search pages (``_summary=true``: no content)."""
        params: dict[str, str] | None = {"_summary": "true", "_count": str(PAGE)}
        path = "Binary"
        while True:
            response = self._request(
                "GET", path, params=params, headers={"Accept": "application/fhir+json"}
            )
            self._ok(response, "search")
            bundle = response.json()
            for entry in bundle.get("entry", []):
                resource = entry["resource"]
                context = (resource.get("securityContext") or {}).get("reference")
                yield Listed(
                    resource["id"],
                    int(resource["meta"]["versionId"]),
                    resource["contentType"],
                    context,
                )
            following = [
                link["url"] for link in bundle.get("link", []) if link.get("relation") == "next"
            ]
            if not following:
                return
            path, params = following[0].removeprefix(self.server + "/"), None


# Export and import.


@dataclass
class Outcome:
    """What a bulk command did: lines for the user, and the failures."""

    done: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failures else EXIT_OK


def read_manifest(path: Path, key: str = "id") -> dict[str, dict[str, Any]]:
    """The entries of an NDJSON manifest by ``key``; the last line wins. A torn last line (an
    interrupted run) is ignored."""
    found: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and key in entry:
            found[str(entry[key])] = entry
    return found


class _Appender:
    """Appends manifest lines, whole and flushed, from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def add(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as stream:
            stream.write(line)
            stream.flush()
            os.fsync(stream.fileno())


def export(
    session: Session,
    folder: Path,
    *,
    meter: Meter = _nothing,
    announce: Callable[[Listed], None] | None = None,
) -> Outcome:
    """Every current Binary into ``folder`` (module docstring); resumable."""
    content = folder / CONTENT
    content.mkdir(parents=True, exist_ok=True)
    manifest = folder / MANIFEST
    known = read_manifest(manifest)
    appender = _Appender(manifest)
    outcome = Outcome()
    for listed in session.listing():
        if announce is not None:
            announce(listed)
        before = known.get(listed.id)
        target = content / listed.id
        if (
            before is not None
            and before.get("version") == listed.version
            and target.exists()
            and target.stat().st_size == before.get("size")
        ):
            outcome.skipped += 1
            continue
        partial = content / f"{listed.id}.part"
        try:
            with partial.open("wb") as sink:
                got = session.get(listed.id, sink, version=listed.version, meter=meter)
            partial.replace(target)
        except TransferError as exc:
            partial.unlink(missing_ok=True)
            if exc.exit_code != EXIT_FAILED:
                raise
            outcome.failures.append(str(exc))
            continue
        entry = Stored(
            listed.id,
            listed.version,
            listed.content_type,
            listed.security_context,
            got.sha256,
            got.size,
        ).manifest(file=f"{CONTENT}/{listed.id}")
        appender.add(entry)
        outcome.done.append(entry)
    return outcome


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_export(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def plan_import(folder: Path) -> list[tuple[Path, dict[str, Any] | None]]:
    """The files an import would send, each with its export entry (None: a plain file)."""
    if is_export(folder):
        inside = folder.resolve()
        plan: list[tuple[Path, dict[str, Any] | None]] = []
        for entry in read_manifest(folder / MANIFEST).values():
            path = folder / str(entry.get("file") or "")
            # A manifest names files inside its folder only: never ../ or an absolute path.
            if not entry.get("file") or not path.resolve().is_relative_to(inside):
                raise TransferError(f"{folder / MANIFEST}: bad file entry {entry.get('file')!r}")
            plan.append((path, entry))
        return plan
    files = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and path.name not in (MANIFEST, IMPORTED) and not path.is_symlink()
    )
    return [(path, None) for path in files]


def import_folder(
    session: Session,
    folder: Path,
    *,
    jobs: int = 4,
    content_type: str | None = None,
    security_context: str | None = None,
    meter: Meter = _nothing,
    finished: Callable[[dict[str, Any]], None] | None = None,
) -> Outcome:
    """Store an export (same ids) or a folder of files (new ids); idempotent (docstring)."""
    plan = plan_import(folder)
    journal = folder / IMPORTED
    recorded = {} if is_export(folder) else read_manifest(journal, "file")
    appender = _Appender(journal)
    outcome = Outcome()
    lock = threading.Lock()

    def one(path: Path, entry: dict[str, Any] | None) -> None:
        try:
            result = _import_one(session, folder, path, entry, recorded,
                                 content_type, security_context, meter)  # fmt: skip
        except TransferError as exc:
            if exc.exit_code != EXIT_FAILED:
                raise
            with lock:
                outcome.failures.append(str(exc))
            return
        with lock:
            if result is None:
                outcome.skipped += 1
                return
            if entry is None:
                appender.add(result)
            outcome.done.append(result)
        if finished is not None:
            finished(result)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in [pool.submit(one, path, entry) for path, entry in plan]:
            future.result()
    return outcome


def _import_one(
    session: Session,
    folder: Path,
    path: Path,
    entry: dict[str, Any] | None,
    recorded: dict[str, dict[str, Any]],
    content_type: str | None,
    security_context: str | None,
    meter: Meter,
) -> dict[str, Any] | None:
    """One file: None when it is already there, else its manifest entry."""
    relative = path.relative_to(folder).as_posix()
    if not path.is_file():
        raise TransferError(f"{path}: no such file")
    if entry is None:
        sha256 = _sha256(path)
        before = recorded.get(relative)
        if before is not None and before.get("sha256") == sha256:
            meter(path.stat().st_size)
            return None
        stored = session.put(path, content_type, security_context, meter=meter)
        return stored.manifest(file=relative)
    binary_id = str(entry["id"])
    if _same_content(session, binary_id, path, entry):
        meter(path.stat().st_size)
        return None
    stored = session.put(
        path, entry.get("contentType"), entry.get("securityContext"),
        binary_id=binary_id, meter=meter,
    )  # fmt: skip
    return stored.manifest(file=relative)


def _same_content(session: Session, binary_id: str, path: Path, entry: dict[str, Any]) -> bool:
    """Whether the server's current version of ``binary_id`` already holds these bytes."""
    current = session.current(binary_id)
    if current is None or current[1] != path.stat().st_size:
        return False
    sink = _Hashing()
    session.get(binary_id, sink)
    return sink.hexdigest() == (entry.get("sha256") or _sha256(path))


class _Hashing:
    """A write-only sink that keeps only the SHA-256 of what it is given."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return len(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
