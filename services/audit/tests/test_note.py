"""Signed notes and checkpoints (c2sp.org/signed-note, c2sp.org/tlog-checkpoint), and the
service's signing key file."""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from icrs_audit.note import Checkpoint, NoteError, Signer, Verifier, open_checkpoint
from icrs_audit.signing_key import SigningKeyError, from_seed_b64, load_or_create
from icrs_shared import keyfiles

# Published vectors of golang.org/x/mod/sumdb/note (note_test.go).
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FF"
    "YC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOT"
    "GwnWLox33WWd1RvMc+QQ=\n"
)
# From transparency-dev/formats (note_cosigv1_test.go): its base64 part holds a '+'.
PLUS_VKEY = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
# The example of c2sp.org/tlog-checkpoint.
SPEC_CHECKPOINT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)

ROOT = hashlib.sha256(b"root").digest()


def key_id(name: str, public_key: bytes) -> int:
    digest = hashlib.sha256(name.encode() + b"\x0a" + b"\x01" + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# --- keys ----------------------------------------------------------------------------------


def test_signer_reproduces_the_go_signed_note() -> None:
    signer = Signer.from_signer_key(PETER_SKEY)
    assert signer.name == "PeterNeumann"
    assert signer.key_hash == 0xC74F20A3
    assert signer.verifier_key == PETER_VKEY
    assert signer.sign(TEXT) == TEXT + "\n" + PETER_SIG


def test_signer_from_a_private_key_matches_the_signer_key_string() -> None:
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]
    signer = Signer(Ed25519PrivateKey.from_private_bytes(seed), "PeterNeumann")
    assert signer.verifier_key == PETER_VKEY
    assert signer.public_key_bytes == base64.b64decode(PETER_VKEY.split("+", 2)[2])[1:]


def test_verifier_key_format() -> None:
    key = Ed25519PrivateKey.generate()
    public = raw_public(key)
    signer = Signer(key, "audit.icrs.example/log")
    expected_id = key_id("audit.icrs.example/log", public)
    assert signer.key_hash == expected_id
    assert signer.verifier_key == (
        f"audit.icrs.example/log+{expected_id:08x}+" + base64.b64encode(b"\x01" + public).decode()
    )
    verifier = Verifier(signer.verifier_key)
    assert (verifier.name, verifier.key_hash, verifier.public_key_bytes) == (
        signer.name,
        signer.key_hash,
        public,
    )
    assert verifier.verifier_key == signer.verifier_key
    assert signer.verifier().verifier_key == signer.verifier_key


@pytest.mark.parametrize("vkey", [PETER_VKEY, ENOCH_VKEY, PLUS_VKEY])
def test_published_verifier_keys_parse(vkey: str) -> None:
    assert Verifier(vkey).verifier_key == vkey


def test_mangled_verifier_keys_are_refused() -> None:
    """Every proper substring and every one-character change of a key, as Go's test does."""
    n = len(PETER_VKEY)
    for i in range(n + 1):
        for j in range(i + 1, n + 1):
            if (i, j) != (0, n):
                with pytest.raises(NoteError):
                    Verifier(PETER_VKEY[i:j])
    for i in range(n):
        with pytest.raises(NoteError):
            Verifier(PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :])
    bad_length = "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
    with pytest.raises(NoteError, match="key bytes"):
        Verifier(bad_length)
    unknown_type = "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    with pytest.raises(NoteError, match="not an Ed25519 key"):
        Verifier(unknown_type)


def test_mangled_signer_keys_are_refused() -> None:
    n = len(PETER_SKEY)
    for i in range(n + 1):
        for j in range(i + 1, n + 1):
            if (i, j) != (0, n):
                with pytest.raises(NoteError):
                    Signer.from_signer_key(PETER_SKEY[i:j])
    for i in range(n):
        with pytest.raises(NoteError):
            Signer.from_signer_key(
                PETER_SKEY[:i] + chr(ord(PETER_SKEY[i]) + 1) + PETER_SKEY[i + 1 :]
            )


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\tb", "a\u00a0b", "a\u2003b", "a\x01b"])
def test_bad_key_names_are_refused(name: str) -> None:
    with pytest.raises(NoteError, match="key name"):
        Signer(Ed25519PrivateKey.generate(), name)


