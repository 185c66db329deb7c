"""The key-encryption key: token-signing keys are stored encrypted under it (AES-256-GCM)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
        try:
            # link() never replaces: when two processes start at once, one file wins.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink()
    elif path.stat().st_mode & 0o077:
        log.warning("key-encryption key file is readable by others", extra={"path": str(path)})
    return path.read_text(encoding="ascii")
