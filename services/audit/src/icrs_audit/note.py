"""Signed notes (c2sp.org/signed-note) with Ed25519 keys, and the transparency-log checkpoints
(c2sp.org/tlog-checkpoint) carried in them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = 0x01
"""The signature type byte of Ed25519 keys."""

MAX_SIGNATURES = 100
"""Notes carrying more signature lines are refused (the spec asks verifiers to accept 16)."""

_SIG_PREFIX = "\u2014 "  # em dash, space
_SIG_BYTES = 64
_KEY_BYTES = 32
_ROOT_BYTES = 32
_MAX_SIZE = 2**64 - 1
_SIZE = re.compile(r"0|[1-9][0-9]*")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")


class NoteError(ValueError):
    """A note, checkpoint or key string is malformed, or a note's signature does not verify."""


def _valid_name(name: str) -> bool:
    return bool(name) and not any(c == "+" or c.isspace() or c < " " for c in name)


def _check_name(name: str) -> None:
    if not _valid_name(name):
        raise NoteError(
            f"key name {name!r} is not valid: it must be non-empty and contain no spaces, "
            "plus signs or control characters"
        )


def _check_chars(text: str, what: str) -> None:
    """Notes are UTF-8 with no control characters other than newline."""
    if any(c < " " and c != "\n" for c in text):
        raise NoteError(f"{what} contains a control character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError(f"{what} is not valid UTF-8") from None


def _fields(value: str, count: int) -> list[str]:
    """`value` split on its first `count - 1` plus signs, padded with empty strings."""
    fields = value.split("+", count - 1)
    return fields + [""] * (count - len(fields))


def _b64decode(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{value!r} is not standard base64") from None


def _key_hash(name: str, public_key: bytes) -> int:
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


class Signer:
    """Signs notes as the key `name`."""

    def __init__(self, private_key: Ed25519PrivateKey, name: str) -> None:
        _check_name(name)
        self._private_key = private_key
        self.name = name
        self.public_key_bytes = _raw_public(private_key.public_key())
        self.key_hash = _key_hash(name, self.public_key_bytes)

    @classmethod
    def from_signer_key(cls, skey: str) -> Signer:
        """From a `PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>` string."""
        private, key, name, hash_hex, key64 = _fields(skey, 5)
        if private != "PRIVATE" or key != "KEY" or not _HEX8.fullmatch(hash_hex) or not key64:
            raise NoteError("signer key must look like PRIVATE+KEY+<name>+<hash>+<base64 key>")
        _check_name(name)
        raw = _b64decode(key64)
        if len(raw) != 1 + _KEY_BYTES or raw[0] != ED25519:
            raise NoteError("signer key is not an Ed25519 key")
        signer = cls(Ed25519PrivateKey.from_private_bytes(raw[1:]), name)
        if signer.key_hash != int(hash_hex, 16):
            raise NoteError("signer key's hash does not match its name and key")
        return signer

    @property
    def verifier_key(self) -> str:
        return _format_verifier_key(self.name, self.key_hash, self.public_key_bytes)

    def verifier(self) -> Verifier:
        return Verifier(self.verifier_key)

    def signature_line(self, text: str) -> str:
        _check_text(text)
        signature = self._private_key.sign(text.encode())
        blob = self.key_hash.to_bytes(4, "big") + signature
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(blob).decode()}\n"

    def sign(self, text: str) -> str:
        """The signed note: `text`, a blank line and this key's signature line."""
        return f"{text}\n{self.signature_line(text)}"


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    _check_chars(text, "note text")


def _format_verifier_key(name: str, key_hash: int, public_key: bytes) -> str:
    key64 = base64.b64encode(bytes([ED25519]) + public_key).decode()
    return f"{name}+{key_hash:08x}+{key64}"


class Verifier:
    """Checks notes against one Ed25519 key given as `<name>+<hash>+<base64(0x01 || key)>`."""

    def __init__(self, verifier_key: str) -> None:
        name, hash_hex, key64 = _fields(verifier_key, 3)
        if not _HEX8.fullmatch(hash_hex) or not key64:
            raise NoteError("verifier key must look like <name>+<8 hex digits>+<base64 key>")
        _check_name(name)
        raw = _b64decode(key64)
        if not raw or raw[0] != ED25519:
            raise NoteError("verifier key is not an Ed25519 key (type byte 0x01)")
        if len(raw) != 1 + _KEY_BYTES:
            raise NoteError(f"verifier key holds {len(raw) - 1} key bytes, not {_KEY_BYTES}")
        key_hash = int(hash_hex, 16)
        if key_hash != _key_hash(name, raw[1:]):
            raise NoteError("verifier key's hash does not match its name and key")
        self.name = name
        self.key_hash = key_hash
        self.public_key_bytes = raw[1:]
        self._public_key = Ed25519PublicKey.from_public_bytes(self.public_key_bytes)

    @property
    def verifier_key(self) -> str:
        return _format_verifier_key(self.name, self.key_hash, self.public_key_bytes)

    def verify(self, signed_note: str) -> str:
        """The note's text, if it carries a valid signature by this key.

        Signatures by other keys are ignored; a bad signature by this key rejects the note.
        """
        text, signatures = _split(signed_note)
        message = text.encode()
        verified = False
        for name, key_hash, signature in signatures:
            if name != self.name or key_hash != self.key_hash:
                continue
            try:
                if len(signature) != _SIG_BYTES:
                    raise InvalidSignature
                self._public_key.verify(signature, message)
            except InvalidSignature:
                raise NoteError(
                    f"the signature by key {name}+{key_hash:08x} does not match the note text"
                ) from None
            verified = True
        if not verified:
            raise NoteError(f"the note is not signed by key {self.name}+{self.key_hash:08x}")
        return text


def _split(signed_note: str) -> tuple[str, list[tuple[str, int, bytes]]]:
    """The text and the (name, key hash, signature) of each signature line."""
    _check_chars(signed_note, "note")
    split = signed_note.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, block = signed_note[: split + 1], signed_note[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("note's signature block must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note carries more than {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise NoteError("note signature lines must start with an em dash and a space")
        name, _, sig64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not _valid_name(name) or not sig64:
            raise NoteError("note signature line must be '\u2014 <key name> <base64>'")
        blob = _b64decode(sig64)
        if len(blob) < 5:
            raise NoteError("note signature is too short to hold a key hash and a signature")
        signatures.append((name, int.from_bytes(blob[:4], "big"), blob[4:]))
    return text, signatures


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, tree size and RFC 6962 root hash, plus extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise NoteError("checkpoint origin must be a non-empty single line")
        _check_chars(self.origin, "checkpoint origin")
        if isinstance(self.size, bool) or not 0 <= self.size <= _MAX_SIZE:
            raise NoteError(f"checkpoint tree size {self.size!r} is out of range")
        if len(self.root) != _ROOT_BYTES:
            raise NoteError(f"checkpoint root hash must be {_ROOT_BYTES} bytes")
        for line in self.extensions:
            if not line or "\n" in line:
                raise NoteError("checkpoint extension lines must be non-empty single lines")
            _check_chars(line, "checkpoint extension line")

    def body(self) -> str:
        root64 = base64.b64encode(self.root).decode()
        return "".join(f"{line}\n" for line in (self.origin, self.size, root64, *self.extensions))

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        if not text.endswith("\n"):
            raise NoteError("checkpoint must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("checkpoint needs an origin, a tree size and a root hash line")
        origin, size, root64, *extensions = lines
        if not _SIZE.fullmatch(size):
            raise NoteError(f"checkpoint tree size {size!r} is not a plain decimal number")
        root = _b64decode(root64)
        if len(root) != _ROOT_BYTES or base64.b64encode(root).decode() != root64:
            raise NoteError(f"checkpoint root hash {root64!r} is not base64 of 32 bytes")
        return cls(origin, int(size), root, tuple(extensions))


def open_checkpoint(signed_note: str, verifier: Verifier) -> Checkpoint:
    """The checkpoint in `signed_note`, once its signature by `verifier`'s key checks out."""
    return Checkpoint.parse(verifier.verify(signed_note))
