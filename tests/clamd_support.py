"""A real clamd for the tests, with a signature database of the project's own.

No signatures can be downloaded here, and the tests must not depend on ClamAV's: the database
holds three signatures written below (ClamAV "Creating signatures" manual):

- ``fhirbin-test.hsb``: the SHA-256 hash signature of the EICAR test file
  (``sha256:size:name``), so EICAR itself is ``Fhirbin.Test.EICAR.UNOFFICIAL``;
- ``fhirbin-test.ndb``: two body signatures (``name:target:offset:hex``, offset ``*`` = anywhere),
  for EICAR inside other content and for :data:`MARKER`, which lets a test plant "malware"
  deep inside a large stream.

clamd runs in the foreground with a minimal ``clamd.conf`` (a unix socket and a loopback TCP
port, no freshclam, no self-check) and starts in well under a second. If clamd is not
installed, the tests that need it FAIL (they never skip): ``scripts/system-deps.sh``, which
``make test`` runs first, installs it.

Use the session fixture :func:`clamd` (import it into a conftest.py), or :func:`start_clamd`
for a clamd with other settings (a small StreamMaxLength).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MARKER = b"FHIRBIN-TEST-MALWARE-MARKER-6b1f0c2e"
EICAR_SIGNATURE = "Fhirbin.Test.EICAR"
MARKER_SIGNATURE = "Fhirbin.Test.Marker"

#: Large enough for the 200 MiB streaming test (clamd's default is 100 MiB). Operators set
#: StreamMaxLength, MaxFileSize and MaxScanSize to at least FHIRBIN_MAX_BINARY_SIZE.
DEFAULT_STREAM_MAX = "512M"


@dataclass
class Clamd:
    """A running clamd: its unix socket, its loopback TCP port and its process."""

    process: subprocess.Popen[bytes]
    workdir: Path
    socket: Path
    tcp_port: int

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.tcp_port}"

    def log(self) -> str:
        path = self.workdir / "clamd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def find_clamd() -> str:
    """The clamd binary, or a test failure that says how to get it."""
    found = shutil.which("clamd") or next(
        (p for p in ("/usr/sbin/clamd", "/usr/local/sbin/clamd") if Path(p).exists()), None
    )
    if found is None:
        pytest.fail(
            "clamd is not installed: run scripts/system-deps.sh (make test does) to install "
            "the Debian package clamav-daemon",
            pytrace=False,
        )
    return found


def write_database(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(EICAR).hexdigest()
    (directory / "fhirbin-test.hsb").write_text(f"{digest}:{len(EICAR)}:{EICAR_SIGNATURE}\n")
    (directory / "fhirbin-test.ndb").write_text(
        f"{EICAR_SIGNATURE}-Body:0:*:{EICAR.hex()}\n{MARKER_SIGNATURE}:0:*:{MARKER.hex()}\n"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _pong(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(path))
            s.sendall(b"zPING\0")
            return s.recv(16) == b"PONG\0"
    except OSError:
        return False


def start_clamd(workdir: Path, *, stream_max_length: str = DEFAULT_STREAM_MAX) -> Clamd:
    """Start clamd on a fresh database in ``workdir``; returns once it answers PING."""
    binary = find_clamd()
    workdir.mkdir(parents=True, exist_ok=True)
    write_database(workdir / "db")
    (workdir / "tmp").mkdir(exist_ok=True)
    sock, port = workdir / "clamd.sock", free_port()
    conf = workdir / "clamd.conf"
    conf.write_text(
        "\n".join(
            [
                "Foreground yes",
                f"LocalSocket {sock}",
                f"TCPSocket {port}",
                "TCPAddr 127.0.0.1",
                f"DatabaseDirectory {workdir / 'db'}",
                f"TemporaryDirectory {workdir / 'tmp'}",
                f"LogFile {workdir / 'clamd.log'}",
                f"StreamMaxLength {stream_max_length}",
                # Files over MaxFileSize / MaxScanSize are reported clean unscanned.
                "MaxFileSize 1G",
                "MaxScanSize 1G",
                "SelfCheck 0",
                "MaxThreads 4",
                "",
            ]
        )
    )
    process = subprocess.Popen(
        [binary, "-c", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Clamd(process=process, workdir=workdir, socket=sock, tcp_port=port)
    deadline = time.monotonic() + 60
    while not _pong(sock):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"clamd did not start:\n{server.log()}", pytrace=False)
        time.sleep(0.05)
    return server


_shared: dict[str, Clamd] = {}


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    """One clamd for the whole session (shared even if several conftests import this)."""
    server = _shared.get("clamd")
    if server is None or server.process.poll() is not None:
        server = start_clamd(tmp_path_factory.mktemp("clamd"))
        _shared["clamd"] = server
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            if _shared.get("clamd") is server:
                del _shared["clamd"]
                server.stop()
