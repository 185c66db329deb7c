"""Routing a need: a referral to the best fitting service, or `unmatched` with the reasons.

A need is routed when it is assessed, and again whenever what blocked it may have changed:
its case or a consent arrived, a service was published or widened, capacity was freed, or
its referral was rejected or expired (then the services already tried are passed over, up
to the attempt limit).
"""

from __future__ import annotations

import hashlib
import uuid
import zlib
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.events.catalog import ReferralEvent, ReferralUnmatched
from icrs_shared.outbox import Outbox

from .models import KnownCase, KnownNeed, KnownService, Referral, ReferralTransition
from .routing import route
from .situation import situation

#: Referrals whose service was tried and did not take the need.
_PASSED = ("rejected", "expired")
#: How many waiting needs one event re-routes at most (the next events take the rest).
RETRY_BATCH = 200


_ROUTING_LOCK = zlib.crc32(b"icrs-referral:routing")


def _key(kind: str, entity: uuid.UUID) -> int:
    digest = hashlib.sha256(f"icrs-referral:{kind}:{entity}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def routing_lock(session: AsyncSession, *, case_id: uuid.UUID | None = None) -> None:
    """Take the routing lock until the transaction ends. Whatever routes (an event, a
    partner's answer, the expiry sweep) takes it first, before any row lock: a need and
    the consent or service that lets it match, arriving at once, then cannot each miss
    the other.

    What routes the needs of one case only (its case, consent and needs events, a
    rejection, a manual referral) passes `case_id`: it takes the lock shared and the
    case's own lock, so that different cases route side by side. What may route any case
    (a service or an organization changed, a place freed, consent withdrawn, the expiry
    sweep) takes the lock alone. Two cases routed at once to one service with a
    capacity are kept apart by `capacity_locks`. (SQLite has one writer at a time.)"""
    if session.get_bind().dialect.name != "postgresql":
        return
    if case_id is None:
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ROUTING_LOCK})
        _held(session).add(_ROUTING_LOCK)
        return
    case = _key("case", case_id)
    await session.execute(
        text("SELECT pg_advisory_xact_lock_shared(:k), pg_advisory_xact_lock(:c)"),
        {"k": _ROUTING_LOCK, "c": case},
    )
    _held(session).add(case)


def routes_alone(session: AsyncSession, case_id: uuid.UUID | None = None) -> bool:
    """Whether this transaction holds the routing lock alone, or `case_id`'s lock: no
    other routing then writes what it reads (of that case)."""
    held = _held(session)
    return _ROUTING_LOCK in held or (case_id is not None and _key("case", case_id) in held)


async def capacity_locks(session: AsyncSession, services: Iterable[KnownService]) -> bool:
    """Lock the places of every one of `services` that has a capacity, until the
    transaction ends (on PostgreSQL); true when a lock was newly taken, and loads must then
    be counted again: a referral to one of them that another case's routing just made is
    committed now.

    A routing locks all the capacities of a need's category before choosing, in the order
    of their keys, and routes its needs category by category: two routings never wait for
    each other in a circle. (What may route any case holds the routing lock alone, so no
    service appears or changes meanwhile.)"""
    if session.get_bind().dialect.name != "postgresql":
        return False
    held = _held(session)
    keys = sorted({_key("service", s.id) for s in services if s.maximum is not None} - held)
    for key in keys:
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        held.add(key)
    return bool(keys)


_HELD = "icrs.referral.held_locks"


def _held(session: AsyncSession) -> set[int]:
    """The keys of the advisory locks taken in the session's current transaction (its
    locks end with it, the session may go on)."""
    transaction = session.sync_session.get_transaction()
    known = session.sync_session.info.get(_HELD)
    if known is None or known[0] is not transaction:
        known = session.sync_session.info[_HELD] = (transaction, set())
    held: set[int] = known[1]
    return held


def referral_event(referral: Referral) -> ReferralEvent:
    return ReferralEvent(
        referral_id=referral.id,
        case_id=referral.case_id,
        need_id=referral.need_id,
        need_category=referral.need_category,
        requester_organization_id=referral.requester_organization_id,
        organization_id=referral.organization_id,
        service_id=referral.service_id,
        status=referral.status,
        attempt=referral.attempt,
        reason=referral.reason,
        outcome=referral.outcome,
        previous_referral_id=referral.previous_referral_id,
    )


