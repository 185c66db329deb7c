"""Token-signing keys: made, rotated, and published until the tokens they signed expire.

RS256 over 2048-bit RSA: every JWT library, API gateway and identity product verifies it
(it is the one algorithm OpenID Connect requires), so integrators can check these tokens
with whatever they run. Signing speed does not matter here: scrypt dominates a token request.

A key row is published from its creation, signs from `activated_at`, and stops signing at
`retired_at`; it stays published until `retired_at` plus the longest a token can live.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc.jwk import RSAKey
from sqlalchemy.ext.asyncio import AsyncSession

from ..models import SigningKey
from . import repository
from .kek import seal, unseal

ALGORITHM = "RS256"
KEY_BITS = 2048
#: The longest lifetime a token may be given (contract §3), whatever the settings say.
MAX_TOKEN_LIFETIME = timedelta(seconds=900)


@dataclass(frozen=True)
class KeyMaterial:
    kid: str
    public_jwk: dict[str, Any]
    private_jwk: dict[str, Any]


def generate_material() -> KeyMaterial:
    """A fresh key pair; CPU-bound (RSA prime search), so call it off the event loop."""
    key = RSAKey.generate_key(KEY_BITS, parameters={"alg": ALGORITHM, "use": "sig"})
    # The RFC 7638 thumbprint: unique, and says nothing but which key it is.
    kid = key.thumbprint()
    private = dict(key.as_dict(private=True, kid=kid))
    public = dict(key.as_dict(private=False))
    public["kid"] = kid
    return KeyMaterial(kid, public, private)


def private_key(row: SigningKey, kek: bytes) -> RSAKey:
    raw = json.loads(unseal(kek, row.kid, row.private_jwk_encrypted))
    return RSAKey.import_key(raw)


def active_key(keys: Iterable[SigningKey], now: datetime) -> SigningKey | None:
    """The key that signs at `now`: the latest activated one not yet retired."""
    live = [k for k in keys if _utc(k.activated_at) <= now and not _retired(k, now)]
    return max(live, key=lambda k: _utc(k.activated_at), default=None)


def published_keys(
    keys: Iterable[SigningKey], now: datetime, retention: timedelta
) -> list[SigningKey]:
    """The keys a verifier may meet at `now`: signing, about to sign, or retired so recently
    that tokens they signed may still be alive (`retention` covers that)."""
    return [k for k in keys if not _retired(k, now - retention)]


def next_activation(
    keys: Sequence[SigningKey], now: datetime, *, rotate_after: timedelta, publish_ahead: timedelta
) -> datetime | None:
    """When a new key must start signing, if one is needed: at once when none signs now,
    or `publish_ahead` from now when the active key is due for rotation and has no successor.
    """
    current = active_key(keys, now)
    if current is None:
        return now
    due = _utc(current.activated_at) + rotate_after - publish_ahead
    if current.retired_at is None and now >= due:
        return now + publish_ahead
    return None


async def rotate(
    *,
    session: AsyncSession,
    kek: bytes,
    now: datetime,
    activate_at: datetime | None = None,
    material: KeyMaterial | None = None,
) -> SigningKey:
    """Make a new key, signing from `activate_at` (default: now); every other key stops
    signing then. It is published at once, so verifiers can know it before it is used."""
    if material is None:
        material = await asyncio.to_thread(generate_material)
    starts = now if activate_at is None else max(activate_at, now)
    await repository.lock_signing_keys(session)
    for row in await repository.signing_keys(session):
        if not _retired(row, starts):
            row.retired_at = starts
    key = SigningKey(
        kid=material.kid,
        alg=ALGORITHM,
        public_jwk=material.public_jwk,
        private_jwk_encrypted=seal(kek, material.kid, json.dumps(material.private_jwk).encode()),
        created_at=now,
        activated_at=starts,
    )
    session.add(key)
    await session.flush()
    return key


async def maintain(
    *,
    session: AsyncSession,
    kek: bytes,
    now: datetime,
    rotate_after: timedelta,
    publish_ahead: timedelta,
    material: KeyMaterial | None = None,
) -> SigningKey | None:
    """Make the first key, or the next one when the active key is due; None when neither
    is needed. Safe when replicas do it at once: they queue on a lock and re-read."""
    await repository.lock_signing_keys(session)
    keys = await repository.signing_keys(session)
    starts = next_activation(keys, now, rotate_after=rotate_after, publish_ahead=publish_ahead)
    if starts is None:
        return None
    return await rotate(session=session, kek=kek, now=now, activate_at=starts, material=material)


def _retired(key: SigningKey, at: datetime) -> bool:
    return key.retired_at is not None and _utc(key.retired_at) <= at


def _utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
