"""Referral statistics for an organization, with small cells suppressed: counts by need
category, area and status; acceptance rate; median times to accept and to complete;
unmatched needs by reason."""

from __future__ import annotations

import statistics
import uuid
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.disclosure import THRESHOLD, Cell, protect

from ..lifecycle import ACCEPTED, DECLINED
from ..models import KnownCase, KnownNeed, Referral, ReferralTransition

Side = Literal["requester", "provider"]


class Breakdown(BaseModel):
    need_category: list[Cell]
    area: list[Cell] = Field(description="By the first `area_level` characters of the P-code.")
    status: list[Cell]


class ReferralReport(BaseModel):
    side: Side
    total: int | None = Field(description="Referrals counted; null when suppressed.")
    total_suppressed: bool = False
    by: Breakdown
    acceptance_rate: float | None = Field(
        description="Accepted of those answered (accepted, rejected or expired); null under "
        "the threshold of answers."
    )
    median_hours_to_accept: float | None
    median_hours_to_complete: float | None
    unmatched_by_reason: list[Cell] = Field(
        description="The requester's needs no service fits now, by reason (a need may have "
        "several)."
    )
    suppressed_below: int = THRESHOLD
    area_level: int


async def referral_report(
    *,
    session: AsyncSession,
    organization_id: uuid.UUID,
    side: Side,
    area_level: int,
    since: date | None = None,
    until: date | None = None,
) -> ReferralReport:
    party = col(
        Referral.requester_organization_id if side == "requester" else Referral.organization_id
    )
    where: list[ColumnElement[bool]] = [party == organization_id]
    if since is not None:
        where.append(col(Referral.created_at) >= datetime.combine(since, time.min, UTC))
    if until is not None and until < date.max:
        where.append(
            col(Referral.created_at) < datetime.combine(until + timedelta(days=1), time.min, UTC)
        )
    area = func.substr(func.coalesce(col(KnownCase.area), "unknown"), 1, area_level)
    query = (
        select(
            col(Referral.need_category),
            area,
            col(Referral.status),
            col(Referral.created_at),
            col(Referral.id),
        )
        .outerjoin(KnownCase, col(KnownCase.id) == col(Referral.case_id))
        .where(*where)
    )
    categories: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    created: dict[uuid.UUID, datetime] = {}
    for category, where_, status, at, rid in await session.execute(query):
        categories[category] += 1
        areas[where_] += 1
        statuses[status] += 1
        created[rid] = at
    total = sum(statuses.values())
    small = 0 < total < THRESHOLD
    accepted = sum(statuses[s] for s in ACCEPTED)
    answered = accepted + sum(statuses[s] for s in DECLINED)
    return ReferralReport(
        side=side,
        total=None if small else total,
        total_suppressed=small,
        by=Breakdown(
            need_category=protect(categories), area=protect(areas), status=protect(statuses)
        ),
        acceptance_rate=round(accepted / answered, 4) if answered >= THRESHOLD else None,
        median_hours_to_accept=await _median_hours(session, created, "accepted"),
        median_hours_to_complete=await _median_hours(session, created, "completed"),
        unmatched_by_reason=await _unmatched(session, organization_id)
        if side == "requester"
        else [],
        area_level=area_level,
    )


async def _median_hours(
    session: AsyncSession, created: dict[uuid.UUID, datetime], status: str
) -> float | None:
    if not created:
        return None
    query = select(col(ReferralTransition.referral_id), col(ReferralTransition.at)).where(
        col(ReferralTransition.to_status) == status,
        col(ReferralTransition.referral_id).in_(list(created)),
    )
    hours = [(at - created[rid]).total_seconds() / 3600 for rid, at in await session.execute(query)]
    return round(statistics.median(hours), 2) if len(hours) >= THRESHOLD else None


async def _unmatched(session: AsyncSession, organization_id: uuid.UUID) -> list[Cell]:
    query = select(col(KnownNeed.reasons)).where(
        col(KnownNeed.requester_organization_id) == organization_id,
        col(KnownNeed.status) == "unmatched",
    )
    reasons: Counter[str] = Counter()
    for (found,) in await session.execute(query):
        reasons.update(found)
    return protect(reasons)
