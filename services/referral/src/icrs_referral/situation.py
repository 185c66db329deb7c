"""What routing a need takes into account, read from the service's view and referrals."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, literal, select, text, union_all
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
#: What marks the live count's rows among the answered referrals' (not a status).
_LIVE_ROW = "(live)"


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
    """What routing `need` takes into account: the services of its category with their
    organizations (one query), the case's consents, the services' loads and records."""
    query = (
        select(KnownService, KnownOrganization)
        .outerjoin(
            KnownOrganization, col(KnownOrganization.id) == col(KnownService.organization_id)
        )
        .where(col(KnownService.category) == need.category)
    )
    services: list[KnownService] = []
    orgs: dict[uuid.UUID, KnownOrganization] = {}
    for service, org in await session.execute(query):
        services.append(service)
        if org is not None:
            orgs[org.id] = org
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
            o.id: OrganizationView(o.id, o.status == "active", o.child_safeguarding)
            for o in orgs.values()
        },
        consents=[consent_view(c) for c in consents],
        loads=loads,
        acceptance=acceptance,
        rows={s.id: s for s in services},
    )


async def load_and_acceptance(
    session: AsyncSession, service_ids: Sequence[uuid.UUID]
) -> tuple[dict[uuid.UUID, int], dict[uuid.UUID, float]]:
    """Per service, in one query: its live referrals (those awaiting an answer count too,
    so that a burst of referrals cannot overfill a service before it answers), and the
    share of its latest `ACCEPTANCE_WINDOW` answered referrals it accepted. Both read
    partial indexes, so their cost does not grow with the service's past."""
    if not service_ids:
        return {}, {}
    service, status = col(Referral.service_id), col(Referral.status)
    live = (
        select(service, literal(_LIVE_ROW), func.count())
        .where(service.in_(service_ids), _LIVE)
        .group_by(service)
    )
    latest = [
        select(service, status)
        .where(service == sid, _ANSWERED)
        .order_by(col(Referral.created_at).desc())
        .limit(ACCEPTANCE_WINDOW)
        .subquery()
        for sid in service_ids
    ]
    answered = union_all(*(select(q.c.service_id, q.c.status) for q in latest)).subquery()
    by_status = select(answered.c.service_id, answered.c.status, func.count()).group_by(
        answered.c.service_id, answered.c.status
    )
    loads: dict[uuid.UUID, int] = {}
    yes: Counter[uuid.UUID] = Counter()
    all_answered: Counter[uuid.UUID] = Counter()
    for sid, kind, n in await session.execute(union_all(live, by_status)):
        if kind == _LIVE_ROW:
            loads[sid] = int(n)
            continue
        all_answered[sid] += int(n)
        if kind in ACCEPTED:
            yes[sid] += int(n)
    return loads, {
        sid: yes[sid] / all_answered[sid] if all_answered[sid] else NEUTRAL for sid in service_ids
    }
