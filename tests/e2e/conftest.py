"""Start `fhirbin serve` as a real subprocess on a free port, and talk to it over sockets."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

FHIRBIN = shutil.which("fhirbin", path=str(Path(sys.executable).parent)) or "fhirbin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    base: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FHIRBIN, *args, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )

    def new_client(self, scope: str = "system/Binary.rs system/Binary.cud") -> tuple[str, str]:
        out = json.loads(self.cli("client", "create", "e2e", "--scope", scope, "--json").stdout)
        return out["client_id"], out["client_secret"]

    def token(self, scope: str = "system/Binary.rs system/Binary.cud") -> str:
        client_id, secret = self.new_client(scope)
        response = httpx.post(
            f"{self.base}/auth/token",
            data={"grant_type": "client_credentials", "scope": scope},
            auth=(client_id, secret),
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token


def start_server(
    root: Path, env_extra: dict[str, str], *, name: str = "server", workers: int | None = None
) -> Server:
    """``fhirbin serve`` on a free port with a data dir under ``root``; waits until it answers."""
    data_dir = root / "data"
    port = free_port()
    log = root / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIRBIN_")}
    env.update(env_extra)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                FHIRBIN,
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                *(["--workers", str(workers)] if workers else []),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}/fhir"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/metadata", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"fhirbin serve ({name}) did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return Server(base=base, data_dir=data_dir, process=process, log=log)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # The default FHIRBIN_MAX_BINARY_SIZE (1 GiB) is in force: the 1 GiB test sits at the limit.
    # Revocation is checked on every request, so the revocation test need not wait.
    started = start_server(
        tmp_path_factory.mktemp("e2e"), {"FHIRBIN_REVOCATION_CHECK_INTERVAL": "0"}
    )
    try:
        yield started
    finally:
        stop_server(started)


README = Path(__file__).resolve().parents[2] / "README.md"


def run_readme_block(server: Server, heading: str) -> subprocess.CompletedProcess[str]:
    """Run the first ``sh`` block under ``## heading`` of the README, verbatim, against
    ``server``: only its ``BASE=`` line is pointed at the test server's port. It runs in the
    server's folder (next to its ``data``) with ``.venv`` linked to this interpreter's venv, as
    a newcomer would in a clone."""
    section = README.read_text(encoding="utf-8").split(f"## {heading}", 1)[1]
    script = section.split("```sh\n", 1)[1].split("```", 1)[0]
    assert "BASE=http://127.0.0.1:8080/fhir" in script
    script = script.replace("BASE=http://127.0.0.1:8080/fhir", f"BASE={server.base}")
    workdir = server.data_dir.parent
    venv = workdir / ".venv"
    if not venv.exists():
        venv.symlink_to(Path(sys.prefix))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIRBIN_")}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result
