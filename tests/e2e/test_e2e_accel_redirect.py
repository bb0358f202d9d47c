"""FHIRBIN_ACCEL_REDIRECT behind a real nginx, configured by the very block docs/deployment.md
documents ("nginx sends the files"): the bytes and the headers a client gets through nginx are
fhirbin's own answer's; ranges, 304s and small contents still come from fhirbin."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Server, free_port, start_server, stop_server
from tests.e2e.test_e2e_seed_flow import bearer, chunks_of

pytestmark = pytest.mark.e2e

DEPLOYMENT = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
HEADING = "## nginx sends the files (`FHIRBIN_ACCEL_REDIRECT`)"
PREFIX = "/_fhirbin_content/"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
LARGE = 48 * 1024 * 1024  # above the small-content cache and the 16 MiB direct-write mark
#: differ between any two answers, or are nginx's own
OWN = {"date", "server", "connection", "x-request-id", "keep-alive"}


def documented_block() -> str:
    """The first ``nginx`` code block under HEADING, verbatim."""
    text = DEPLOYMENT.read_text()
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```nginx\n(.*?)```", section, re.S)
    assert found is not None, "docs/deployment.md lost its nginx block"
    return found.group(1)


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    base: str
    error_log: Path


def start_nginx(root: Path, fhirbin_port: int, blobs: Path) -> Nginx:
    """nginx in the foreground with the documented block, its listen, upstream address and
    alias swapped for this test's; everything else of nginx's under ``root``."""
    site = documented_block()
    for old, new in (
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{fhirbin_port};"),
        ("listen 80;", f"listen 127.0.0.1:{(port := free_port())};"),
        ("alias /srv/fhirbin/data/blobs/;", f"alias {blobs}/;"),
    ):
        assert site.count(old) == 1, old
        site = site.replace(old, new)
    prefix = root / "nginx"
    prefix.mkdir()
    (prefix / "site.conf").write_text(site)
    temps = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx's workers would become "nobody", who cannot read fhirbin's 0400 files;
    # the documentation says: run them as fhirbin's user.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'};\nevents {{ worker_connections 256; }}\n"
        f"http {{\n    access_log off;\n{temps}\n    include {prefix / 'site.conf'};\n}}\n"
    )
    log = prefix / "error.log"
    process = subprocess.Popen(
        [NGINX, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-e", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/fhir"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/metadata", timeout=1).status_code == 200:
                return Nginx(process, base, log)
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"nginx did not start:\n{log.read_text() if log.exists() else ''}")
        time.sleep(0.1)


@dataclass
class Stack:
    behind: Server  # with FHIRBIN_ACCEL_REDIRECT, reached through nginx
    plain: Server  # without it, on the same data folder (so the same Binaries)
    nginx: Nginx


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not (os.path.exists(NGINX) and os.access(NGINX, os.X_OK)):
        pytest.fail("nginx is missing: run scripts/system-deps.sh")
    root = tmp_path_factory.mktemp("accel")
    (root / "a").mkdir()
    behind = start_server(root / "a", {"FHIRBIN_ACCEL_REDIRECT": PREFIX}, name="accel", workers=1)
    try:
        nginx = start_nginx(
            root, int(behind.base.split(":")[2].split("/")[0]), behind.data_dir / "blobs"
        )
    except BaseException:
        stop_server(behind)
        raise
    plain = None
    try:
        plain = start_server(root / "a", {}, name="plain", workers=1)
        yield Stack(behind, plain, nginx)
    finally:
        nginx.process.terminate()
        nginx.process.wait(timeout=10)
        stop_server(behind)
        if plain is not None:
            stop_server(plain)


def create(base: str, token: str, content: bytes | None, size: int = 0) -> str:
    body = content if content is not None else chunks_of(size)
    created = httpx.post(
        f"{base}/Binary",
        content=body,
        headers={**bearer(token), "Content-Type": "application/octet-stream"},
        timeout=120,
    )
    assert created.status_code == 201, created.text
    return created.headers["location"].split("/Binary/")[1].split("/")[0]


def comparable(headers: httpx.Headers) -> dict[str, str]:
    """The headers but nginx's own and those that differ per answer (names are lowercase)."""
    return {name: value for name, value in headers.items() if name not in OWN}


def sha256_of(base: str, binary_id: str, token: str) -> tuple[str, httpx.Headers]:
    got = hashlib.sha256()
    with httpx.stream(
        "GET", f"{base}/Binary/{binary_id}", headers=bearer(token), timeout=120
    ) as answer:
        assert answer.status_code == 200
        for piece in answer.iter_bytes():
            got.update(piece)
    return got.hexdigest(), answer.headers


@pytest.fixture(scope="module")
def large(stack: Stack) -> tuple[str, str]:
    """A large Binary, uploaded through nginx: its id and its SHA-256."""
    digest = hashlib.sha256()
    for piece in chunks_of(LARGE):
        digest.update(piece)
    return create(stack.nginx.base, stack.behind.token(), None, LARGE), digest.hexdigest()


