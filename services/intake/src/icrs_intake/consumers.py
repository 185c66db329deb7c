"""Event handlers of the intake service: the referral service's events move the plan.

Each referral event updates what intake knows of that referral (`referral_links`) and the
status of its need; `referral.unmatched` marks the need unmatched. Events may come out of
order: an event older than what is known (by its CloudEvents `time`) changes nothing. The
inbox already drops a redelivered event; the time comparison makes a replayed one harmless
too. A handler locks the need, then the referral, so that the events of one need apply one
at a time. Events about cases intake does not hold are ignored.
"""

from __future__ import annotations

import functools
import logging
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.events import Envelope
from icrs_shared.events.catalog import ReferralEvent, ReferralUnmatched, platform_events
from icrs_shared.events.registry import EventRegistry, UnknownEventType
from icrs_shared.messaging import Consumers
from icrs_shared.outbox import Outbox

from .models import Case, Need, ReferralLink, outbox_table
from .plans import service as plans
from .plans.schemas import REFERRAL_STATUSES, PlanItemOut

log = logging.getLogger(__name__)

consumers = Consumers()

REFERRAL_SOURCE = "/icrs/referral"
_CODE = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
#: How far along the lifecycle a status is: between two events of the same time, the
#: later stage wins.
_STAGE = {"requested": 0, "received": 1, "accepted": 2, "in-progress": 3, "on-hold": 3}
_LAST_STAGE = 4


@functools.cache
def _registry() -> EventRegistry:
    return platform_events()


@functools.cache
def _outbox() -> Outbox:
    return Outbox(outbox_table, service="intake", registry=_registry())


@consumers.on("referral-links", "referral.#")
async def on_referral(session: AsyncSession, envelope: Envelope) -> None:
    if envelope.source != REFERRAL_SOURCE:
        log.warning("referral event from another source ignored", extra=_ids(envelope))
        return
    try:
        expected = _registry()[envelope.type].data
    except UnknownEventType:
        log.info("unknown referral event type ignored", extra=_ids(envelope))
        return
    if expected is ReferralUnmatched:
        await _unmatched(session, envelope, ReferralUnmatched.model_validate(envelope.data))
    elif expected is ReferralEvent:
        await _moved(session, envelope, ReferralEvent.model_validate(envelope.data))


async def _moved(session: AsyncSession, envelope: Envelope, event: ReferralEvent) -> None:
    if event.status not in REFERRAL_STATUSES:
        log.warning("referral event with an unknown status ignored", extra=_ids(envelope))
        return
    found = await _case_and_need(session, envelope, event.case_id, event.need_id)
    if found is None:
        return
    # Need first, then referral: every handler locks in this order.
    case, need = found
    link, links = await _link_and_need_links(session, event.referral_id, need)
    if link is not None and link.case_id != case.id:
        log.warning("referral event names another case than before", extra=_ids(envelope))
        return
    if link is not None and not _newer(envelope.time, event.status, link.event_time, link.status):
        return
    before = _item(need, links)
    values: dict[str, Any] = {
        "case_id": case.id,
        "need_id": need.id if need is not None else None,
        "need_category": event.need_category[:32],
        "provider_organization_id": event.organization_id,
        "service_id": event.service_id,
        "status": event.status,
        "attempt": max(0, min(event.attempt, 10_000)),
        "outcome": event.outcome[:64] if event.outcome else None,
        "reason": event.reason[:64] if event.reason else None,
        "event_time": envelope.time,
        "updated_at": datetime.now(UTC),
    }
    if link is None:
        link = ReferralLink(referral_id=event.referral_id, **values)
    else:
        for name, value in values.items():
            setattr(link, name, value)
    session.add(link)
    if need is not None and link.need_id == need.id and all(known is not link for known in links):
        links.append(link)
    if need is not None and _newer(envelope.time, event.status, need.status_at, need.status):
        need.status, need.status_at, need.unmatched_reasons = event.status, envelope.time, []
        session.add(need)
    await session.flush()
    await _plan_follows(session, envelope, case, before, _item(need, links))


