"""Needs assessments: recording one (notes sealed), which emits `needs.assessed` (it starts
routing) and adds the needs to the plan; reading them back. Functions here never commit."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from icrs_shared.errors import Conflict, NotFound
from icrs_shared.events.catalog import AssessedNeed, NeedsAssessed
from icrs_shared.outbox import Outbox

from ..crypto import seal_json, unseal_json
from ..models import Assessment, Case, Need
from ..plans import service as plans
from .schemas import NeedIn

NOTE = "need-note"


@dataclass
class Recorded:
    assessment: Assessment
    needs: list[Need]


def note_of(need: Need, data_key: bytes | None) -> str | None:
    """The need's note in clear; None without one, or once the case is erased."""
    if need.note is None or data_key is None:
        return None
    note: str = unseal_json(data_key, need.case_id, NOTE, need.note)
    return note


async def record(
    *,
    session: AsyncSession,
    outbox: Outbox,
    case: Case,
    data_key: bytes,
    needs: list[NeedIn],
    actor: str,
) -> tuple[Assessment, list[Need]]:
    assessment = Assessment(
        case_id=case.id, organization_id=case.organization_id, recorded_by=actor
    )
    session.add(assessment)
    rows = [
        Need(
            assessment_id=assessment.id,
            case_id=case.id,
            category=n.category,
            priority=n.priority,
            note=seal_json(data_key, case.id, NOTE, n.note) if n.note is not None else None,
            share_note=n.share_note,
        )
        for n in needs
    ]
    session.add_all(rows)
    await session.flush()
    await outbox.emit(
        session,
        "icrs.needs.assessed",
        NeedsAssessed(
            assessment_id=assessment.id,
            case_id=case.id,
            organization_id=case.organization_id,
            needs=[
                AssessedNeed(need_id=r.id, category=r.category, priority=r.priority) for r in rows
            ],
        ),
        subject=case.id,
        actor=actor,
        actororg=case.organization_id,
    )
    await plans.items_changed(
        session=session, outbox=outbox, case=case, actor=actor, actororg=case.organization_id
    )
    return assessment, rows


async def assess(
    *,
    session: AsyncSession,
    outbox: Outbox,
    case: Case,
    data_key: bytes | None,
    needs: list[NeedIn],
    actor: str,
) -> Recorded:
    """Record an assessment of an open case."""
    if case.status != "open" or data_key is None:
        raise Conflict(f"a case that is {case.status} takes no new assessment")
    assessment, rows = await record(
        session=session, outbox=outbox, case=case, data_key=data_key, needs=needs, actor=actor
    )
    return Recorded(assessment, rows)


async def get(*, session: AsyncSession, case: Case, assessment_id: uuid.UUID) -> Recorded:
    assessment = await session.get(Assessment, assessment_id)
    if assessment is None or assessment.case_id != case.id:
        raise NotFound("no such assessment")
    return (await _with_needs(session, [assessment]))[0]


async def list_for(*, session: AsyncSession, case: Case) -> list[Recorded]:
    """The case's assessments, newest first, each with its needs."""
    query = (
        select(Assessment)
        .where(col(Assessment.case_id) == case.id)
        .order_by(col(Assessment.created_at).desc(), col(Assessment.id))
    )
    return await _with_needs(session, (await session.execute(query)).scalars().all())


async def _with_needs(session: AsyncSession, assessments: Sequence[Assessment]) -> list[Recorded]:
    ids = [a.id for a in assessments]
    found: dict[uuid.UUID, list[Need]] = defaultdict(list)
    if ids:
        query = (
            select(Need)
            .where(col(Need.assessment_id).in_(ids))
            .order_by(col(Need.created_at), col(Need.id))
        )
        for need in (await session.execute(query)).scalars():
            found[need.assessment_id].append(need)
    return [Recorded(a, found[a.id]) for a in assessments]
