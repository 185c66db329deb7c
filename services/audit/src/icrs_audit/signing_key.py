"""The audit service's Ed25519 checkpoint-signing key: a PEM file made on first start, or a
seed given in settings."""

from __future__ import annotations

import base64
import binascii
import logging
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from icrs_shared.keyfiles import read_or_create

log = logging.getLogger(__name__)

_SEED_BYTES = 32


class SigningKeyError(ValueError):
    """The signing key file or setting does not hold a usable Ed25519 private key."""


def load_or_create(path: Path) -> Ed25519PrivateKey:
    """The key in the PEM (PKCS#8, unencrypted) file at `path`, made with mode 0600 if missing.

    Processes starting together on an empty directory all end up with the same key.
    """
    data = read_or_create(
        path,
        lambda: Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        ),
    )
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