async def _unmatched(session: AsyncSession, envelope: Envelope, event: ReferralUnmatched) -> None:
    found = await _case_and_need(session, envelope, event.case_id, event.need_id)
    if found is None:
        return
    case, need = found
    if need is None:
        log.info("referral.unmatched for no known need ignored", extra=_ids(envelope))
        return
    if not _newer(envelope.time, "unmatched", need.status_at, need.status):
        return
    links = await _links(session, need)
    before = _item(need, links)
    need.status, need.status_at = "unmatched", envelope.time
    need.unmatched_reasons = [r for r in dict.fromkeys(event.reasons) if _CODE.match(r)][:20]
    session.add(need)
    await session.flush()
    await _plan_follows(session, envelope, case, before, _item(need, links))


async def _case_and_need(
    session: AsyncSession, envelope: Envelope, case_id: uuid.UUID, need_id: uuid.UUID | None
) -> tuple[Case, Need | None] | None:
    """The case and its need, the need locked (the events of one need apply one at a
    time), in one query when the need is the case's; None when intake does not hold the
    case."""
    if need_id is not None:
        query = (
            select(Need, Case)
            .join(Case, col(Case.id) == col(Need.case_id))
            .where(col(Need.id) == need_id, col(Need.case_id) == case_id)
            .with_for_update(of=Need, key_share=True)
        )
        row = (await session.execute(query)).first()
        if row is not None:
            return row[1], row[0]
    case = await session.get(Case, case_id)
    if case is None:
        log.info("referral event about a case intake does not hold", extra=_ids(envelope))
        return None
    return case, None


async def _links(session: AsyncSession, need: Need | None) -> list[ReferralLink]:
    return [] if need is None else await plans.need_links(session=session, need=need)


async def _link_and_need_links(
    session: AsyncSession, referral_id: uuid.UUID, need: Need | None
) -> tuple[ReferralLink | None, list[ReferralLink]]:
    """The referral's link, locked, and the need's links (the need is locked already),
    in one query."""
    # FOR NO KEY UPDATE: serializes writers of a row without blocking rows that refer to it.
    query = select(ReferralLink).with_for_update(key_share=True)
    if need is None:
        query = query.where(col(ReferralLink.referral_id) == referral_id)
    else:
        query = query.where(
            or_(
                col(ReferralLink.referral_id) == referral_id,
                col(ReferralLink.need_id) == need.id,
            )
        )
    found = (await session.execute(query)).scalars().all()
    link = next((f for f in found if f.referral_id == referral_id), None)
    links = [] if need is None else [f for f in found if f.need_id == need.id]
    return link, links


def _item(need: Need | None, links: list[ReferralLink]) -> PlanItemOut | None:
    return None if need is None else plans.item(need, links)


async def _plan_follows(
    session: AsyncSession,
    envelope: Envelope,
    case: Case,
    before: PlanItemOut | None,
    after: PlanItemOut | None,
) -> None:
    """When the need's plan item changed, a new plan version and `plan.updated`, in this
    transaction."""
    if after is None or after == before:
        return
    await plans.items_changed(
        session=session,
        outbox=_outbox(),
        case=case,
        actor=envelope.actor,
        actororg=envelope.actororg,
    )


def _newer(time: datetime, status: str, than: datetime | None, than_status: str) -> bool:
    if than is None:
        return True
    than = than if than.tzinfo is not None else than.replace(tzinfo=UTC)
    if time != than:
        return time > than
    return _STAGE.get(status, _LAST_STAGE) > _STAGE.get(than_status, _LAST_STAGE)


def _ids(envelope: Envelope) -> dict[str, str]:
    return {"event_id": str(envelope.id), "event_type": envelope.type}