# --- notes ---------------------------------------------------------------------------------


def test_round_trip() -> None:
    signer = Signer(Ed25519PrivateKey.generate(), "audit.icrs.example")
    for text in ["hello\n", "\n", "a\n\nb\n", "with a blank line at the end\n\n", "ümlaut ✓\n"]:
        assert Verifier(signer.verifier_key).verify(signer.sign(text)) == text


def test_go_note_opens_with_either_key_and_ignores_the_other() -> None:
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert Verifier(PETER_VKEY).verify(note) == TEXT
    assert Verifier(ENOCH_VKEY).verify(note) == TEXT


def test_unknown_signatures_are_ignored() -> None:
    other = Signer(Ed25519PrivateKey.generate(), "witness.example")
    unknown = other.signature_line(TEXT)
    garbage = "\u2014 someone.else " + base64.b64encode(b"\x00" * 20).decode() + "\n"
    for note in (
        TEXT + "\n" + unknown + PETER_SIG,
        TEXT + "\n" + PETER_SIG + garbage + unknown,
    ):
        assert Verifier(PETER_VKEY).verify(note) == TEXT


def test_note_signed_only_by_others_is_refused() -> None:
    with pytest.raises(NoteError, match="not signed by key PeterNeumann\\+c74f20a3"):
        Verifier(PETER_VKEY).verify(TEXT + "\n" + ENOCH_SIG)


def test_tampered_text_is_refused() -> None:
    note = (TEXT + "\n" + PETER_SIG).replace("cryptography", "cryptographY")
    with pytest.raises(NoteError, match="does not match the note text"):
        Verifier(PETER_VKEY).verify(note)


def test_tampered_signature_is_refused() -> None:
    sig = PETER_SIG
    longer = sig[:60] + "ABCD" + sig[60:]
    flipped = sig[:60] + ("B" if sig[60] == "A" else "A") + sig[61:]
    for line in (longer, flipped):
        with pytest.raises(NoteError, match="does not match the note text"):
            Verifier(PETER_VKEY).verify(TEXT + "\n" + line)


def test_a_bad_signature_by_the_key_rejects_the_note_even_beside_a_good_one() -> None:
    flipped = PETER_SIG[:60] + ("B" if PETER_SIG[60] == "A" else "A") + PETER_SIG[61:]
    with pytest.raises(NoteError):
        Verifier(PETER_VKEY).verify(TEXT + "\n" + PETER_SIG + flipped)


def test_another_key_with_the_same_name_is_refused() -> None:
    impostor = Signer(Ed25519PrivateKey.generate(), "PeterNeumann")
    with pytest.raises(NoteError, match="not signed by key"):
        Verifier(PETER_VKEY).verify(impostor.sign(TEXT))
    # Same name and a forged key hash: the signature is checked, and fails.
    forged = base64.b64encode(
        (0xC74F20A3).to_bytes(4, "big") + Ed25519PrivateKey.generate().sign(TEXT.encode())
    ).decode()
    with pytest.raises(NoteError, match="does not match"):
        Verifier(PETER_VKEY).verify(f"{TEXT}\n\u2014 PeterNeumann {forged}\n")


def test_the_same_key_under_another_name_is_refused() -> None:
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]
    renamed = Signer(Ed25519PrivateKey.from_private_bytes(seed), "CarmenSandiego")
    with pytest.raises(NoteError, match="not signed by key"):
        Verifier(PETER_VKEY).verify(renamed.sign(TEXT))
    misnamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
    with pytest.raises(NoteError, match="not signed by key"):
        Verifier(PETER_VKEY).verify(TEXT + "\n" + misnamed)


