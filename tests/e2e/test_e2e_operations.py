"""The operator's commands as an operator runs them: `fhirbin verify`, `gc`, `copy-deployment`,
and what `fhirbin serve` does and says at start (docs/deployment.md, docs/operations.md)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fhirbin.config import Settings, load_settings
from fhirbin.metadata.base import BinaryVersion
from fhirbin.metadata.migrate import MIGRATIONS
from fhirbin.runtime import open_runtime
from fhirbin.security.access import system_access
from tests.e2e.conftest import FHIRBIN, free_port
from tests.pg_support import PostgresCluster
from tests.s3_support import Seaweed

pytestmark = pytest.mark.e2e


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FHIRBIN_", "AWS_"))}
    env.update(values)
    return env


def _run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FHIRBIN, *args], capture_output=True, text=True, env=env, timeout=120, check=check
    )


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _fill(settings: Settings, contents: list[bytes]) -> list[BinaryVersion]:
    """Store Binaries (and an update, a deletion) through the real service."""

    async def work() -> list[BinaryVersion]:
        runtime = await open_runtime(settings)
        access = system_access(runtime.base_url)
        try:
            made = [
                await runtime.service.create(
                    "application/octet-stream", "Patient/1", _one(c), access=access
                )
                for c in contents
            ]
            updated, _ = await runtime.service.update(
                made[0].id, "text/plain", None, _one(b"second version"), access=access
            )
            await runtime.service.delete(made[-1].id, access=access)
            return [updated, *made[1:]]
        finally:
            await runtime.close()

    return asyncio.run(work())


def _blob(settings: Settings, key: str) -> Path:
    return settings.blob_dir / key[:2] / key[2:4] / key


def test_verify_names_missing_and_corrupt_content(tmp_path: Path) -> None:
    settings = load_settings({}, {"data_dir": tmp_path / "data"})
    first, second, _third = _fill(settings, [b"alpha" * 100, b"beta" * 100, b"gamma" * 100])
    env = _env(FHIRBIN_DATA_DIR=str(settings.data_dir))
    clean = _run(env, "verify")
    assert "checked 4 contents: 0 missing or corrupt" in clean.stdout, clean.stdout
    assert str(settings.data_dir.resolve()) in clean.stderr  # says which data it used
    assert first.sha256 is not None
    assert second.sha256 is not None
    corrupt = _blob(settings, first.sha256)
    corrupt.chmod(0o600)
    corrupt.write_bytes(b"not what was stored")
    _blob(settings, second.sha256).unlink()
    broken = _run(env, "verify", check=False)
    assert broken.returncode == 1
    assert f"corrupt: {first.sha256} used by Binary/{first.id}" in broken.stderr
    assert f"missing: {second.sha256} used by Binary/{second.id}" in broken.stderr
    assert "2 missing or corrupt" in broken.stdout


def test_gc_removes_only_old_unreferenced_content_and_leftovers(tmp_path: Path) -> None:
    settings = load_settings({}, {"data_dir": tmp_path / "data"})
    kept = _fill(settings, [b"referenced" * 10, b"also" * 10])
    env = _env(FHIRBIN_DATA_DIR=str(settings.data_dir))
    orphan = _blob(settings, "ab" * 32)
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"x" * 123)
    leftover = settings.blob_dir / "tmp" / "crashed.part"
    leftover.write_bytes(b"y" * 77)
    young = _run(env, "gc", "--dry-run").stdout
    assert "would remove 0 unreferenced contents and 0 upload leftovers" in young
    hour_ago = time.time() - 7200
    for path in (orphan, leftover):
        os.utime(path, (hour_ago, hour_ago))
    dry = _run(env, "gc", "--dry-run").stdout
    assert (
        "would remove 1 unreferenced contents and 1 upload leftovers: 2 objects, 200 bytes" in dry
    )
    assert orphan.exists()
    done = _run(env, "gc").stdout
    assert "removed 1 unreferenced contents and 1 upload leftovers" in done
    assert not orphan.exists()
    assert not leftover.exists()
    assert _run(env, "verify").returncode == 0  # every referenced content is still there
    assert all(_blob(settings, v.sha256).exists() for v in kept if v.sha256)


def test_copy_deployment_moves_an_embedded_deployment_into_postgresql_and_s3(
    tmp_path: Path, postgres: PostgresCluster, seaweed: Seaweed
) -> None:
    source = load_settings({}, {"data_dir": tmp_path / "data"})
    versions = _fill(source, [os.urandom(3000), os.urandom(200 * 1024), b"deleted later"])
    env = _env(FHIRBIN_DATA_DIR=str(source.data_dir), **seaweed.env)
    client = json.loads(_run(env, "client", "create", "app", "--scope", "system/Binary.rs",
                             "--json").stdout)  # fmt: skip
    target_db, target_store = postgres.migrated_database(), seaweed.fresh_url()
    copy = [
        "copy-deployment",
        "--to-database-url", target_db,
        "--to-storage-url", target_store,
        "--to-s3-endpoint-url", seaweed.endpoint,
    ]  # fmt: skip
    first = _run(env, *copy)
    assert "copied 4 contents (0 were there already)" in first.stdout, first.stdout + first.stderr
    again = _run(env, *copy)
    assert "copied 0 contents (4 were there already)" in again.stdout
    target_env = _env(
        FHIRBIN_DATA_DIR=str(tmp_path / "scratch"),
        FHIRBIN_DATABASE_URL=target_db,
        FHIRBIN_STORAGE_URL=target_store,
        FHIRBIN_S3_ENDPOINT_URL=seaweed.endpoint,
        **seaweed.env,
    )
    assert "checked 4 contents: 0 missing or corrupt" in _run(target_env, "verify").stdout
    listed = _run(target_env, "client", "list", "--json").stdout
    assert client["client_id"] in listed
    # The new deployment serves the same Binaries, with the old client's secret.
    port = free_port()
    server = subprocess.Popen(
        [FHIRBIN, "serve", "--port", str(port), "--workers", "1"],
        env=target_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        _wait(base)
        token = httpx.post(
            f"{base}/auth/token",
            data={"grant_type": "client_credentials", "scope": "system/Binary.rs"},
            auth=(client["client_id"], client["client_secret"]),
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        updated = versions[0]
        read = httpx.get(f"{base}/Binary/{updated.id}", headers=auth)
        assert (read.status_code, read.content) == (200, b"second version")
        history = httpx.get(f"{base}/Binary/{updated.id}/_history", headers=auth).json()
        assert history["total"] == 2
        assert httpx.get(f"{base}/Binary/{versions[-1].id}", headers=auth).status_code == 410
    finally:
        server.terminate()
        server.wait(timeout=10)


def _wait(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/metadata", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail("fhirbin serve did not start")


def test_serve_refuses_to_start_naming_a_bad_s3_secret(
    tmp_path: Path, postgres: PostgresCluster, seaweed: Seaweed
) -> None:
    env = _env(
        FHIRBIN_DATA_DIR=str(tmp_path / "data"),
        FHIRBIN_DATABASE_URL=postgres.migrated_database(),
        FHIRBIN_STORAGE_URL=seaweed.fresh_url(),
        FHIRBIN_S3_ENDPOINT_URL=seaweed.endpoint,
        **{**seaweed.env, "AWS_SECRET_ACCESS_KEY": "wrong-secret"},
    )
    started = time.monotonic()
    done = _run(env, "serve", "--port", str(free_port()), check=False)
    assert done.returncode != 0
    assert time.monotonic() - started < 60
    assert "cannot start" in done.stderr
    assert "AWS_SECRET_ACCESS_KEY" in done.stderr
    assert "wrong-secret" not in done.stderr


def test_serve_says_where_its_data_is_sweeps_leftovers_and_keeps_files_private(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    (data / "blobs" / "tmp").mkdir(parents=True)
    crashed = data / "blobs" / "tmp" / "crashed.part"
    crashed.write_bytes(b"half an upload")
    hour_ago = time.time() - 3600
    os.utime(crashed, (hour_ago, hour_ago))
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [FHIRBIN, "serve", "--port", str(port), "--workers", "1"],
            env=_env(FHIRBIN_DATA_DIR=str(data)),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait(f"http://127.0.0.1:{port}/fhir")
    finally:
        server.terminate()
        server.wait(timeout=10)
    said = log.read_text()
    assert f"catalogue SQLite {(data / 'fhirbin.db').resolve()}" in said
    assert f"content {(data / 'blobs').resolve()}" in said
    assert "removed 1 leftovers of interrupted uploads" in said
    assert not crashed.exists()
    revisions = len(list(MIGRATIONS.joinpath("versions").glob("0*.py")))
    assert said.count("Running upgrade") <= revisions  # once, not once per worker
    for path in (data / "fhirbin.db", data / "fhirbin.db-wal"):
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
