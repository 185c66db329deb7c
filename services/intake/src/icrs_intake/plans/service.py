"""The reintegration plan: its goals and review date (goals sealed under the case's data
key), and its items, which are the case's needs following their referrals.

The plan's version counts every change to what it shows: goals and review date, a need
added, an item's state moved by a referral event. Each change emits `plan.updated`.
Functions here never commit: the request or the consumer does.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.errors import Conflict, PreconditionFailed
from icrs_shared.events.catalog import PlanItem, PlanUpdated
from icrs_shared.outbox import Outbox

from ..crypto import seal_json, unseal_json
from ..models import Case, Need, Plan, ReferralLink
from .schemas import PlanItemOut, PlanOut, PlanUpdate, ReferralState

#: The purpose the goals are sealed under (bound into their ciphertext).
GOALS = "plan-goals"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _insert(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def current(*, session: AsyncSession, case_id: uuid.UUID) -> Plan | None:
    return await session.get(Plan, case_id, populate_existing=True)


def latest_referrals(links: Sequence[ReferralLink]) -> dict[uuid.UUID, ReferralLink]:
    """Each need's latest referral: the one whose last event is the newest."""
    latest: dict[uuid.UUID, ReferralLink] = {}
    for link in links:
        if link.need_id is None:
            continue
        known = latest.get(link.need_id)
        if known is None or (_aware(link.event_time), link.attempt) > (
            _aware(known.event_time),
            known.attempt,
        ):
            latest[link.need_id] = link
    return latest


async def items(*, session: AsyncSession, case_id: uuid.UUID) -> list[PlanItemOut]:
    """The case's plan items, oldest need first: its needs and their referrals, in one
    query."""
    query = (
        select(Need, ReferralLink)
        .outerjoin(ReferralLink, col(ReferralLink.need_id) == col(Need.id))
        .where(col(Need.case_id) == case_id)
        .order_by(col(Need.created_at), col(Need.id))
    )
    needs: dict[uuid.UUID, Need] = {}
    links: list[ReferralLink] = []
    for need, link in await session.execute(query):
        needs.setdefault(need.id, need)
        if link is not None:
            links.append(link)
    latest = latest_referrals(links)
    return [_item(need, latest.get(need.id)) for need in needs.values()]


async def need_links(*, session: AsyncSession, need: Need) -> list[ReferralLink]:
    """The referrals of one need that intake knows of."""
    query = select(ReferralLink).where(col(ReferralLink.need_id) == need.id)
    return list((await session.execute(query)).scalars().all())


def item(need: Need, links: Sequence[ReferralLink]) -> PlanItemOut:
    """The plan item of one need, given its referrals (`need_links`)."""
    return _item(need, latest_referrals(links).get(need.id))


def _item(need: Need, link: ReferralLink | None) -> PlanItemOut:
    referral = None
    if link is not None:
        referral = ReferralState(
            referral_id=link.referral_id,
            status=link.status,
            organization_id=link.provider_organization_id,
            service_id=link.service_id,
            attempt=link.attempt,
            outcome=link.outcome,
            reason=link.reason,
            updated_at=_aware(link.event_time),
        )
    return PlanItemOut(
        need_id=need.id,
        category=need.category,
        priority=need.priority,
        status=need.status,
        unmatched_reasons=list(need.unmatched_reasons) if need.status == "unmatched" else [],
        referral=referral,
    )


async def read(*, session: AsyncSession, case: Case, data_key: bytes | None) -> PlanOut:
    plan = await current(session=session, case_id=case.id)
    goals = None
    if plan is not None and plan.content is not None and data_key is not None:
        goals = unseal_json(data_key, case.id, GOALS, plan.content)["goals"]
    return PlanOut(
        case_id=case.id,
        version=plan.version if plan is not None else 0,
        goals=goals,
        review_date=plan.review_date if plan is not None else None,
        items=await items(session=session, case_id=case.id),
        updated_at=_aware(plan.updated_at) if plan is not None else None,
    )


async def update_plan(
    *,
    session: AsyncSession,
    outbox: Outbox,
    case: Case,
    data_key: bytes | None,
    data: PlanUpdate,
    version: int,
    actor: str,
) -> PlanOut:
    """Replace goals and review date of the plan at `version` (0: none yet); a plan that
    moved on meanwhile answers 412, so that two editors cannot both win."""
    if case.status != "open" or data_key is None:
        raise Conflict(f"the plan of a case that is {case.status} cannot be changed")
    values = {
        "content": seal_json(data_key, case.id, GOALS, {"goals": data.goals}),
        "review_date": data.review_date,
        "updated_at": datetime.now(UTC),
        "updated_by": actor[:64],
    }
    if version == 0:
        stmt = (
            _insert(session)(Plan)
            .values(case_id=case.id, version=1, **values)
            .on_conflict_do_nothing()
            .returning(col(Plan.version))
        )
    else:
        stmt = (
            update(Plan)
            .where(col(Plan.case_id) == case.id, col(Plan.version) == version)
            .values(version=version + 1, **values)
            .returning(col(Plan.version))
        )
    if (await session.execute(stmt)).scalar_one_or_none() is None:
        raise PreconditionFailed("the plan has changed since you read it")
    out = await read(session=session, case=case, data_key=data_key)
    await _emit(session, outbox, case, out.version, out.items, actor, case.organization_id)
    return out


async def items_changed(
    *,
    session: AsyncSession,
    outbox: Outbox,
    case: Case,
    actor: str | None,
    actororg: str | uuid.UUID | None,
) -> int:
    """The plan's items changed (a need added, a referral moved): a new version of the
    plan, made if there was none, and `plan.updated`. Returns the new version."""
    now = datetime.now(UTC)
    by = (actor or "intake")[:64]
    stmt = (
        _insert(session)(Plan)
        .values(case_id=case.id, version=1, updated_at=now, updated_by=by)
        .on_conflict_do_update(
            index_elements=["case_id"],
            set_={"version": col(Plan.version) + 1, "updated_at": now, "updated_by": by},
        )
        .returning(col(Plan.version))
    )
    version: int = (await session.execute(stmt)).scalar_one()
    listed = await items(session=session, case_id=case.id)
    await _emit(session, outbox, case, version, listed, actor, actororg)
    return version


async def _emit(
    session: AsyncSession,
    outbox: Outbox,
    case: Case,
    version: int,
    listed: list[PlanItemOut],
    actor: str | None,
    actororg: str | uuid.UUID | None,
) -> None:
    await outbox.emit(
        session,
        "icrs.plan.updated",
        PlanUpdated(
            case_id=case.id,
            organization_id=case.organization_id,
            version=version,
            items=[
                PlanItem(
                    item_id=i.need_id,
                    category=i.category,
                    status=i.status,
                    referral_id=i.referral.referral_id if i.referral is not None else None,
                )
                for i in listed
            ],
        ),
        subject=case.id,
        actor=actor,
        actororg=actororg,
    )