@pytest.mark.parametrize(
    "note",
    [
        pytest.param(TEXT, id="no signatures"),
        pytest.param(TEXT + "\n", id="blank line only"),
        pytest.param(TEXT + PETER_SIG, id="no blank line"),
        pytest.param(TEXT + "\n" + PETER_SIG[:-1], id="no final newline"),
        pytest.param("\x01" + TEXT + "\n" + PETER_SIG, id="control character"),
        pytest.param("\udcff" + TEXT + "\n" + PETER_SIG, id="not UTF-8"),
        pytest.param(TEXT + "\n" + PETER_SIG.replace("\u2014", "-"), id="hyphen"),
        pytest.param(TEXT + "\n" + PETER_SIG.replace("\u2014", "\u2013"), id="en dash"),
        pytest.param(TEXT + "\n" + PETER_SIG.replace("\u2014 ", "\u2014"), id="no space"),
        pytest.param(TEXT + "\n" + PETER_SIG.replace("Peter", "Bad "), id="bad name"),
        pytest.param(TEXT + "\n" + PETER_SIG + "Unexpected line.\n", id="extra line"),
        pytest.param(TEXT + "\n" + PETER_SIG.replace("x08go", "x08g!"), id="not base64"),
        pytest.param(TEXT + "\n\u2014 PeterNeumann x08gow==\n", id="too short"),
        pytest.param(TEXT + "\n\u2014 PeterNeumann \n", id="empty signature"),
        pytest.param(TEXT + "\n" + PETER_SIG * 101, id="too many signatures"),
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(NoteError):
        Verifier(PETER_VKEY).verify(note)


def test_up_to_a_hundred_signatures_are_accepted() -> None:
    assert Verifier(PETER_VKEY).verify(TEXT + "\n" + ENOCH_SIG * 99 + PETER_SIG) == TEXT


@pytest.mark.parametrize("text", ["", "no newline", "tab\there\n", "\udcff\n"])
def test_bad_texts_are_not_signed(text: str) -> None:
    with pytest.raises(NoteError):
        Signer.from_signer_key(PETER_SKEY).sign(text)


# --- checkpoints ---------------------------------------------------------------------------


def test_spec_checkpoint_parses_and_round_trips() -> None:
    checkpoint = Checkpoint.parse(SPEC_CHECKPOINT)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.extensions == ()
    assert checkpoint.body() == SPEC_CHECKPOINT


def test_checkpoint_body() -> None:
    checkpoint = Checkpoint("audit.icrs.example/log", 0, bytes(32))
    assert checkpoint.body() == (
        "audit.icrs.example/log\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    )
    with_extensions = Checkpoint("o", 7, ROOT, ("ext one", "ext two"))
    assert with_extensions.body().endswith("\next one\next two\n")
    assert Checkpoint.parse(with_extensions.body()) == with_extensions


def test_signed_checkpoint_round_trip() -> None:
    signer = Signer(Ed25519PrivateKey.generate(), "audit.icrs.example/log")
    checkpoint = Checkpoint("audit.icrs.example/log", 2**64 - 1, ROOT)
    assert open_checkpoint(signer.sign(checkpoint.body()), signer.verifier()) == checkpoint
    with pytest.raises(NoteError, match="not signed"):
        open_checkpoint(signer.sign(checkpoint.body()), Verifier(PETER_VKEY))
    with pytest.raises(NoteError, match="checkpoint"):
        open_checkpoint(Signer.from_signer_key(PETER_SKEY).sign(TEXT), Verifier(PETER_VKEY))


ROOT64 = base64.b64encode(ROOT).decode()
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@pytest.mark.parametrize(
    "size", ["", "01", "00", "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x10", "\u0661", "1_000"]
)
def test_checkpoint_bad_sizes_are_refused(size: str) -> None:
    with pytest.raises(NoteError, match="tree size"):
        Checkpoint.parse(f"origin\n{size}\n{ROOT64}\n")


def test_checkpoint_size_beyond_uint64_is_refused() -> None:
    with pytest.raises(NoteError, match="out of range"):
        Checkpoint.parse(f"origin\n{2**64}\n{ROOT64}\n")


@pytest.mark.parametrize(
    "root",
    [
        "",
        base64.b64encode(ROOT[:31]).decode(),
        base64.b64encode(ROOT + b"\x00").decode(),
        ROOT64.rstrip("="),
        ROOT64[:-2] + B64[B64.index(ROOT64[-2]) + 1] + "=",  # padding bits set
        base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(),
        " " + ROOT64,
    ],
)
def test_checkpoint_bad_roots_are_refused(root: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(f"origin\n1\n{root}\n")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("origin\n", id="origin only"),
        pytest.param("origin\n1\n", id="no root"),
        pytest.param(f"\n1\n{ROOT64}\n", id="empty origin"),
        pytest.param(f"origin\n1\n{ROOT64}", id="no final newline"),
        pytest.param(f"origin\n1\n{ROOT64}\n\nextension\n", id="empty extension"),
        pytest.param(f"origin\n1\n{ROOT64}\n\n", id="trailing blank line"),
        pytest.param(f"ori\x00gin\n1\n{ROOT64}\n", id="control character"),
    ],
)
def test_checkpoint_bad_texts_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(text)


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        ("o", -1, ROOT, ()),
        ("o", 2**64, ROOT, ()),
        ("o", True, ROOT, ()),
        ("o", 1, ROOT[:31], ()),
        ("o", 1, ROOT, ("",)),
        ("o", 1, ROOT, ("a\nb",)),
    ],
)
def test_invalid_checkpoints_cannot_be_made(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(NoteError):
        Checkpoint(origin, size, root, extensions)


# --- the signing key file ------------------------------------------------------------------


def test_key_file_is_created_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-signing.pem"
    key = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert raw_public(load_or_create(path)) == raw_public(key)
    assert sorted(p.name for p in path.parent.iterdir()) == ["audit-signing.pem"]


def _race(path: Path, creators: int = 4) -> set[bytes]:
    barrier = threading.Barrier(creators)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def create() -> None:
        barrier.wait()
        try:
            results.append(raw_public(load_or_create(path)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(creators)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == creators
    return set(results)


def test_racing_creators_agree_on_one_key(tmp_path: Path) -> None:
    for attempt in range(20):
        path = tmp_path / f"key-{attempt}.pem"
        keys = _race(path)
        assert keys == {raw_public(load_or_create(path))}
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_racing_creators_agree_without_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(keyfiles.os, "link", no_link)
    for attempt in range(20):
        path = tmp_path / f"key-{attempt}.pem"
        assert _race(path) == {raw_public(load_or_create(path))}
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_key_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ec.pem"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(ec_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    with pytest.raises(SigningKeyError, match="must be Ed25519"):
        load_or_create(path)


def test_an_unreadable_key_file_is_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    with pytest.raises(SigningKeyError, match="not a PEM private key"):
        load_or_create(garbage)
    assert garbage.read_text() == "not a key\n"

    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"secret")
        )
    )
    with pytest.raises(SigningKeyError, match="encrypted"):
        load_or_create(encrypted)


def test_an_existing_key_file_is_used(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "given.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    assert raw_public(load_or_create(path)) == raw_public(key)


def test_key_from_seed_setting() -> None:
    seed = bytes(range(32))
    key = from_seed_b64(base64.b64encode(seed).decode() + "\n")
    assert raw_public(key) == raw_public(Ed25519PrivateKey.from_private_bytes(seed))
    with pytest.raises(SigningKeyError, match="31 bytes"):
        from_seed_b64(base64.b64encode(seed[:31]).decode())
    with pytest.raises(SigningKeyError, match="64 bytes"):
        from_seed_b64(base64.b64encode(seed * 2).decode())
    with pytest.raises(SigningKeyError, match="not standard base64"):
        from_seed_b64("not base64!")
