"""Finding an organization's cases by case number, external id or name."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import and_, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.pagination import decode_keyset, encode_keyset

from ..crypto import Keyring
from ..models import Case, CaseIndex
from . import service as cases
from .names import tokens
from .schemas import CaseSummary


async def find(
    *,
    session: AsyncSession,
    keyring: Keyring,
    organization_id: uuid.UUID,
    case_number: str | None,
    external_id: str | None,
    name: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Case], str | None]:
    query = select(Case).where(col(Case.organization_id) == organization_id)
    if case_number is not None:
        query = query.where(col(Case.case_number) == case_number.strip().upper())
    if external_id is not None:
        query = query.where(col(Case.external_id) == external_id.strip())
    if name is not None:
        words = tokens(name)
        digests = [keyring.blind("name", w) for w in words]
        matching = (
            select(col(CaseIndex.case_id))
            .where(col(CaseIndex.kind) == "name", col(CaseIndex.digest).in_(digests))
            .group_by(col(CaseIndex.case_id))
            .having(func.count(func.distinct(col(CaseIndex.digest))) == len(set(digests)))
        )
        query = query.where(col(Case.id).in_(matching)) if words else query.where(false())
    after = decode_keyset(cursor, uuid.UUID)
    if after is not None:
        at, last = after
        query = query.where(
            or_(
                col(Case.created_at) < at,
                and_(col(Case.created_at) == at, col(Case.id) < last),
            )
        )
    query = query.order_by(col(Case.created_at).desc(), col(Case.id).desc()).limit(limit)
    rows = (await session.execute(query)).scalars().all()
    next_cursor = None
    if len(rows) == limit:
        tail = rows[-1]
        next_cursor = encode_keyset(tail.created_at, tail.id)
    return rows, next_cursor


async def summary(session: AsyncSession, keyring: Keyring, case: Case) -> CaseSummary:
    opened = await cases.open_case(session, keyring, case)
    person = opened.profile.person if opened.profile is not None else None
    return CaseSummary(
        id=case.id,
        case_number=case.case_number,
        status=case.status,
        external_id=case.external_id,
        given_name=person.given_name if person else None,
        family_name=person.family_name if person else None,
        area=case.area,
        created_at=case.created_at,
    )
