"""The signing keys as one process sees them: read from the database at most every
`CACHE_SECONDS`, decrypted once, and kept current (first key, scheduled rotation)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc.jwk import RSAKey

from icrs_shared.db import Database

from ..models import SigningKey
from . import keys, repository
from .kek import KeyEncryptionError

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

#: How stale this process's view of the keys may get (a rotation made elsewhere shows up).
CACHE_SECONDS = 30
#: A new key is published this long before it signs, so that every verifier has fetched it
#: by then (their key caches refetch at most every few seconds, and keep keys 5 minutes).
PUBLISH_AHEAD = timedelta(minutes=5)


def utcnow() -> datetime:
    return datetime.now(UTC)


class KeyStore:
    def __init__(
        self,
        db: Database,
        *,
        kek: bytes,
        rotate_after: timedelta,
        leeway: float,
        clock: Clock = utcnow,
    ) -> None:
        self.db = db
        self.kek = kek
        self.rotate_after = rotate_after
        #: Injectable for tests: timestamps the keys are judged by.
        self.clock = clock
        # A retired key may go on signing here until this process next reads the keys; a
        # token it signs then lives at most MAX_TOKEN_LIFETIME, plus the verifiers' leeway.
        self.retention = keys.MAX_TOKEN_LIFETIME + timedelta(seconds=leeway + CACHE_SECONDS)
        self._rows: Sequence[SigningKey] = ()
        self._private: dict[str, RSAKey] = {}
        self._read_at: datetime | None = None
        self._lock = asyncio.Lock()

    async def signing_key(self) -> RSAKey:
        """The private key that signs now, with its `kid`."""
        rows = await self._current()
        row = keys.active_key(rows, self.clock())
        if row is None:
            # A schedule ran out between reads (or the clock jumped): read and maintain now.
            rows = await self.refresh()
            row = keys.active_key(rows, self.clock())
            if row is None:
                raise RuntimeError("no signing key is active")
        key = self._private.get(row.kid)
        if key is None:
            key = self._private[row.kid] = keys.private_key(row, self.kek)
        return key

    async def jwks(self) -> dict[str, Any]:
        """The published public keys, as a JWK set."""
        rows = await self._current()
        published = keys.published_keys(rows, self.clock(), self.retention)
        return {"keys": [dict(k.public_jwk) for k in published]}

    async def refresh(self) -> Sequence[SigningKey]:
        """Read the keys again; make the first or the next one if it is time."""
        async with self._lock:
            return await self._read()

    async def rotate(self, *, activate_in: timedelta = timedelta(0)) -> SigningKey:
        """A new key now (or signing `activate_in` from now); the current one retires then."""
        material = await asyncio.to_thread(keys.generate_material)
        async with self._lock:
            # Reading first decrypts the active key: a new key is never stored under a
            # key-encryption key other than the one the present keys are stored under.
            await self._read()
            now = self.clock()
            async with self.db.transaction() as session:
                key = await keys.rotate(
                    session=session,
                    kek=self.kek,
                    now=now,
                    activate_at=now + activate_in,
                    material=material,
                )
            log.info("signing key rotated", extra={"kid": key.kid})
            await self._read()
            return key

    async def _current(self) -> Sequence[SigningKey]:
        if self._fresh():
            return self._rows
        async with self._lock:
            if not self._fresh():  # another task may have read them while this one waited
                try:
                    await self._read()
                except KeyEncryptionError:
                    raise
                except Exception as exc:
                    if not self._rows:
                        raise
                    # Keys known a moment ago are still good: keep publishing and signing
                    # with them while the database blips, and try again after a while.
                    log.warning(
                        "signing keys not re-read", extra={"error_type": type(exc).__name__}
                    )
                    self._read_at = self.clock()
            return self._rows

    def _fresh(self) -> bool:
        if self._read_at is None:
            return False
        age = self.clock() - self._read_at
        return timedelta(0) <= age < timedelta(seconds=CACHE_SECONDS)

    async def _read(self) -> Sequence[SigningKey]:
        now = self.clock()
        async with self.db.sessions() as session:
            rows = await repository.signing_keys(session)
        due = keys.next_activation(
            rows, now, rotate_after=self.rotate_after, publish_ahead=PUBLISH_AHEAD
        )
        if due is not None:
            material = await asyncio.to_thread(keys.generate_material)
            async with self.db.transaction() as session:
                made = await keys.maintain(
                    session=session,
                    kek=self.kek,
                    now=now,
                    rotate_after=self.rotate_after,
                    publish_ahead=PUBLISH_AHEAD,
                    material=material,
                )
            if made is not None:
                log.info("signing key made", extra={"kid": made.kid})
            async with self.db.sessions() as session:
                rows = await repository.signing_keys(session)
        self._rows, self._read_at = rows, now
        kids = {row.kid for row in rows}
        self._private = {kid: key for kid, key in self._private.items() if kid in kids}
        # Decrypting here, not at the first token, makes a wrong key-encryption key fail
        # the start rather than a request.
        current = keys.active_key(rows, now)
        if current is not None and current.kid not in self._private:
            self._private[current.kid] = keys.private_key(current, self.kek)
        return rows
