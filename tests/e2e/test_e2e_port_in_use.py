"""A second `fhirbin serve` on a port in use refuses to start, naming host and port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.conftest import FHIRBIN, Server, free_port

pytestmark = pytest.mark.e2e


def _second_serve(port: int, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """Runs a second server; one that starts anyway is stopped, workers and all, after 20 s."""
    process = subprocess.Popen(
        [FHIRBIN, "serve", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_a_second_serve_on_the_same_port_refuses_and_names_it(
    server: Server, tmp_path: Path
) -> None:
    port = urlsplit(server.base).port
    assert port is not None
    second = _second_serve(port, tmp_path / "other")
    assert second.returncode != 0
    assert f"127.0.0.1:{port}" in second.stderr
    assert "in use" in second.stderr
    assert not (tmp_path / "other").exists()  # refused before touching anything
    # the first server still answers every request alone
    for _ in range(10):
        assert httpx.get(f"{server.base}/metadata", timeout=5).status_code == 200


def test_a_port_held_by_another_program_is_refused_too(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen()
        second = _second_serve(port, tmp_path / "data")
    assert second.returncode != 0
    assert f"127.0.0.1:{port}" in second.stderr
