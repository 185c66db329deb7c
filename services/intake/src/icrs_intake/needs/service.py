"""Recording a needs assessment: its needs (notes sealed), and `needs.assessed`, which
starts routing."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from icrs_shared.events.catalog import AssessedNeed, NeedsAssessed
from icrs_shared.outbox import Outbox

from ..crypto import seal_json
from ..models import Assessment, Case, Need
from .schemas import NeedIn

NOTE = "need-note"


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
    return assessment, rows
