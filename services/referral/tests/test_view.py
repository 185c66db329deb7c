"""The view of the other services, from their events on the real broker and database:
whatever order the events come in, and however often, it converges."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from icrs_referral.models import KnownCase, KnownConsent, KnownNeed, KnownOrganization, KnownService
from icrs_shared.events import Envelope
from icrs_shared.testing import eventually

if TYPE_CHECKING:
    from conftest import Referral

T0 = datetime(2026, 11, 28, 9, tzinfo=UTC)
ORG, CASE = uuid.uuid4(), uuid.uuid4()


def at(minutes: int, event_type: str, subject: uuid.UUID, **data: Any) -> Envelope:
    source = (
        "/icrs/partners"
        if event_type.split(".")[1] in ("organization", "service")
        else "/icrs/intake"
    )
    return Envelope(
        source=source,
        type=event_type,
        subject=str(subject),
        time=T0 + timedelta(minutes=minutes),
        data=data,
    )


def service_data(service_id: uuid.UUID, version: int, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "service_id": str(service_id),
        "organization_id": str(ORG),
        "category": "health",
        "status": "active",
        "service_areas": ["SO11"],
        "languages": ["so"],
        "eligibility": {"accepts_minors": True},
        "capacity": {"maximum": 10, "accepting": True},
        "accept_within_seconds": 3600,
        "version": version,
    }
    return {**data, **changes}


def case_data(version: int, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "case_id": str(CASE),
        "organization_id": str(ORG),
        "version": version,
        "is_minor": False,
        "sex": "female",
        "age_band": "25-34",
        "area": "SO1101",
        "languages": ["so"],
        "beneficiary_category": "ex_combatant",
        "programme_track": "DDR",
        "status": "open",
    }
    return {**data, **changes}


async def row(referral: Referral, model: type[Any], key: uuid.UUID) -> Any:
    async with referral.app.state.runtime.db.sessions() as session:
        return await session.get(model, key)


async def settled(referral: Referral, events: list[Envelope]) -> None:
    """Publish in reverse order, and each twice, then wait until every event was handled."""
    await referral.bus.publish(list(reversed(events)) + events)
    from sqlalchemy import func, select

    from icrs_referral.models import inbox_table

    async def all_handled() -> bool:
        async with referral.app.state.runtime.db.sessions() as session:
            count = await session.scalar(select(func.count()).select_from(inbox_table))
            return count == len(events)

    await eventually(all_handled)


async def test_a_service_follows_its_latest_version_and_time(referral: Referral) -> None:
    sid = uuid.uuid4()
    await settled(
        referral,
        [
            at(1, "icrs.service.published", sid, **service_data(sid, 1)),
            at(2, "icrs.service.updated", sid, **service_data(sid, 2, capacity={"maximum": 5})),
            at(
                3,
                "icrs.service.withdrawn",
                sid,
                **service_data(sid, 2, status="suspended", capacity={"maximum": 5}),
            ),
        ],
    )
    known = await row(referral, KnownService, sid)
    assert (known.status, known.maximum, known.version) == ("suspended", 5, 2)
    # Reactivation publishes the same version again, later: it wins.
    await referral.bus.publish([at(4, "icrs.service.published", sid, **service_data(sid, 2))])

    async def active() -> bool:
        return (await row(referral, KnownService, sid)).status == "active"

    await eventually(active)


async def test_an_organization_follows_its_latest_event(referral: Referral) -> None:
    org = {"organization_id": str(ORG), "kind": "ngo", "child_safeguarding": True}
    await settled(
        referral,
        [
            at(1, "icrs.organization.registered", ORG, **org, status="pending"),
            at(2, "icrs.organization.verified", ORG, **org, status="active"),
            at(3, "icrs.organization.suspended", ORG, **org, status="suspended"),
        ],
    )
    known = await row(referral, KnownOrganization, ORG)
    assert (known.status, known.child_safeguarding) == ("suspended", True)


async def test_an_erased_case_stays_erased(referral: Referral) -> None:
    await settled(
        referral,
        [
            at(1, "icrs.case.registered", CASE, **case_data(1)),
            at(2, "icrs.case.updated", CASE, **case_data(2, area="SO1102", is_minor=True)),
            at(3, "icrs.case.erased", CASE, case_id=str(CASE), organization_id=str(ORG)),
            at(4, "icrs.case.updated", CASE, **case_data(3, area="SO2201")),
        ],
    )
    assert (await row(referral, KnownCase, CASE)).status == "erased"


async def test_a_withdrawn_consent_stays_withdrawn(referral: Referral) -> None:
    cid = uuid.uuid4()
    consent = {
        "consent_id": str(cid),
        "case_id": str(CASE),
        "organization_id": str(ORG),
        "purposes": ["referral"],
        "recipient_categories": ["health"],
    }
    await settled(
        referral,
        [
            at(1, "icrs.consent.granted", CASE, **consent),
            at(2, "icrs.consent.withdrawn", CASE, **consent, status="withdrawn"),
        ],
    )
    known = await row(referral, KnownConsent, cid)
    assert known.withdrawn is True
    assert known.categories == ["health"]


async def test_a_need_is_recorded_once(referral: Referral) -> None:
    need = uuid.uuid4()
    assessed = {
        "assessment_id": str(uuid.uuid4()),
        "case_id": str(CASE),
        "organization_id": str(ORG),
        "needs": [{"need_id": str(need), "category": "housing", "priority": "urgent"}],
    }
    await settled(referral, [at(1, "icrs.needs.assessed", CASE, **assessed)])
    known = await row(referral, KnownNeed, need)
    assert (known.category, known.priority, known.status) == ("housing", "urgent", "open")
    assert known.requester_organization_id == ORG
