"""What routing a need takes into account, read from the service's view and referrals."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case as when
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from .lifecycle import LIVE
from .models import KnownCase, KnownConsent, KnownNeed, KnownOrganization, KnownService, Referral
from .routing import CaseView, ConsentView, OrganizationView, ServiceView

_ACCEPTED = ("accepted", "in-progress", "on-hold", "completed", "failed")
_DECLINED = ("rejected", "expired")
#: The acceptance record of a service nobody has answered yet.
NEUTRAL = 0.5


@dataclass(frozen=True)
class Situation:
    case: CaseView
    services: list[ServiceView]
    organizations: dict[uuid.UUID, OrganizationView]
    consents: list[ConsentView]
    loads: dict[uuid.UUID, int]
    acceptance: dict[uuid.UUID, float]


def case_view(row: KnownCase) -> CaseView:
    return CaseView(
        id=row.id,
        organization_id=row.organization_id,
        is_minor=row.is_minor,
        sex=row.sex,
        age_band=row.age_band,
        area=row.area,
        languages=tuple(row.languages),
        beneficiary_category=row.beneficiary_category,
        programme_track=row.programme_track,
    )


def service_view(row: KnownService) -> ServiceView:
    return ServiceView(
        id=row.id,
        organization_id=row.organization_id,
        category=row.category,
        active=row.status == "active",
        areas=tuple(row.areas),
        languages=tuple(row.languages),
        eligibility=dict(row.eligibility),
        maximum=row.maximum,
        accepting=row.accepting,
    )


def consent_view(row: KnownConsent) -> ConsentView:
    return ConsentView(
        purposes=tuple(row.purposes),
        categories=tuple(row.categories),
        organizations=tuple(uuid.UUID(o) for o in row.organizations),
        expires_at=row.expires_at,
        active=not row.withdrawn,
    )


async def situation(session: AsyncSession, need: KnownNeed, case: KnownCase) -> Situation:
    services = (
        (
            await session.execute(
                select(KnownService).where(col(KnownService.category) == need.category)
            )
        )
        .scalars()
        .all()
    )
    org_ids = {s.organization_id for s in services}
    orgs = (
        (
            await session.execute(
                select(KnownOrganization).where(col(KnownOrganization.id).in_(org_ids))
            )
        )
        .scalars()
        .all()
        if org_ids
        else []
    )
    consents = (
        (await session.execute(select(KnownConsent).where(col(KnownConsent.case_id) == case.id)))
        .scalars()
        .all()
    )
    ids = [s.id for s in services]
    return Situation(
        case=case_view(case),
        services=[service_view(s) for s in services],
        organizations={
            o.id: OrganizationView(o.id, o.status == "active", o.child_safeguarding) for o in orgs
        },
        consents=[consent_view(c) for c in consents],
        loads=await loads(session, ids),
        acceptance=await acceptance(session, ids),
    )


async def loads(session: AsyncSession, service_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Live referrals per service: those awaiting an answer count too, so that a burst of
    referrals cannot overfill a service before it answers."""
    if not service_ids:
        return {}
    query = (
        select(col(Referral.service_id), func.count())
        .where(col(Referral.service_id).in_(service_ids), col(Referral.status).in_(LIVE))
        .group_by(col(Referral.service_id))
    )
    return {sid: int(n) for sid, n in (await session.execute(query)).all()}


async def acceptance(
    session: AsyncSession, service_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, float]:
    """Per service, the share of answered referrals it accepted."""
    if not service_ids:
        return {}
    accepted = func.sum(when((col(Referral.status).in_(_ACCEPTED), 1), else_=0))
    declined = func.sum(when((col(Referral.status).in_(_DECLINED), 1), else_=0))
    query = (
        select(col(Referral.service_id), accepted, declined)
        .where(col(Referral.service_id).in_(service_ids))
        .group_by(col(Referral.service_id))
    )
    out: dict[uuid.UUID, float] = {}
    for sid, yes, no in (await session.execute(query)).all():
        answered = int(yes or 0) + int(no or 0)
        out[sid] = int(yes or 0) / answered if answered else NEUTRAL
    return {sid: out.get(sid, NEUTRAL) for sid in service_ids}
