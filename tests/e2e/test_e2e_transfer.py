"""`fhirbin put`, `get`, `export` and `import` against a running `fhirbin serve`
(src/fhirbin/transfer.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import FHIRBIN, Server, free_port, start_server, stop_server

pytestmark = pytest.mark.e2e

SCOPE = "system/Binary.cruds"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 40


def run(
    server: Server | str, credentials: tuple[str, str], *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    base = server if isinstance(server, str) else server.base
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIRBIN_")}
    env.update(
        FHIRBIN_SERVER=base, FHIRBIN_CLIENT_ID=credentials[0], FHIRBIN_CLIENT_SECRET=credentials[1]
    )
    return subprocess.run(
        [FHIRBIN, *args], capture_output=True, env=env, timeout=120, input=stdin, check=False
    )


@pytest.fixture(scope="module")
def credentials(server: Server) -> tuple[str, str]:
    return server.new_client(SCOPE)


def head(server: Server, binary_id: str) -> httpx.Response:
    token = server.token(SCOPE)
    return httpx.head(
        f"{server.base}/Binary/{binary_id}", headers={"Authorization": f"Bearer {token}"}
    )


def test_put_prints_ids_and_get_returns_the_bytes(
    server: Server, credentials: tuple[str, str], tmp_path: Path
) -> None:
    image = tmp_path / "scan"  # no extension: the bytes say PNG
    image.write_bytes(PNG)
    note = tmp_path / "note.txt"
    note.write_text("hello from put\n")

    put = run(server, credentials, "put", str(image), str(note),
              "--security-context", "Patient/123")  # fmt: skip

    assert put.returncode == 0, put.stderr
    image_id, note_id = put.stdout.decode().split()
    assert head(server, image_id).headers["content-type"] == "image/png"
    assert head(server, note_id).headers["content-type"].startswith("text/plain")
    assert head(server, note_id).headers["x-security-context"] == "Patient/123"

    to_stdout = run(server, credentials, "get", image_id)
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert to_stdout.stdout == PNG
    out = tmp_path / "back.txt"
    to_file = run(server, credentials, "get", note_id, "-o", str(out))
    assert to_file.returncode == 0, to_file.stderr
    assert out.read_text() == "hello from put\n"
    assert not list(tmp_path.glob("*.part"))


def test_put_json_and_an_explicit_type_and_get_a_version(
    server: Server, credentials: tuple[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"first")
    put = run(server, credentials, "put", str(data), "--type", "application/octet-stream", "--json")
    assert put.returncode == 0, put.stderr
    line = json.loads(put.stdout)
    assert line["version"] == 1
    assert line["contentType"] == "application/octet-stream"
    assert line["sha256"] == hashlib.sha256(b"first").hexdigest()
    binary_id = line["id"]
    token = server.token(SCOPE)
    httpx.put(
        f"{server.base}/Binary/{binary_id}",
        content=b"second",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"},
    ).raise_for_status()

    assert run(server, credentials, "get", binary_id).stdout == b"second"
    assert run(server, credentials, "get", binary_id, "--version", "1").stdout == b"first"


def test_exit_codes(server: Server, credentials: tuple[str, str], tmp_path: Path) -> None:
    missing = run(server, credentials, "get", "no-such-binary")
    assert missing.returncode == 1
    assert b"not known" in missing.stderr
    refused = run(server, (credentials[0], "wrong secret"), "get", "x")
    assert refused.returncode == 3
    assert b"credentials" in refused.stderr
    nobody = run(f"http://127.0.0.1:{free_port()}/fhir", credentials, "get", "x")
    assert nobody.returncode == 4
    usage = run(server, credentials, "put")
    assert usage.returncode == 2


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = start_server(tmp_path_factory.mktemp("second"), {}, name="second")
    try:
        yield started
    finally:
        stop_server(started)


def test_export_then_import_keeps_ids_and_is_idempotent(
    server: Server, credentials: tuple[str, str], second: Server, tmp_path: Path
) -> None:
    files = []
    for n in range(3):
        path = tmp_path / f"doc{n}.txt"
        path.write_text(f"document {n}\n")
        files.append(str(path))
    put = run(server, credentials, "put", *files, "--security-context", "Patient/7")
    ids = put.stdout.decode().split()
    folder = tmp_path / "export"

    exported = run(server, credentials, "export", str(folder), "--json")

    assert exported.returncode == 0, exported.stderr
    manifest = [json.loads(line) for line in (folder / "manifest.ndjson").read_text().splitlines()]
    by_id = {entry["id"]: entry for entry in manifest}
    assert set(ids) <= set(by_id)
    entry = by_id[ids[0]]
    assert entry["securityContext"] == "Patient/7"
    assert entry["contentType"].startswith("text/plain")
    assert entry["size"] == len("document 0\n")
    assert entry["sha256"] == hashlib.sha256(b"document 0\n").hexdigest()
    assert (folder / entry["file"]).read_bytes() == b"document 0\n"
    # Resumable: a second run finds everything there already.
    again = run(server, credentials, "export", str(folder))
    assert again.returncode == 0, again.stderr
    assert b"exported 0 Binaries" in again.stderr
    # An interrupted run: one file missing from the manifest is fetched again, alone.
    (folder / "manifest.ndjson").write_text(
        "".join(json.dumps(e) + "\n" for e in manifest if e["id"] != ids[1])
    )
    resumed = run(server, credentials, "export", str(folder), "--json")
    assert [json.loads(line)["id"] for line in resumed.stdout.splitlines()] == [ids[1]]

    other = second.new_client(SCOPE)
    imported = run(second, other, "import", str(folder), "--jobs", "3", "--json")

    assert imported.returncode == 0, imported.stderr
    assert run(second, other, "get", ids[2]).stdout == b"document 2\n"
    copy = head(second, ids[0])
    assert copy.headers["x-security-context"] == "Patient/7"
    assert copy.headers["etag"] == 'W/"1"'
    twice = run(second, other, "import", str(folder))
    assert twice.returncode == 0, twice.stderr
    assert b"imported 0 files" in twice.stderr
    assert head(second, ids[0]).headers["etag"] == 'W/"1"'


def test_import_of_plain_files_records_new_ids_and_is_idempotent(
    server: Server, credentials: tuple[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "inbox"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha\n")
    (folder / "sub" / "b.png").write_bytes(PNG)

    first = run(server, credentials, "import", str(folder), "--security-context", "Patient/9")

    assert first.returncode == 0, first.stderr
    lines = dict(line.split("\t") for line in first.stdout.decode().splitlines())
    assert set(lines) == {"a.txt", "sub/b.png"}
    journal = [json.loads(x) for x in (folder / "fhirbin-import.ndjson").read_text().splitlines()]
    assert {e["file"]: e["id"] for e in journal} == lines
    assert run(server, credentials, "get", lines["sub/b.png"]).stdout == PNG
    assert head(server, lines["sub/b.png"]).headers["content-type"] == "image/png"
    assert head(server, lines["a.txt"]).headers["x-security-context"] == "Patient/9"

    twice = run(server, credentials, "import", str(folder))
    assert twice.returncode == 0, twice.stderr
    assert twice.stdout == b""
    assert b"imported 0 files, 2 were there already" in twice.stderr
