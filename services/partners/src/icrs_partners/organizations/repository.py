"""Queries on organizations, their clients and their services."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from ..models import Client, Organization, Service

#: Where a page starts: the sort key (created_at, id) of the last item of the page before.
After = tuple[datetime, str]


async def get_organization(
    session: AsyncSession, organization_id: uuid.UUID, *, for_update: bool = False
) -> Organization | None:
    """The organization; `for_update` locks its row until the transaction ends, so that
    two changes of state cannot interleave."""
    return await session.get(
        Organization, organization_id, with_for_update=for_update, populate_existing=for_update
    )


async def list_organizations(
    session: AsyncSession,
    *,
    status: str | None,
    kind: str | None,
    after: After | None,
    limit: int,
) -> Sequence[Organization]:
    query = select(Organization)
    if status is not None:
        query = query.where(col(Organization.status) == status)
    if kind is not None:
        query = query.where(col(Organization.kind) == kind)
    if after is not None:
        created, last_id = after
        query = query.where(
            or_(
                col(Organization.created_at) > created,
                and_(
                    col(Organization.created_at) == created,
                    col(Organization.id) > uuid.UUID(last_id),
                ),
            )
        )
    query = query.order_by(col(Organization.created_at), col(Organization.id)).limit(limit)
    return (await session.execute(query)).scalars().all()


async def active_services(session: AsyncSession, organization_id: uuid.UUID) -> Sequence[Service]:
    query = (
        select(Service)
        .where(col(Service.organization_id) == organization_id, col(Service.status) == "active")
        .order_by(col(Service.created_at), col(Service.id))
    )
    return (await session.execute(query)).scalars().all()


async def get_client(
    session: AsyncSession, organization_id: uuid.UUID, client_id: str, *, for_update: bool = False
) -> Client | None:
    query = select(Client).where(
        col(Client.client_id) == client_id, col(Client.organization_id) == organization_id
    )
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(query)).scalars().first()


async def list_clients(
    session: AsyncSession, organization_id: uuid.UUID, *, after: After | None, limit: int
) -> Sequence[Client]:
    query = select(Client).where(col(Client.organization_id) == organization_id)
    if after is not None:
        created, last_id = after
        query = query.where(
            or_(
                col(Client.created_at) > created,
                and_(col(Client.created_at) == created, col(Client.client_id) > last_id),
            )
        )
    query = query.order_by(col(Client.created_at), col(Client.client_id)).limit(limit)
    return (await session.execute(query)).scalars().all()
