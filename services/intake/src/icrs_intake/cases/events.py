"""What the other services learn of a case: its routing attributes, never personal data."""

from __future__ import annotations

from icrs_shared.events.catalog import CaseEvent

from ..models import Case


def case_event(case: Case) -> CaseEvent:
    return CaseEvent(
        case_id=case.id,
        organization_id=case.organization_id,
        version=case.version,
        is_minor=case.is_minor,
        sex=case.sex,
        age_band=case.age_band,
        area=case.area,
        languages=list(case.languages),
        beneficiary_category=case.beneficiary_category,
        programme_track=case.programme_track,
        status=case.status,
    )
