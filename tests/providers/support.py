"""Test helpers for identity: a real HTTP server on loopback, keys, JWTs and a settable clock.

The server is ``http.server`` in a thread: real sockets and real HTTP, so fhirbin's httpx client
is exercised as in production. Each route answers from a function the test can swap, and every
request is recorded so tests can count fetches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# Generated once per test session: RSA generation is the slow part.
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_P384 = ec.generate_private_key(ec.SECP384R1())
EC_P256 = ec.generate_private_key(ec.SECP256R1())


class FakeClock:
    """A clock the test moves; starts at the real time so JWT libraries agree on 'now'."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def jwk(key: PrivateKey, kid: str | None, **extra: Any) -> dict[str, Any]:
    """The public JWK of ``key`` with ``kid`` (and extra members)."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        data: dict[str, Any] = RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        data = ECAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        data["kid"] = kid
    data.update(extra)
    return data


def jwks(*keys: dict[str, Any]) -> dict[str, Any]:
    return {"keys": list(keys)}


def sign(
    claims: dict[str, Any],
    key: PrivateKey,
    alg: str,
    kid: str | None,
    **headers: Any,
) -> str:
    """A compact JWS of ``claims`` signed with ``key``."""
    extra = dict(headers)
    if kid is not None:
        extra["kid"] = kid
    return jwt.encode(claims, key, algorithm=alg, headers=extra)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any], **header: Any) -> str:
    """alg "none": header.payload. (empty signature)."""
    head = {"alg": "none", "typ": "JWT", **header}
    return f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims).encode())}."


def hmac_with_public_key(claims: dict[str, Any], key: PrivateKey, kid: str | None) -> str:
    """The classic algorithm-confusion forgery: HS256 keyed with the public key's PEM."""
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        head["kid"] = kid
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def bad_signature(token: str) -> str:
    """The same token with its signature's first byte changed."""
    head, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 0xFF
    return f"{head}.{payload}.{b64(bytes(raw))}"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
        return cls(
            status,
            json.dumps(value).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Route = Callable[[Seen], Reply]


class LoopbackServer:
    """A real HTTP server on 127.0.0.1 answering from ``routes`` (path → function)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Seen(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                with server._lock:
                    server.seen.append(request)
                    route = server.routes.get(self.path.split("?")[0])
                reply = route(request) if route is not None else Reply(404, b"not found")
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # keep test output quiet

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def hits(self, path: str) -> int:
        with self._lock:
            return sum(1 for s in self.seen if s.path.split("?")[0] == path)

    def serve_json(self, path: str, value: Any, **headers: str) -> None:
        """Answer ``path`` with ``value`` (a callable is re-evaluated on every hit)."""

        def route(_seen: Seen) -> Reply:
            return Reply.json(value() if callable(value) else value, headers=headers)

        self.routes[path] = route

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@contextmanager
def loopback_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def closed_port_url(path: str = "/") -> str:
    """A loopback URL nothing listens on (the port was just free)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"
