"""Queries of the authorization server."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from ..models import Client, Organization, SigningKey

# pg_advisory_xact_lock key: "icrs" "keys" in ASCII, an arbitrary constant of this service.
_SIGNING_KEYS_LOCK = 0x69637273_6B657973


async def client_with_organization(
    session: AsyncSession, client_id: str
) -> tuple[Client, Organization] | None:
    row = (
        await session.execute(
            select(Client, Organization)
            .join(Organization, col(Organization.id) == col(Client.organization_id))
            .where(col(Client.client_id) == client_id)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def signing_keys(session: AsyncSession) -> Sequence[SigningKey]:
    result = await session.execute(select(SigningKey).order_by(col(SigningKey.activated_at)))
    return result.scalars().all()


async def lock_signing_keys(session: AsyncSession) -> None:
    """Serialize key changes between replicas until the transaction ends.

    SQLite needs nothing: every write transaction there begins IMMEDIATE.
    """
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SIGNING_KEYS_LOCK}
        )