def test_direct_answer_is_a_redirect_without_a_body(stack: Stack, large: tuple[str, str]) -> None:
    """What nginx gets from fhirbin (and what a client reaching fhirbin by mistake would get)."""
    behind_id, _ = large
    answer = httpx.get(
        f"{stack.behind.base}/Binary/{behind_id}", headers=bearer(stack.behind.token())
    )
    assert answer.status_code == 200
    assert answer.content == b""
    assert answer.headers["content-length"] == "0"
    redirect = answer.headers["x-accel-redirect"]
    assert redirect.startswith(PREFIX)
    blob = stack.behind.data_dir / "blobs" / redirect.removeprefix(PREFIX)
    assert blob.is_file()
    assert blob.stat().st_size == LARGE
    head = httpx.head(
        f"{stack.behind.base}/Binary/{behind_id}", headers=bearer(stack.behind.token())
    )
    assert "x-accel-redirect" not in head.headers
    assert head.headers["content-length"] == str(LARGE)


def test_large_download_through_nginx_is_fhirbins_answer(
    stack: Stack, large: tuple[str, str]
) -> None:
    binary_id, digest = large
    through_digest, through = sha256_of(stack.nginx.base, binary_id, stack.behind.token())
    direct_digest, direct = sha256_of(stack.plain.base, binary_id, stack.plain.token())
    assert through_digest == direct_digest == digest
    assert "x-accel-redirect" not in through
    assert comparable(through) == comparable(direct)
    assert through["x-request-id"]
    assert through["content-length"] == str(LARGE)


def test_range_and_304_come_from_fhirbin(stack: Stack, large: tuple[str, str]) -> None:
    behind_id, digest = large
    url = f"{stack.nginx.base}/Binary/{behind_id}"
    auth = bearer(stack.behind.token())
    ranged = httpx.get(url, headers={**auth, "Range": "bytes=10-19"})
    assert ranged.status_code == 206
    assert ranged.headers["content-range"] == f"bytes 10-19/{LARGE}"
    assert ranged.content == b"".join(chunks_of(LARGE))[10:20]
    etag = ranged.headers["etag"]
    not_modified = httpx.get(url, headers={**auth, "If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.headers["etag"] == etag
    assert not_modified.content == b""
    # A Range whose If-Range no longer matches is the whole content, also from nginx
    stale = httpx.get(url, headers={**auth, "Range": "bytes=0-9", "If-Range": 'W/"9"'}, timeout=60)
    assert stale.status_code == 200
    assert hashlib.sha256(stale.content).hexdigest() == digest
    # nginx would answer these from the file (412): fhirbin answers them, as without nginx
    for header in ({"If-Match": etag}, {"If-Unmodified-Since": "Thu, 01 Jan 1998 00:00:00 GMT"}):
        answer = httpx.get(url, headers={**auth, **header}, timeout=60)
        assert answer.status_code == 200, header
        assert len(answer.content) == LARGE


def test_small_binary_comes_whole_from_fhirbin(stack: Stack) -> None:
    token = stack.behind.token()
    small = b"a small attachment\n" * 10
    binary_id = create(stack.nginx.base, token, small)
    direct = httpx.get(f"{stack.behind.base}/Binary/{binary_id}", headers=bearer(token))
    assert direct.content == small
    assert "x-accel-redirect" not in direct.headers
    through = httpx.get(f"{stack.nginx.base}/Binary/{binary_id}", headers=bearer(token))
    assert through.status_code == 200
    assert through.content == small
    assert through.headers["content-length"] == str(len(small))


def test_content_files_are_not_reachable_by_their_url(stack: Stack, large: tuple[str, str]) -> None:
    behind_id, _ = large
    answer = httpx.get(
        f"{stack.behind.base}/Binary/{behind_id}", headers=bearer(stack.behind.token())
    )
    origin = stack.nginx.base.removesuffix("/fhir")
    assert httpx.get(origin + answer.headers["x-accel-redirect"]).status_code == 404


def test_nginx_decides_nothing_from_the_file(stack: Stack, large: tuple[str, str]) -> None:
    """The file's modification time is not the version's Last-Modified (a content stored once
    serves every version that has it; a restored backup keeps old times): conditionals and
    If-Range that fhirbin found not to hold must not make nginx answer 304 or 206 from it."""
    binary_id, digest = large
    auth = bearer(stack.behind.token())
    direct = httpx.get(f"{stack.behind.base}/Binary/{binary_id}", headers=auth)
    blob = stack.behind.data_dir / "blobs" / direct.headers["x-accel-redirect"].removeprefix(PREFIX)
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    os.utime(blob, (978307200, 978307200))  # that date: older than the version
    url = f"{stack.nginx.base}/Binary/{binary_id}"
    for header in (
        {"If-Modified-Since": old},  # before the version: modified (nginx: the file's time)
        {"Range": "bytes=0-9", "If-Range": old},  # not the version's Last-Modified: whole
    ):
        answer = httpx.get(url, headers={**auth, **header}, timeout=60)
        assert answer.status_code == 200, header
        assert hashlib.sha256(answer.content).hexdigest() == digest, header
        assert answer.headers["last-modified"] == direct.headers["last-modified"]
