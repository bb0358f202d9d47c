"""The token signing key file: load it, or create it once, safely, on first start.

This is the only module of ``auth`` that touches the file system. The key is an EC P-256 private
key (ES256, RFC 7518 §3.4) in unencrypted PKCS#8 PEM. Creation must be safe when several server
processes start at once: each writes a complete, fsynced temporary file and publishes it with a
hard link, which (unlike ``os.replace``) fails if the target exists, so the first key published
wins and every process ends up signing with it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["load_or_create_signing_key"]

# Where hard links are impossible (some network/FUSE file systems) fall back to O_EXCL creation.
_NO_LINK = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK})


def load_or_create_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Load the P-256 key at ``path``; if there is no file, generate one and publish it.

    Raises ValueError when the file exists but is not an unencrypted EC P-256 private key.
    """
    try:
        return _load(path)
    except FileNotFoundError:
        pass
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if _publish(path, pem):
        return key
    # Another process published its key between our read and our link: use that one.
    return _load(path)


def _load(path: Path) -> ec.EllipticCurvePrivateKey:
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # TypeError: the PEM is encrypted; ValueError: not a PEM private key at all.
        raise ValueError(
            f"{path} is not an unencrypted PEM (PKCS#8) EC P-256 private key: {exc}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(
            f"{path} holds a {type(key).__name__.lstrip('_')}, not an EC P-256 private key "
            "(ES256 needs the P-256 curve)"
        )
    return key


def _publish(path: Path, pem: bytes) -> bool:
    """Make ``path`` hold ``pem`` unless it already exists; True if ours was published."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0o600 in the target directory (same file system).
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as tmp_file:
            tmp_file.write(pem)
            tmp_file.flush()
            os.fsync(tmp_file.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            return _create_exclusive(path, pem)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)
    return True


def _create_exclusive(path: Path, pem: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    _fsync_dir(path.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    # Makes the new directory entry durable (POSIX); not possible everywhere, hence best effort.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
