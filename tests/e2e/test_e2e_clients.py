"""FHIR clients written elsewhere, against a served fhirbin over loopback.

- fhirpy (async): ``save()`` of a FHIR JSON Binary (fhirpy sends it as ``application/json``),
  read, search by ``_id``, ``refresh()`` (a bare ``If-None-Match: 1``), update, delete.
- The Python ``fhirclient`` (smart-on-fhir): capability discovery must find the token endpoint
  in the CapabilityStatement's SMART ``oauth-uris`` extension; the library's only flow without
  an authorize endpoint is backend services (a signed ``client_assertion``), so the client is
  registered with keys. Then create, read, search and the native bytes.
- Medplum's TypeScript client (``@medplum/core``): ``tests/e2e/clients/medplum/createBinary.mjs``
  under ``node``, installed with ``npm ci`` once per session; ``createBinary`` must resolve to
  the Binary (id and meta) rather than undefined.

Every client's result is also checked with plain httpx, so a client that misreads an answer
cannot hide a server that stored the wrong thing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fhirclient import client as fhirclient_client
from fhirclient.models.binary import Binary as FhirclientBinary
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound
from jwt.algorithms import ECAlgorithm

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

SCOPE = "system/Binary.rs system/Binary.cud"
CONTENT = bytes((i * 7 + 3) % 256 for i in range(3000))  # every byte value, not UTF-8
MEDPLUM = Path(__file__).parent / "clients" / "medplum"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def native_bytes(server: Server, token: str, binary_id: str) -> httpx.Response:
    response = httpx.get(f"{server.base}/Binary/{binary_id}", headers=bearer(token), timeout=30)
    assert response.status_code == 200, response.text
    return response


# fhirpy ---------------------------------------------------------------------------------------


async def fhirpy_round_trip(server: Server, token: str) -> str:
    client = AsyncFHIRClient(
        server.base,
        authorization=f"Bearer {token}",
        aiohttp_config={"timeout": aiohttp.ClientTimeout(total=30)},
    )
    binary = client.resource(
        "Binary",
        contentType="application/octet-stream",
        data=base64.b64encode(CONTENT).decode(),
    )
    await binary.save()
    # A FHIR body answers with the whole Binary by default: save() keeps what came back.
    binary_id = binary.id
    assert isinstance(binary_id, str)
    assert binary["meta"]["versionId"] == "1"
    assert base64.b64decode(binary["data"]) == CONTENT

    read = await client.get("Binary", binary_id)
    assert read["resourceType"] == "Binary"
    assert read["id"] == binary_id
    assert read["contentType"] == "application/octet-stream"
    assert base64.b64decode(read["data"]) == CONTENT

    by_reference = await client.reference("Binary", binary_id).to_resource()
    assert by_reference.id == binary_id
    assert base64.b64decode(by_reference["data"]) == CONTENT

    found = await client.resources("Binary").search(_id=binary_id).fetch()
    assert [entry.id for entry in found] == [binary_id]
    assert base64.b64decode(found[0]["data"]) == CONTENT
    assert await client.resources("Binary").search(_id=binary_id).count() == 1

    # refresh() sends the bare versionId as If-None-Match ("1", not W/"1"): a 304 keeps it.
    await binary.refresh()
    assert binary.id == binary_id
    assert binary["meta"]["versionId"] == "1"
    return binary_id


async def fhirpy_update_and_delete(server: Server, token: str, binary_id: str) -> None:
    client = AsyncFHIRClient(
        server.base,
        authorization=f"Bearer {token}",
        aiohttp_config={"timeout": aiohttp.ClientTimeout(total=30)},
    )
    binary = await client.reference("Binary", binary_id).to_resource()
    binary["data"] = base64.b64encode(b"version two").decode()
    binary["contentType"] = "text/plain"
    await binary.save()  # a PUT with the id in the body and the URL
    assert binary["meta"]["versionId"] == "2"
    again = await client.get("Binary", binary_id)
    assert base64.b64decode(again["data"]) == b"version two"

    await client.delete("Binary", binary_id)
    with pytest.raises(ResourceNotFound):  # 410 Gone
        await client.get("Binary", binary_id)


def test_fhirpy_saves_reads_searches_updates_and_deletes_a_binary(server: Server) -> None:
    token = server.token(SCOPE)
    binary_id = asyncio.run(fhirpy_round_trip(server, token))

    native = native_bytes(server, token, binary_id)
    assert native.headers["content-type"] == "application/octet-stream"
    assert native.content == CONTENT

    asyncio.run(fhirpy_update_and_delete(server, token, binary_id))
    gone = httpx.get(f"{server.base}/Binary/{binary_id}", headers=bearer(token), timeout=30)
    assert gone.status_code == 410


# fhirclient (smart-on-fhir) -------------------------------------------------------------------


def key_client(server: Server, tmp_path: Path) -> tuple[str, ec.EllipticCurvePrivateKey]:
    """A client registered with an EC P-384 public key (SMART Backend Services)."""
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "fc-1", "alg": "ES384"}
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    created = server.cli(
        "client", "create", "fhirclient", "--scope", SCOPE, "--jwks-file", str(jwks), "--json"
    )
    client_id: str = json.loads(created.stdout)["client_id"]
    return client_id, key


def client_assertion(client_id: str, key: ec.EllipticCurvePrivateKey, audience: str) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": "fc-1", "typ": "JWT"})


def test_fhirclient_finds_the_token_endpoint_in_the_capability_statement_and_reads_a_binary(
    server: Server, tmp_path: Path
) -> None:
    token_url = f"{server.base}/auth/token"
    client_id, key = key_client(server, tmp_path)
    smart: Any = fhirclient_client.FHIRClient(
        settings={
            "app_id": client_id,
            "api_base": server.base,
            "jwt_token": client_assertion(client_id, key, token_url),
            "scope": SCOPE,
        }
    )

    # prepare() reads [base]/metadata into fhirclient's R4 CapabilityStatement model (it
    # validates every element) and picks the auth class from rest[0].security: the oauth-uris
    # extension's token URL with a client assertion makes it OAuth2; no token yet.
    assert smart.prepare() is False
    auth = smart.server.auth
    assert auth.auth_type == "oauth2"
    assert auth._token_uri == token_url
    assert auth._authorize_uri is None  # fhirbin has no authorize endpoint
    capability = smart.server.capabilityStatement
    assert capability.fhirVersion == "4.0.1"

    # authorize(): client_credentials with the assertion at the discovered token URL. The
    # library adds "launch/patient" to the scope (no patient in its settings); fhirbin grants
    # the part it knows.
    smart.authorize()
    assert smart.ready
    assert smart.launch_context["scope"] == SCOPE
    assert smart.launch_context["token_type"].lower() == "bearer"

    created = FhirclientBinary(
        {"contentType": "application/octet-stream", "data": base64.b64encode(CONTENT).decode()}
    ).create(smart.server)
    binary_id = created["id"]
    assert created["resourceType"] == "Binary"
    assert created["meta"]["versionId"] == "1"

    read = FhirclientBinary.read(binary_id, smart.server)
    assert read.id == binary_id
    assert read.contentType == "application/octet-stream"
    assert base64.b64decode(read.data) == CONTENT

    found = list(
        FhirclientBinary.where(struct={"_id": binary_id}).perform_resources_iter(smart.server)
    )
    assert [resource.id for resource in found] == [binary_id]

    raw = smart.server.request_data(f"Binary/{binary_id}", headers={"Accept": "*/*"})
    assert raw == CONTENT

    # The same Binary through plain HTTP with fhirclient's own token.
    assert native_bytes(server, smart.server.auth.access_token, binary_id).content == CONTENT


# Medplum (@medplum/core under node) -----------------------------------------------------------


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH: the Medplum client test needs Node.js 18 or newer and npm "
            "(scripts/system-deps.sh installs Debian's nodejs and npm)"
        )
    return path


def lock_digest() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((MEDPLUM / name).read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def medplum_installed() -> Path:
    """``npm ci`` into tests/e2e/clients/medplum once: skipped when node_modules holds what the
    committed package.json and package-lock.json name (a stamp of their SHA-256)."""
    node = tool("node")
    npm = tool("npm")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    major = int(version.lstrip("v").split(".")[0])
    if major < 18:
        pytest.fail(f"node {version} is too old for @medplum/core: Node.js 18 or newer is needed")
    stamp = MEDPLUM / "node_modules" / ".fhirbin-lock-sha256"
    wanted = lock_digest()
    installed = (MEDPLUM / "node_modules" / "@medplum" / "core" / "package.json").exists()
    if not (installed and stamp.exists() and stamp.read_text() == wanted):
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=MEDPLUM,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci in {MEDPLUM} failed:\n{result.stdout}\n{result.stderr}")
        stamp.write_text(wanted)
    return MEDPLUM


def test_medplum_create_binary_resolves_to_the_binary_and_reads_it_back(
    server: Server, medplum_installed: Path
) -> None:
    client_id, secret = server.new_client(SCOPE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIRBIN_")}
    env.update(
        FHIRBIN_E2E_BASE=server.base,
        FHIRBIN_E2E_CLIENT_ID=client_id,
        FHIRBIN_E2E_CLIENT_SECRET=secret,
    )
    result = subprocess.run(
        [tool("node"), "createBinary.mjs"],
        cwd=medplum_installed,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    print(result.stdout)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert result.stdout.rstrip().endswith("medplum: ok")

    # The Binary createBinary resolved to, checked without Medplum.
    line = re.search(r"^step: createBinary (\{.*\})$", result.stdout, re.MULTILINE)
    assert line is not None, result.stdout
    created = json.loads(line.group(1))
    assert created["resourceType"] == "Binary"
    token = server.token(SCOPE)
    native = native_bytes(server, token, created["id"])
    assert native.headers["content-type"] == "application/octet-stream"
    assert native.headers["x-security-context"] == "DocumentReference/medplum-e2e"
    assert native.content == bytes((i * 7 + 3) % 256 for i in range(1024))
