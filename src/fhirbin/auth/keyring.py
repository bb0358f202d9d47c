"""KeyRing: the token signing keys every node shares, and which one signs.

The keys live in the catalogue (docs/deployment.md, "Signing keys"), so a token issued by any
node verifies on every node and every node publishes the same JWK Set. ``fhirbin keys rotate``
adds a key; old keys keep verifying, so tokens they signed stay good until they expire.

Nodes re-read the keys every few seconds (``refresh_interval``), so a key made on one node is
unknown to the others for up to that long. A node therefore signs only with the newest key that
is older than twice that interval (``activation_delay``): by then every node trusts it, and no
token signed with it is ever refused by a node that has not seen it yet. A deployment's very
first key signs at once: every node created or read it before serving.

Pure: records in, issuer and public keys out; reading the catalogue is the caller's work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fhirbin.auth.tokens import TokenIssuer


@dataclass(frozen=True)
class KeyMaterial:
    """One signing key as stored: ``private_pem`` is unencrypted PKCS#8 PEM (EC P-256)."""

    kid: str
    private_pem: str
    created_at: datetime


def new_key_material(now: datetime) -> KeyMaterial:
    """A fresh EC P-256 key; its kid is the RFC 7638 thumbprint TokenIssuer computes."""
    key = ec.generate_private_key(ec.SECP256R1())
    return material_of(key, now)


def material_of(key: ec.EllipticCurvePrivateKey, now: datetime) -> KeyMaterial:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return KeyMaterial(kid=TokenIssuer(key, issuer="").kid, private_pem=pem, created_at=now)


def private_key(material: KeyMaterial) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(material.private_pem.encode("ascii"), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"signing key {material.kid} is not an EC P-256 private key")
    return key


class KeyRing:
    """Which key signs and which keys verify, given the stored keys and the time."""

    def __init__(self, issuer: str, refresh_interval: float) -> None:
        self.issuer_url = issuer
        self.activation_delay = timedelta(seconds=2 * refresh_interval)
        self._keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self._signer: TokenIssuer | None = None

    def load(self, stored: Sequence[KeyMaterial], now: datetime) -> None:
        """Take the stored keys (any order); raises ValueError if there are none."""
        if not stored:
            raise ValueError("no token signing key is stored")
        for material in stored:
            if material.kid not in self._keys:
                self._keys[material.kid] = private_key(material)
        newest_first = sorted(stored, key=lambda m: m.created_at, reverse=True)
        ripe = [m for m in newest_first if m.created_at <= now - self.activation_delay]
        # The very first key of a deployment signs at once (see the module docstring).
        chosen = ripe[0] if ripe else newest_first[-1]
        if self._signer is None or self._signer.kid != chosen.kid:
            self._signer = TokenIssuer(self._keys[chosen.kid], issuer=self.issuer_url)

    @property
    def signer(self) -> TokenIssuer:
        assert self._signer is not None, "no key loaded"
        return self._signer

    @property
    def public_keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        return {kid: key.public_key() for kid, key in self._keys.items()}

    def jwks(self) -> dict[str, object]:
        """Every key that may still verify a token, the signing one first."""
        keys = [self.signer.jwks()["keys"][0]]
        for kid, key in self._keys.items():
            if kid != self.signer.kid:
                keys.append(TokenIssuer(key, issuer=self.issuer_url).jwks()["keys"][0])
        return {"keys": keys}
