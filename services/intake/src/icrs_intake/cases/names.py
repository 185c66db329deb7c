"""How names and document numbers are compared: normalized, then keyed-hashed."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import jellyfish

from ..crypto import Keyring


def fold(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form of a name."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w]+", " ", kept.casefold()).split())


def tokens(*names: str) -> set[str]:
    return {t for name in names for t in fold(name).split()}


def sound(token: str) -> str:
    """A phonetic code of a name token (Metaphone), or the token itself outside Latin script."""
    return jellyfish.metaphone(token) if token.isascii() else token


def document_key(doc_type: str, number: str) -> str:
    return f"{doc_type}:" + re.sub(r"[\s\-./]+", "", number).upper()


def index_digests(
    keyring: Keyring, *, names: Iterable[str], documents: Iterable[tuple[str, str]]
) -> set[tuple[str, bytes]]:
    """The (kind, digest) rows a case is found by."""
    name_tokens = tokens(*names)
    rows = {("name", keyring.blind("name", t)) for t in name_tokens}
    rows |= {("sound", keyring.blind("sound", sound(t))) for t in name_tokens if sound(t)}
    rows |= {("doc", keyring.blind("doc", document_key(t, n))) for t, n in documents}
    return rows


def erased_key(organization_id: object, external_id: str) -> str:
    """What an erased case keeps of its external id (keyed-hashed as `erased`): enough for
    an import to refuse to register the person again, nothing to find them by."""
    return f"{organization_id}:{external_id}"
