"""Two `fhirbin serve` nodes on one PostgreSQL database and one S3 bucket, over real HTTP.

What a load balancer in front of them relies on (docs/deployment.md): a token from either node
works on both, a write acknowledged by one node is what the other serves next (read, search,
history), racing writers across nodes get exactly one If-Match winner and distinct versions
otherwise, a signed URL made on one node is served by the other, a revocation reaches both,
keys rotate without refusing a live token, and a node
killed mid-upload leaves nothing visible and only garbage that `fhirbin gc` removes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import FHIRBIN, start_server
from tests.pg_support import PostgresCluster
from tests.s3_support import Seaweed

pytestmark = pytest.mark.e2e

#: What clients see behind the load balancer: the same on every node (issuer and audience).
PUBLIC = "http://fhir.example.test/fhir"
SCOPE = "system/Binary.cruds"
CHECK_INTERVAL = 1  # seconds: revocation and key refresh


@dataclass
class Node:
    base: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Cluster:
    env: dict[str, str]
    root: Path
    nodes: list[Node]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FHIRBIN, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
            env=self.env,
            cwd=self.root,
        )

    def client(self) -> tuple[str, str]:
        import json

        out = json.loads(self.cli("client", "create", "e2e", "--scope", SCOPE, "--json").stdout)
        return out["client_id"], out["client_secret"]

    def token(self, node: int = 0, client: tuple[str, str] | None = None) -> str:
        client_id, secret = client or self.client()
        answer = httpx.post(
            f"{self.nodes[node].base}/auth/token",
            data={"grant_type": "client_credentials", "scope": SCOPE},
            auth=(client_id, secret),
            timeout=30,
        )
        answer.raise_for_status()
        token: str = answer.json()["access_token"]
        return token


def _start(env: dict[str, str], root: Path, name: str) -> Node:
    """One node: `fhirbin serve` with one worker (tests/e2e/conftest.py waits until it answers)."""
    served = start_server(root, env, name=name, workers=1)
    return Node(served.base, served.process, served.log)


def _stop(node: Node) -> None:
    if node.process.poll() is None:
        node.process.terminate()
        try:
            node.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.process.kill()


@pytest.fixture(scope="module")
def cluster(
    postgres: PostgresCluster, seaweed: Seaweed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FHIRBIN_", "AWS_"))}
    env.update(seaweed.env)
    env.update(
        {
            "FHIRBIN_DATABASE_URL": postgres.new_database(),  # both nodes migrate it at once
            "FHIRBIN_STORAGE_URL": seaweed.fresh_url(),
            "FHIRBIN_S3_ENDPOINT_URL": seaweed.endpoint,
            "FHIRBIN_BASE_URL": PUBLIC,
            "FHIRBIN_REVOCATION_CHECK_INTERVAL": str(CHECK_INTERVAL),
            "FHIRBIN_DATA_DIR": str(root / "scratch"),
        }
    )
    # Both nodes at the same moment: the schema migration runs once, under the lock.
    with ThreadPoolExecutor(2) as pool:
        nodes = list(pool.map(lambda n: _start(env, root, n), ["node-a", "node-b"]))
    try:
        yield Cluster(env, root, nodes)
    finally:
        for node in nodes:
            _stop(node)


def _auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def test_a_token_from_either_node_works_on_both_and_both_publish_the_same_keys(
    cluster: Cluster,
) -> None:
    a, b = cluster.nodes
    keys = [httpx.get(f"{n.base}/.well-known/jwks.json").json() for n in (a, b)]
    assert keys[0] == keys[1]
    assert len(keys[0]["keys"]) >= 1
    for issuing in (0, 1):
        token = cluster.token(issuing)
        for node in (a, b):
            answer = httpx.get(f"{node.base}/Binary?_id=nothing", headers=_auth(token))
            assert answer.status_code == 200, answer.text


def test_a_write_on_one_node_is_what_the_other_serves_next(cluster: Cluster) -> None:
    token = cluster.token()
    a, b = cluster.nodes
    created = httpx.post(
        f"{a.base}/Binary",
        content=b"version 1",
        headers=_auth(token, **{"Content-Type": "text/plain"}),
    )
    assert created.status_code == 201, created.text
    binary_id = created.headers["location"].split("/Binary/")[1].split("/")[0]
    with httpx.Client(timeout=30) as http:
        for n in range(2, 22):
            writer, reader = (a, b) if n % 2 else (b, a)
            body = f"version {n}".encode()
            put = http.put(
                f"{writer.base}/Binary/{binary_id}",
                content=body,
                headers=_auth(token, **{"Content-Type": "text/plain"}),
            )
            assert put.status_code == 200, put.text
            read = http.get(f"{reader.base}/Binary/{binary_id}", headers=_auth(token))
            assert (read.status_code, read.content) == (200, body)
            assert read.headers["etag"] == f'W/"{n}"'
            found = http.get(f"{reader.base}/Binary?_id={binary_id}", headers=_auth(token))
            assert found.json()["entry"][0]["resource"]["meta"]["versionId"] == str(n)
            history = http.get(
                f"{reader.base}/Binary/{binary_id}/_history?_count=1", headers=_auth(token)
            )
            assert history.json()["total"] == n


def test_a_signed_url_made_on_one_node_is_served_by_the_other(cluster: Cluster) -> None:
    """Signed URLs need no node's memory (docs/decisions.md#signed-urls): node B serves what
    node A signed, bound to its version, until B deletes the Binary; no log holds the sig."""
    token = cluster.token(0)
    a, b = cluster.nodes
    body = os.urandom(300_000)
    created = httpx.post(
        f"{a.base}/Binary", content=body, headers=_auth(token, **{"Content-Type": "image/png"})
    )
    assert created.status_code == 201, created.text
    binary_id = created.headers["location"].split("/Binary/")[1].split("/")[0]
    made = httpx.get(f"{a.base}/Binary/{binary_id}/$signed-url", headers=_auth(token))
    assert made.status_code == 200, made.text
    url: str = made.json()["parameter"][0]["valueUrl"]
    assert url.startswith(f"{PUBLIC}/Binary/{binary_id}/_history/1/$signed-content?sig=")
    on_a, on_b = url.replace(PUBLIC, a.base), url.replace(PUBLIC, b.base)
    served = httpx.get(on_b, timeout=30)
    assert (served.status_code, served.content) == (200, body)
    ranged = httpx.get(on_b, headers={"Range": "bytes=1000-1999"})
    assert (ranged.status_code, ranged.content) == (206, body[1000:2000])
    updated = httpx.put(
        f"{a.base}/Binary/{binary_id}",
        content=b"another image",
        headers=_auth(token, **{"Content-Type": "text/plain"}),
    )
    assert updated.status_code == 200
    assert httpx.get(on_b, timeout=30).content == body  # still version 1
    assert httpx.delete(f"{b.base}/Binary/{binary_id}", headers=_auth(token)).status_code == 204
    assert httpx.get(on_a).status_code == 410
    signature = url.split("?sig=")[1].split(".")[2]
    time.sleep(1.5)  # the access lines leave standard error within a second
    for node in (a, b):
        log = node.log.read_text()
        assert "$signed-content" in log  # its access lines are there, without the sig
        assert signature not in log, node.log


def test_racing_writers_across_nodes(cluster: Cluster) -> None:
    token = cluster.token()
    a, b = cluster.nodes
    headers = _auth(token, **{"Content-Type": "text/plain"})
    created = httpx.post(f"{a.base}/Binary", content=b"start", headers=headers)
    binary_id = created.headers["location"].split("/Binary/")[1].split("/")[0]

    def put(n: int, extra: dict[str, str]) -> httpx.Response:
        node = (a, b)[n % 2]
        return httpx.put(
            f"{node.base}/Binary/{binary_id}",
            content=f"writer {n}".encode(),
            headers={**headers, **extra},
            timeout=60,
        )

    with ThreadPoolExecutor(8) as pool:
        conditional = list(pool.map(lambda n: put(n, {"If-Match": 'W/"1"'}), range(8)))
    assert sorted(r.status_code for r in conditional) == [200] + [412] * 7
    with ThreadPoolExecutor(16) as pool:
        unconditional = list(pool.map(lambda n: put(n, {}), range(16)))
    assert [r.status_code for r in unconditional] == [200] * 16
    versions = sorted(int(r.headers["etag"].strip('W/"')) for r in unconditional)
    assert versions == list(range(3, 19))


def test_a_revocation_reaches_every_node(cluster: Cluster) -> None:
    client = cluster.client()
    token = cluster.token(0, client)
    for node in cluster.nodes:
        assert httpx.get(f"{node.base}/Binary?_id=x", headers=_auth(token)).status_code == 200
    cluster.cli("client", "revoke", client[0])
    time.sleep(CHECK_INTERVAL + 0.5)
    for node in cluster.nodes:
        assert httpx.get(f"{node.base}/Binary?_id=x", headers=_auth(token)).status_code == 401


def test_a_rotated_key_signs_once_every_node_knows_it_and_old_tokens_stay_good(
    cluster: Cluster,
) -> None:
    old_token = cluster.token()
    before = httpx.get(f"{cluster.nodes[0].base}/.well-known/jwks.json").json()["keys"]
    new_kid = cluster.cli("keys", "rotate").stdout.split()[-1]
    # Nodes re-read keys every interval and sign with a new key once it is twice that old.
    time.sleep(3 * CHECK_INTERVAL + 1)
    for node in cluster.nodes:
        keys = httpx.get(f"{node.base}/.well-known/jwks.json").json()["keys"]
        assert keys[0]["kid"] == new_kid
        assert {k["kid"] for k in before} < {k["kid"] for k in keys}
        assert httpx.get(f"{node.base}/Binary?_id=x", headers=_auth(old_token)).status_code == 200
    import jwt

    fresh = cluster.token(1)
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid
    answer = httpx.get(f"{cluster.nodes[0].base}/Binary?_id=x", headers=_auth(fresh))
    assert answer.status_code == 200


def test_a_node_killed_mid_upload_leaves_nothing_visible_and_gc_removes_its_garbage(
    cluster: Cluster, seaweed: Seaweed
) -> None:
    token = cluster.token()
    root = cluster.root
    victim = _start(cluster.env, root, "victim")
    size = 48 * 1024 * 1024
    before = httpx.get(f"{cluster.nodes[0].base}/Binary?_summary=count", headers=_auth(token))
    total = before.json()["total"]
    port = int(victim.base.split(":")[2].split("/")[0])
    head = (
        f"POST /fhir/Binary HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head)
        piece = os.urandom(1024 * 1024)
        for _ in range(24):  # half the body: several multipart parts are in the bucket
            sock.sendall(piece)
        time.sleep(1.0)
        for child in _children(victim.process.pid):
            os.kill(child, signal.SIGKILL)
        victim.process.kill()
        victim.process.wait(timeout=10)
    after = httpx.get(f"{cluster.nodes[1].base}/Binary?_summary=count", headers=_auth(token))
    assert after.json()["total"] == total
    dry = cluster.cli("gc", "--older-than", "0", "--dry-run").stdout
    assert "would remove" in dry
    assert " 0 upload leftovers" not in dry, dry
    removed = cluster.cli("gc", "--older-than", "0").stdout
    assert "removed" in removed
    again = cluster.cli("gc", "--older-than", "0", "--dry-run").stdout
    assert "0 unreferenced contents and 0 upload leftovers" in again, again
    # What the live nodes serve is untouched by the collection.
    assert cluster.cli("verify").returncode == 0


def _children(pid: int) -> list[int]:
    """The granian worker processes of a `fhirbin serve` (they hold the upload)."""
    found = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [int(p) for p in found]
