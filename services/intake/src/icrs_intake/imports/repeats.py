"""Which row of a file first gave each external id, so that a later row repeating it is
rejected, without holding every id of a large file in memory.

The ids are kept in a private temporary SQLite database (in a small page cache, paged
out to an anonymous file as it grows), as keyed hashes under a key of this file alone:
nothing it holds names anyone, and it is gone once the import ends.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Iterable

from .rows import Row


class FirstRows:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        # An empty name: a temporary database private to this connection.
        self._db = sqlite3.connect("", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE seen (id BLOB PRIMARY KEY, row INTEGER NOT NULL) WITHOUT ROWID"
        )

    def claim(self, rows: Iterable[Row]) -> None:
        """Let each valid row claim its external id; reject those an earlier row claimed.

        A rejected row claims nothing: a later valid row with its id still goes in."""
        for row in rows:
            if row.case is None or row.case.external_id is None:
                continue
            key = hashlib.blake2b(
                row.case.external_id.encode(), key=self._key, digest_size=16
            ).digest()
            added = self._db.execute(
                "INSERT OR IGNORE INTO seen (id, row) VALUES (?, ?)", (key, row.number)
            )
            if added.rowcount == 0:
                (first,) = self._db.execute("SELECT row FROM seen WHERE id = ?", (key,)).fetchone()
                row.reject("external_id", f"repeats row {first}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FirstRows:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
