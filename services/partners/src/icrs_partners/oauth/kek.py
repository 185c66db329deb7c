"""The key-encryption key: token-signing keys are stored encrypted under it (AES-256-GCM)."""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from icrs_shared.keyfiles import read_or_create

from ..settings import PartnersSettings

log = logging.getLogger(__name__)

KEK_FILE = "partners-signing.kek"
KEK_SETTING = "ICRS_SIGNING_KEY_ENCRYPTION_KEY"
_VERSION = b"\x01"
_NONCE_BYTES = 12


class KeyEncryptionError(RuntimeError):
    """A stored signing key cannot be decrypted, or the key-encryption key is unusable."""


def load_kek(settings: PartnersSettings) -> bytes:
    """The configured key, or the key file under the data dir (made the first time)."""
    if settings.signing_key_encryption_key is not None:
        return _decode(settings.signing_key_encryption_key.get_secret_value(), KEK_SETTING)
    path = settings.data_dir / KEK_FILE
    if not settings.db_url.startswith("sqlite"):
        log.warning(
            "signing keys are encrypted under a key file of this host; replicas need the "
            "same key-encryption key",
            extra={"setting": KEK_SETTING},
        )
    return _decode(_read_or_create(path), str(path))


def seal(kek: bytes, kid: str, plaintext: bytes) -> bytes:
    """Encrypt; the key id is bound in as associated data, so rows cannot be swapped."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return _VERSION + nonce + AESGCM(kek).encrypt(nonce, plaintext, _aad(kid))


def unseal(kek: bytes, kid: str, blob: bytes) -> bytes:
    if blob[:1] != _VERSION:
        raise KeyEncryptionError(f"signing key {kid}: unknown encryption format")
    nonce, ciphertext = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
    try:
        return AESGCM(kek).decrypt(nonce, ciphertext, _aad(kid))
    except InvalidTag:
        raise KeyEncryptionError(
            f"signing key {kid} cannot be decrypted: it was stored under another "
            f"key-encryption key ({KEK_SETTING} or {KEK_FILE} differs)"
        ) from None


def _aad(kid: str) -> bytes:
    return b"icrs:partners:signing-key:" + kid.encode()


def _decode(value: str, source: str) -> bytes:
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise KeyEncryptionError(f"{source}: expected the base64 encoding of 32 bytes")
    return key


def _read_or_create(path: Path) -> str:
    data = read_or_create(path, lambda: base64.b64encode(secrets.token_bytes(32)) + b"\n")
    return data.decode("ascii")
