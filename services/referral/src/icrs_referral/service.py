"""Moving referrals through their lifecycle: the partner's and the requester's moves, and
the platform's (expiry, cancellation when consent is withdrawn or the case erased).
Functions here never commit: the request or the consumer does."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.auth import Caller, organization_of
from icrs_shared.db import Database
from icrs_shared.errors import Conflict, NotFound
from icrs_shared.outbox import Outbox

from . import lifecycle
from .lifecycle import AWAITING, LIVE
from .models import (
    KnownCase,
    KnownConsent,
    KnownNeed,
    KnownService,
    Referral,
    ReferralTransition,
)
from .router import (
    capacity_locks,
    refer,
    referral_event,
    route_need,
    route_waiting,
    routing_lock,
)
from .routing import reasons_against
from .situation import consent_view, service_view, situation

_EXPIRY_LOCK = zlib.crc32(b"icrs-referral:expiry")
RESPOND, WRITE, READ = "referrals:respond", "referrals:write", "referrals:read"


def side(caller: Caller, referral: Referral) -> set[str]:
    """Which parties of the referral the caller speaks for."""
    org = organization_of(caller)
    sides = set()
    if org == referral.organization_id and caller.has_scopes(RESPOND):
        sides.add("provider")
    if org == referral.requester_organization_id and caller.has_scopes(WRITE):
        sides.add("requester")
    return sides


async def get_visible(
    session: AsyncSession, referral_id: uuid.UUID, caller: Caller, *, for_update: bool = False
) -> Referral:
    """A referral of the caller's organization as provider or requester; 404 otherwise.
    `for_update` locks its row until the transaction ends, and reads it again."""
    org = organization_of(caller)
    referral = await session.get(
        Referral, referral_id, with_for_update=for_update, populate_existing=for_update
    )
    if referral is None or org not in (
        referral.organization_id,
        referral.requester_organization_id,
    ):
        raise NotFound("no such referral")
    return referral


async def move(
    *,
    session: AsyncSession,
    outbox: Outbox,
    referral: Referral,
    target: str,
    actor: str,
    actor_id: str | None,
    reason: str | None,
    outcome: str | None,
    max_attempts: int,
    now: datetime,
) -> Referral:
    """Move the referral to `target` as `actor` (provider, requester or platform)."""
    current = referral.status
    lifecycle.check(current, target, actor, reason=reason, outcome=outcome)
    referral.status, referral.reason, referral.updated_at = target, reason, now
    if target == "completed":
        referral.outcome = outcome
    referral.version += 1
    session.add(referral)
    session.add(
        ReferralTransition(
            referral_id=referral.id,
            from_status=current,
            to_status=target,
            actor=actor,
            actor_id=actor_id,
            at=now,
        )
    )
    await session.flush()
    await outbox.emit(
        session,
        f"icrs.referral.{lifecycle.event_verb(current, target)}",
        referral_event(referral),
        subject=referral.id,
        actor=actor_id,
        actororg=referral.organization_id if actor == "provider" else None,
    )
    if target in ("rejected", "expired") and referral.need_id is not None:
        need = await session.get(KnownNeed, referral.need_id, with_for_update=True)
        if need is not None:
            await route_need(
                session=session,
                outbox=outbox,
                need=need,
                max_attempts=max_attempts,
                now=now,
                previous=referral,
            )
    elif current in LIVE and target not in LIVE:
        # A place at the service is free again: needs waiting for this category may fit.
        await route_waiting(
            session=session,
            outbox=outbox,
            max_attempts=max_attempts,
            now=now,
            category=referral.need_category,
        )
    return referral


async def live_of_case(session: AsyncSession, case_id: uuid.UUID) -> Sequence[Referral]:
    query = select(Referral).where(col(Referral.case_id) == case_id, col(Referral.status).in_(LIVE))
    return (await session.execute(query.with_for_update())).scalars().all()


async def cancel_uncovered(
    *,
    session: AsyncSession,
    outbox: Outbox,
    case_id: uuid.UUID,
    now: datetime,
    reason: str,
    max_attempts: int,
) -> int:
    """Cancel the case's live referrals that no active consent covers any more."""
    consents = (
        await session.execute(select(KnownConsent).where(col(KnownConsent.case_id) == case_id))
    ).scalars()
    views = [consent_view(c) for c in consents]
    cancelled = 0
    for referral in await live_of_case(session, case_id):
        if reason == "consent-withdrawn" and any(
            v.covers(referral.need_category, referral.organization_id, now) for v in views
        ):
            continue
        await move(
            session=session,
            outbox=outbox,
            referral=referral,
            target="cancelled",
            actor="platform",
            actor_id=None,
            reason=reason,
            outcome=None,
            max_attempts=max_attempts,
            now=now,
        )
        cancelled += 1
    return cancelled


async def expire_due(db: Database, outbox: Outbox, *, now: datetime, max_attempts: int) -> int:
    """Expire the referrals not accepted in time, and route their needs on. One replica
    sweeps at a time; a referral is expired once."""
    async with db.transaction() as session:
        if db.dialect == "postgresql":
            got = await session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _EXPIRY_LOCK}
            )
            if not got:
                return 0
        await routing_lock(session)
        query = (
            select(Referral)
            .where(col(Referral.status).in_(AWAITING), col(Referral.accept_by) <= now)
            .order_by(col(Referral.accept_by))
            .limit(100)
            .with_for_update(skip_locked=True)
        )
        due = list((await session.execute(query)).scalars())
        for referral in due:
            await move(
                session=session,
                outbox=outbox,
                referral=referral,
                target="expired",
                actor="platform",
                actor_id=None,
                reason=None,
                outcome=None,
                max_attempts=max_attempts,
                now=now,
            )
    return len(due)


class DoesNotFit(Conflict):
    code, title = "service-does-not-fit", "The service does not fit"


async def refer_manually(
    *,
    session: AsyncSession,
    outbox: Outbox,
    caller: Caller,
    need_id: uuid.UUID,
    service_id: uuid.UUID,
    now: datetime,
) -> Referral:
    """The requester refers a need of its own to a service it chose, which must still fit
    (area, eligibility, minors, consent, capacity); 409 with the reasons otherwise."""
    need = await session.get(KnownNeed, need_id, with_for_update=True)
    if need is None or need.requester_organization_id != organization_of(caller):
        raise NotFound("no such need")
    case = await session.get(KnownCase, need.case_id)
    if case is None or case.status != "open":
        raise Conflict("the need's case is not open")
    earlier = list(
        (await session.execute(select(Referral).where(col(Referral.need_id) == need.id))).scalars()
    )
    if any(r.status in LIVE for r in earlier):
        raise Conflict("the need is referred already: cancel that referral first")
    chosen = await session.get(KnownService, service_id)
    if chosen is None or chosen.category != need.category:
        raise NotFound(f"no {need.category} service with this id")
    seen = await situation(session, need, case)
    if await capacity_locks(session, seen.rows.values()):
        seen = await situation(session, need, case)  # its load counted under the lock
    reasons = reasons_against(
        service_view(chosen),
        seen.organizations.get(chosen.organization_id),
        seen.case,
        need.category,
        seen.consents,
        seen.loads.get(chosen.id, 0),
        now,
    )
    if reasons:
        raise DoesNotFit("the chosen service cannot take this need", extra={"reasons": reasons})
    return await refer(
        session=session,
        outbox=outbox,
        need=need,
        service=chosen,
        attempt=len(earlier) + 1,
        routing={"chosen": str(chosen.id), "manual": True, "reasons": []},
        now=now,
    )
