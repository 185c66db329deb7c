"""What routing a need takes into account, read from the service's view and referrals."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case as when
from sqlalchemy import func, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from .lifecycle import ACCEPTED, DECLINED, LIVE, status_in
from .models import KnownCase, KnownConsent, KnownNeed, KnownOrganization, KnownService, Referral
from .routing import CaseView, ConsentView, OrganizationView, ServiceView

#: The acceptance record of a service that has answered no referral yet.
NEUTRAL = 0.5
#: How many of a service's latest answered referrals its acceptance record counts.
ACCEPTANCE_WINDOW = 200
_LIVE = text(status_in(LIVE))
_ANSWERED = text(status_in(ACCEPTED | DECLINED))


@dataclass(frozen=True)
class Situation:
    case: CaseView
    services: list[ServiceView]
    organizations: dict[uuid.UUID, OrganizationView]
    consents: list[ConsentView]
    loads: dict[uuid.UUID, int]
    acceptance: dict[uuid.UUID, float]
    #: The services' rows, by id (held, so that the one chosen is not read again).
    rows: dict[uuid.UUID, KnownService]


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
    loads, acceptance = await load_and_acceptance(session, [s.id for s in services])
    return Situation(
        case=case_view(case),
        services=[service_view(s) for s in services],
        organizations={
            o.id: OrganizationView(o.id, o.status == "active", o.child_safeguarding) for o in orgs
        },
        consents=[consent_view(c) for c in consents],
        loads=loads,
        acceptance=acceptance,
        rows={s.id: s for s in services},
    )


async def load_and_acceptance(
    session: AsyncSession, service_ids: Sequence[uuid.UUID]
) -> tuple[dict[uuid.UUID, int], dict[uuid.UUID, float]]:
    """Per service: its live referrals (those awaiting an answer count too, so that a
    burst of referrals cannot overfill a service before it answers), and the share of its
    latest `ACCEPTANCE_WINDOW` answered referrals it accepted. Both read partial indexes,
    so their cost does not grow with the service's past."""
    if not service_ids:
        return {}, {}
    service = col(Referral.service_id)
    live = select(service, func.count()).where(service.in_(service_ids), _LIVE)
    loads = {sid: int(n) for sid, n in (await session.execute(live.group_by(service))).all()}
    latest = [
        select(service, col(Referral.status))
        .where(service == sid, _ANSWERED)
        .order_by(col(Referral.created_at).desc())
        .limit(ACCEPTANCE_WINDOW)
        .subquery()
        for sid in service_ids
    ]
    answered = union_all(*(select(q.c.service_id, q.c.status) for q in latest)).subquery()
    accepted = func.sum(when((answered.c.status.in_(sorted(ACCEPTED)), 1), else_=0))
    query = select(answered.c.service_id, accepted, func.count()).group_by(answered.c.service_id)
    acceptance = {
        sid: int(yes or 0) / int(n) for sid, yes, n in (await session.execute(query)).all()
    }
    return loads, {sid: acceptance.get(sid, NEUTRAL) for sid in service_ids}
