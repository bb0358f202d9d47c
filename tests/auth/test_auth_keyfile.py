"""Loading and first-start creation of the token signing key (fhirbin.auth.keyfile)."""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from fhirbin.auth.tokens import load_or_create_signing_key


def _pem(
    key: PrivateKeyTypes, encryption: serialization.KeySerializationEncryption | None = None
) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        encryption or serialization.NoEncryption(),
    )


def _public(key: ec.EllipticCurvePrivateKey) -> ec.EllipticCurvePublicNumbers:
    return key.public_key().public_numbers()


def test_missing_key_is_created_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "signing-key.pem"
    key = load_or_create_signing_key(path)
    assert isinstance(key.curve, ec.SECP256R1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert sorted(p.name for p in path.parent.iterdir()) == ["signing-key.pem"]  # no temp left


def test_created_key_is_loaded_again_on_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "signing-key.pem"
    assert _public(load_or_create_signing_key(path)) == _public(load_or_create_signing_key(path))


def test_existing_p256_key_is_loaded_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    existing = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(_pem(existing))
    assert _public(load_or_create_signing_key(path)) == _public(existing)
    assert path.read_bytes() == _pem(existing)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"not a key at all", "not an unencrypted PEM"),
        (b"", "not an unencrypted PEM"),
        (_pem(ec.generate_private_key(ec.SECP384R1())), "P-256"),
        (_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "P-256"),
        (_pem(ed25519.Ed25519PrivateKey.generate()), "P-256"),
        (
            _pem(
                ec.generate_private_key(ec.SECP256R1()),
                serialization.BestAvailableEncryption(b"pw"),
            ),
            "not an unencrypted PEM",
        ),
    ],
)
def test_file_that_is_not_a_p256_private_key_is_refused(
    tmp_path: Path, content: bytes, match: str
) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        load_or_create_signing_key(path)
    assert path.read_bytes() == content  # never overwritten


def test_key_published_by_another_process_meanwhile_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "k.pem"
    theirs = ec.generate_private_key(ec.SECP256R1())
    real_generate = ec.generate_private_key

    def generate_while_another_process_publishes(
        curve: ec.EllipticCurve,
    ) -> ec.EllipticCurvePrivateKey:
        path.write_bytes(_pem(theirs))
        return real_generate(curve)

    monkeypatch.setattr(ec, "generate_private_key", generate_while_another_process_publishes)
    assert _public(load_or_create_signing_key(path)) == _public(theirs)
    assert path.read_bytes() == _pem(theirs)
    assert [p.name for p in tmp_path.iterdir()] == ["k.pem"]


def test_simultaneous_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    barrier = threading.Barrier(8)
    results: list[ec.EllipticCurvePublicNumbers] = []

    def start() -> None:
        barrier.wait()
        results.append(_public(load_or_create_signing_key(path)))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    assert len({(n.x, n.y) for n in results}) == 1
    assert _public(load_or_create_signing_key(path)) == results[0]


def test_without_hard_links_the_key_is_still_created_exclusively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "k.pem"
    key = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _public(load_or_create_signing_key(path)) == _public(key)
    assert [p.name for p in tmp_path.iterdir()] == ["k.pem"]
