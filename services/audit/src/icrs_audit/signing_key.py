"""The audit service's Ed25519 checkpoint-signing key: a PEM file made on first start, or a
seed given in settings."""

from __future__ import annotations

import base64
import binascii
import errno
import logging
import os
import secrets
import time
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

log = logging.getLogger(__name__)

_SEED_BYTES = 32
_PEM_BEGIN = b"-----BEGIN PRIVATE KEY-----"
_PEM_END = b"-----END PRIVATE KEY-----"
# link() is refused by some filesystems (FAT, some network and FUSE mounts).
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV}


class SigningKeyError(ValueError):
    """The signing key file or setting does not hold a usable Ed25519 private key."""


def load_or_create(path: Path) -> Ed25519PrivateKey:
    """The key in the PEM (PKCS#8, unencrypted) file at `path`, made with mode 0600 if missing.

    Processes starting together on an empty directory all end up with the same key.
    """
    try:
        data = _read_settled(path)
    except FileNotFoundError:
        data = _create(path)
    else:
        if path.stat().st_mode & 0o077:
            log.warning("signing key file is readable by others", extra={"path": str(path)})
    return _load_pem(data, path)


def from_seed_b64(value: str) -> Ed25519PrivateKey:
    """The key whose 32-byte Ed25519 seed is `value`, in standard base64."""
    try:
        seed = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeyError("signing key setting is not standard base64") from None
    if len(seed) != _SEED_BYTES:
        raise SigningKeyError(
            f"signing key setting holds {len(seed)} bytes; an Ed25519 seed is {_SEED_BYTES}"
        )
    return Ed25519PrivateKey.from_private_bytes(seed)


def _load_pem(data: bytes, path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        raise SigningKeyError(
            f"{path}: the signing key is encrypted; store it unencrypted"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise SigningKeyError(f"{path}: not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        kind = type(key).__name__.removesuffix("PrivateKey")
        raise SigningKeyError(f"{path}: is a {kind} key; the signing key must be Ed25519")
    return key


def _create(path: Path) -> bytes:
    """Write a new key to `path` unless another process got there first; return what is there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    _write_new(tmp, pem)
    try:
        # link() never replaces an existing file, so exactly one creator wins.
        os.link(tmp, path)
    except FileExistsError:
        return _read_settled(path)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        try:
            _write_new(path, pem)
        except FileExistsError:
            return _read_settled(path)
    finally:
        tmp.unlink(missing_ok=True)
    return pem


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _read_settled(path: Path, timeout: float = 2.0) -> bytes:
    """The file's bytes, once complete: without link(), a racing creator writes it in place."""
    deadline = time.monotonic() + timeout
    while True:
        data = path.read_bytes()
        partial = _PEM_END not in data and data[: len(_PEM_BEGIN)] == _PEM_BEGIN[: len(data)]
        if not partial or time.monotonic() >= deadline:
            return data
        time.sleep(0.01)
