"""Envelope encryption of personal data, and keyed hashes to find it by value.

Each case has a random data key; its personal fields are sealed with AES-256-GCM under
that key, bound to the case id and the field's purpose. The data key is stored wrapped
by a versioned master key; destroying the wrapped key (erasure) leaves the ciphertexts
unreadable with any master key. Document numbers and names are matched through HMACs
under a separate index key, so they are never stored or compared in clear.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from icrs_shared import keyfiles

from .settings import IntakeSettings

log = logging.getLogger(__name__)

KEY_FILE = "intake-keys.json"
_FORMAT = b"\x01"
_NONCE = 12


class KeyringError(RuntimeError):
    """A key is missing or unusable; the message says which, never the key."""


@dataclass(frozen=True)
class Keyring:
    master_keys: dict[int, bytes]
    index_key: bytes

    @property
    def current_version(self) -> int:
        return max(self.master_keys)

    def new_data_key(self, case_id: uuid.UUID) -> tuple[bytes, int, bytes]:
        """A fresh data key for a case, and it wrapped by the current master key."""
        key = AESGCM.generate_key(bit_length=256)
        version = self.current_version
        return key, version, self.wrap(case_id, version, key)

    def wrap(self, case_id: uuid.UUID, version: int, data_key: bytes) -> bytes:
        return seal(self._master(version), _aad("data-key", case_id), data_key)

    def unwrap(self, case_id: uuid.UUID, version: int, wrapped: bytes) -> bytes:
        return unseal(self._master(version), _aad("data-key", case_id), wrapped)

    def blind(self, kind: str, value: str) -> bytes:
        """The keyed hash a value is found by (never reversible without the index key)."""
        return hmac.new(self.index_key, kind.encode() + b"\x00" + value.encode(), "sha256").digest()

    def _master(self, version: int) -> bytes:
        try:
            return self.master_keys[version]
        except KeyError:
            raise KeyringError(
                f"master key version {version} is not configured (ICRS_INTAKE_MASTER_KEYS)"
            ) from None


def seal(key: bytes, aad: bytes, plaintext: bytes) -> bytes:
    nonce = secrets.token_bytes(_NONCE)
    return _FORMAT + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, aad: bytes, blob: bytes) -> bytes:
    if blob[:1] != _FORMAT:
        raise KeyringError("unknown ciphertext format")
    try:
        return AESGCM(key).decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], aad)
    except InvalidTag:
        raise KeyringError("the ciphertext does not open with this key") from None


def seal_json(data_key: bytes, case_id: uuid.UUID, purpose: str, value: Any) -> bytes:
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return seal(data_key, _aad(purpose, case_id), raw)


def unseal_json(data_key: bytes, case_id: uuid.UUID, purpose: str, blob: bytes) -> Any:
    return json.loads(unseal(data_key, _aad(purpose, case_id), blob))


def _aad(purpose: str, case_id: uuid.UUID) -> bytes:
    return f"icrs:intake:{purpose}:{case_id}".encode()


# Loading the keys ----------------------------------------------------------------


def load_keyring(settings: IntakeSettings) -> Keyring:
    """The configured keys, or the key file under the data dir (made the first time)."""
    stored: dict[str, Any] = {}
    if settings.intake_master_keys is None or settings.intake_index_key is None:
        stored = _read_or_create(settings.data_dir / KEY_FILE)
        if not settings.db_url.startswith("sqlite"):
            log.warning(
                "intake keys come from a key file of this host; every replica needs the same",
                extra={"path": str(settings.data_dir / KEY_FILE)},
            )
    if settings.intake_master_keys is not None:
        source, raw = "ICRS_INTAKE_MASTER_KEYS", settings.intake_master_keys.get_secret_value()
        try:
            masters = json.loads(raw)
        except ValueError:
            raise KeyringError(f"{source} is not JSON") from None
    else:
        source, masters = KEY_FILE, stored.get("master_keys")
    if not isinstance(masters, dict) or not masters:
        raise KeyringError(
            f'{source}: expected {{"<version>": "<base64 key>"}} with one key or more'
        )
    keys: dict[int, bytes] = {}
    for version, value in masters.items():
        if not str(version).isdigit() or int(version) < 1:
            raise KeyringError(f"{source}: key versions are positive whole numbers")
        keys[int(version)] = _decode(value, f"{source} version {version}")
    if settings.intake_index_key is not None:
        index = _decode(settings.intake_index_key.get_secret_value(), "ICRS_INTAKE_INDEX_KEY")
    else:
        index = _decode(stored.get("index_key"), f"{KEY_FILE} index_key")
    return Keyring(keys, index)


def new_key_file_content() -> dict[str, Any]:
    return {
        "master_keys": {"1": _b64(secrets.token_bytes(32))},
        "index_key": _b64(secrets.token_bytes(32)),
    }


def add_master_key(path: Path) -> int:
    """Add a master key version to a key file; returns the new version."""
    content = _read_or_create(path)
    masters = content["master_keys"]
    version = max(int(v) for v in masters) + 1
    masters[str(version)] = _b64(secrets.token_bytes(32))
    keyfiles.replace(path, _dump(content))
    return version


def _dump(content: dict[str, Any]) -> bytes:
    return (json.dumps(content, indent=2) + "\n").encode()


def _read_or_create(path: Path) -> dict[str, Any]:
    raw = keyfiles.read_or_create(path, lambda: _dump(new_key_file_content()))
    try:
        content = json.loads(raw)
    except ValueError:
        raise KeyringError(f"{path} is not a JSON key file") from None
    if not isinstance(content, dict):
        raise KeyringError(f"{path} is not a JSON key file")
    return content


def _decode(value: object, source: str) -> bytes:
    try:
        key = base64.b64decode(str(value).strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise KeyringError(f"{source}: expected the base64 encoding of 32 bytes")
    return key


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