async def route_need(
    *,
    session: AsyncSession,
    outbox: Outbox,
    need: KnownNeed,
    max_attempts: int,
    now: datetime,
    previous: Referral | None = None,
) -> Referral | None:
    """Refer the need if it is waiting and something fits; else mark it unmatched.
    Returns the new referral, if one was made."""
    case = await session.get(KnownCase, need.case_id)
    if case is None:
        return None  # the case's event has not come yet: it routes the need when it does
    if case.status != "open":
        need.status = "closed"
        session.add(need)
        return None
    earlier = list(
        (await session.execute(select(Referral).where(col(Referral.need_id) == need.id))).scalars()
    )
    if any(r.status not in _PASSED for r in earlier):
        return None  # referred already, or its referral ended otherwise than passed over
    if len(earlier) >= max_attempts:
        await _unmatched(session, outbox, need, ["attempts-exhausted"], len(earlier))
        return None
    seen = await situation(session, need, case)
    if await capacity_locks(session, seen.rows.values()):
        seen = await situation(session, need, case)  # loads counted under the locks
    decision = route(
        category=need.category,
        case=seen.case,
        services=seen.services,
        organizations=seen.organizations,
        consents=seen.consents,
        loads=seen.loads,
        acceptance=seen.acceptance,
        tried=[r.service_id for r in earlier if r.status in _PASSED],
        now=now,
    )
    if decision.chosen is None:
        await _unmatched(session, outbox, need, decision.reasons, len(earlier))
        return None
    chosen = seen.rows[decision.chosen.service_id]
    return await refer(
        session=session,
        outbox=outbox,
        need=need,
        service=chosen,
        attempt=len(earlier) + 1,
        routing=decision.as_record(),
        now=now,
        previous=previous,
    )


async def refer(
    *,
    session: AsyncSession,
    outbox: Outbox,
    need: KnownNeed,
    service: KnownService,
    attempt: int,
    routing: dict[str, object],
    now: datetime,
    previous: Referral | None = None,
) -> Referral:
    """Make the referral of `need` to `service`, and say so."""
    referral = Referral(
        case_id=need.case_id,
        need_id=need.id,
        need_category=need.category,
        requester_organization_id=need.requester_organization_id,
        organization_id=service.organization_id,
        service_id=service.id,
        attempt=attempt,
        previous_referral_id=previous.id if previous is not None else None,
        routing=routing,
        accept_by=now + timedelta(seconds=service.accept_within_seconds),
        created_at=now,
        updated_at=now,
    )
    session.add(referral)
    need.status, need.reasons, need.attempts, need.updated_at = "referred", [], attempt, now
    session.add(need)
    session.add(
        ReferralTransition(referral_id=referral.id, to_status="requested", actor="platform", at=now)
    )
    await session.flush()
    verb = "rerouted" if previous is not None else "created"
    await outbox.emit(
        session,
        f"icrs.referral.{verb}",
        referral_event(referral),
        subject=referral.id,
        actororg=referral.requester_organization_id,
    )
    return referral


async def _unmatched(
    session: AsyncSession, outbox: Outbox, need: KnownNeed, reasons: list[str], attempts: int
) -> None:
    if need.status == "unmatched" and need.reasons == reasons:
        return  # nothing new to tell
    need.status, need.reasons = "unmatched", reasons
    session.add(need)
    await outbox.emit(
        session,
        "icrs.referral.unmatched",
        ReferralUnmatched(
            case_id=need.case_id,
            need_id=need.id,
            need_category=need.category,
            requester_organization_id=need.requester_organization_id,
            reasons=reasons,
            attempt=attempts,
        ),
        subject=need.id,
        actororg=need.requester_organization_id,
    )


async def waiting_needs(
    session: AsyncSession, *, case_id: uuid.UUID | None = None, category: str | None = None
) -> list[KnownNeed]:
    """Needs not referred yet (open or unmatched), of a case (by category, then oldest
    first) or of a category (oldest first)."""
    query = select(KnownNeed).where(col(KnownNeed.status).in_(("open", "unmatched")))
    if case_id is not None:
        query = query.where(col(KnownNeed.case_id) == case_id)
    if category is not None:
        query = query.where(col(KnownNeed.category) == category)
    if case_id is not None:
        # A case's needs category by category, as its routing takes capacity locks.
        query = query.order_by(col(KnownNeed.category))
    query = query.order_by(col(KnownNeed.created_at)).limit(RETRY_BATCH)
    return list((await session.execute(query.with_for_update())).scalars())


async def route_waiting(
    *,
    session: AsyncSession,
    outbox: Outbox,
    max_attempts: int,
    now: datetime,
    case_id: uuid.UUID | None = None,
    category: str | None = None,
) -> int:
    """Route again the waiting needs of a case or a category; returns how many got referred."""
    made = 0
    for need in await waiting_needs(session, case_id=case_id, category=category):
        referral = await route_need(
            session=session, outbox=outbox, need=need, max_attempts=max_attempts, now=now
        )
        made += referral is not None
    return made
