"""Needs assessments, the reintegration plan, and the plan following referral events."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from icrs_intake.models import inbox_table
from icrs_shared.events import Envelope
from icrs_shared.events.catalog import ReferralEvent, ReferralUnmatched
from icrs_shared.testing import eventually

if TYPE_CHECKING:
    from conftest import Intake

NOTE = "Needs follow-up for a knee injury"
HEALTH = {"category": "health", "priority": "urgent", "note": NOTE, "share_note": True}
HOUSING = {"category": "housing", "priority": "normal", "note": None, "share_note": False}


async def assess(intake: Intake, case: dict[str, Any], *needs: dict[str, Any]) -> dict[str, Any]:
    r = await intake.client.post(
        f"/v1/cases/{case['id']}/assessments",
        json={"needs": list(needs)},
        headers=intake.caseworker,
    )
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def plan_of(intake: Intake, case: dict[str, Any]) -> dict[str, Any]:
    r = await intake.client.get(f"/v1/cases/{case['id']}/plan", headers=intake.caseworker)
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == f'"{case["id"]}.{r.json()["version"]}"'
    plan: dict[str, Any] = r.json()
    return plan


class Referrals:
    """Referral events as the referral service publishes them."""

    def __init__(self, intake: Intake, case: dict[str, Any], need_id: str) -> None:
        self.intake = intake
        self.case_id = uuid.UUID(case["id"])
        self.need_id = uuid.UUID(need_id)
        self.provider = uuid.uuid4()
        self.start = datetime.now(UTC)

    def event(
        self, verb: str, status: str, *, referral_id: uuid.UUID, minute: int, **data: Any
    ) -> Envelope:
        event = ReferralEvent(
            referral_id=referral_id,
            case_id=self.case_id,
            need_id=self.need_id,
            need_category=data.pop("need_category", "health"),
            requester_organization_id=self.intake.organization_id,
            organization_id=data.pop("organization_id", self.provider),
            service_id=uuid.uuid4(),
            status=status,
            **data,
        )
        return self.envelope(f"icrs.referral.{verb}", event.model_dump(mode="json"), minute)

    async def publish(
        self, verb: str, status: str, *, referral_id: uuid.UUID, minute: int, **data: Any
    ) -> Envelope:
        envelope = self.event(verb, status, referral_id=referral_id, minute=minute, **data)
        await self.intake.bus.publish([envelope])
        return envelope

    async def unmatched(self, reasons: list[str], *, minute: int) -> Envelope:
        event = ReferralUnmatched(
            case_id=self.case_id,
            need_id=self.need_id,
            need_category="housing",
            requester_organization_id=self.intake.organization_id,
            reasons=reasons,
        )
        return await self.send("icrs.referral.unmatched", event.model_dump(mode="json"), minute)

    def envelope(self, event_type: str, data: dict[str, Any], minute: int) -> Envelope:
        return Envelope(
            source="/icrs/referral",
            type=event_type,
            subject=str(data.get("referral_id") or self.case_id),
            time=self.start + timedelta(minutes=minute),
            data=data,
            actor="referral-client",
        )

    async def send(self, event_type: str, data: dict[str, Any], minute: int) -> Envelope:
        envelope = self.envelope(event_type, data, minute)
        await self.intake.bus.publish([envelope])
        return envelope


async def handled(intake: Intake, envelope: Envelope) -> None:
    """Wait until intake's consumer has handled (and committed) the event."""

    async def seen() -> bool:
        async with intake.app.state.runtime.db.sessions() as session:
            query = select(inbox_table.c.event_id).where(inbox_table.c.event_id == envelope.id)
            return (await session.execute(query)).first() is not None

    await eventually(seen)


async def test_record_and_read_assessments(intake: Intake) -> None:
    recorder = await intake.record("needs.assessed", "plan.updated")
    case = await intake.register()
    created = await assess(intake, case, HEALTH, HOUSING)
    assert [n["category"] for n in created["needs"]] == ["health", "housing"]
    assert created["needs"][0]["note"] == NOTE
    assert created["needs"][0]["share_note"] is True
    assert created["needs"][1]["note"] is None
    assert {n["status"] for n in created["needs"]} == {"open"}

    r = await intake.client.get(f"/v1/cases/{case['id']}/assessments", headers=intake.caseworker)
    assert r.json()["items"] == [created]
    r = await intake.client.get(
        f"/v1/cases/{case['id']}/assessments/{created['id']}", headers=intake.caseworker
    )
    assert r.json() == created

    assessed, updated = await recorder.wait_for(2)
    assert assessed.type == "icrs.needs.assessed"
    assert [n["need_id"] for n in assessed.data["needs"]] == [n["id"] for n in created["needs"]]
    assert assessed.data["needs"][0]["priority"] == "urgent"
    assert updated.type == "icrs.plan.updated"
    assert [i["status"] for i in updated.data["items"]] == ["open", "open"]
    for event in (assessed, updated):
        assert NOTE not in event.model_dump_json()
        assert "knee" not in event.model_dump_json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"needs": []}, "needs"),
        ({"needs": [{**HEALTH, "category": "astrology"}]}, "needs.0.category"),
        ({"needs": [{**HEALTH, "priority": "whenever"}]}, "needs.0.priority"),
        ({"needs": [{**HEALTH, "share_note": "yes"}]}, "needs.0.share_note"),
        ({"needs": [{**HEALTH, "note": "a\u202egnp.exe"}]}, "needs.0.note"),
        ({"needs": [{**HEALTH, "note": "x" * 2001}]}, "needs.0.note"),
        ({"needs": [{**HEALTH, "surprise": 1}]}, "needs.0.surprise"),
        ({"needs": [HEALTH] * 21}, "needs"),
        ({"needs": [HEALTH], "extra": True}, "extra"),
        ({"needs": "health"}, "needs"),
    ],
)
async def test_bad_assessments_name_the_field(
    intake: Intake, body: dict[str, Any], field: str
) -> None:
    case = await intake.register()
    r = await intake.client.post(
        f"/v1/cases/{case['id']}/assessments", json=body, headers=intake.caseworker
    )
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]]
    assert "gnp.exe" not in r.text


async def test_no_assessment_of_a_closed_or_erased_case(intake: Intake) -> None:
    case = await intake.register()
    await intake.client.post(f"/v1/cases/{case['id']}/close", headers=intake.caseworker)
    body = {"needs": [HEALTH]}
    path = f"/v1/cases/{case['id']}/assessments"
    assert (await intake.client.post(path, json=body, headers=intake.caseworker)).status_code == 409
    other = await intake.register(person={"documents": []}, area="SO2201")
    await intake.client.delete(f"/v1/cases/{other['id']}", headers=intake.caseworker)
    path = f"/v1/cases/{other['id']}/assessments"
    assert (await intake.client.post(path, json=body, headers=intake.caseworker)).status_code == 409


async def test_assessment_idempotency_key(intake: Intake) -> None:
    case = await intake.register()
    path = f"/v1/cases/{case['id']}/assessments"
    headers = {**intake.caseworker, "Idempotency-Key": "assess-1"}
    first = await intake.client.post(path, json={"needs": [HEALTH]}, headers=headers)
    again = await intake.client.post(path, json={"needs": [HEALTH]}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    listed = await intake.client.get(path, headers=intake.caseworker)
    assert len(listed.json()["items"]) == 1


async def test_plan_get_and_put_with_if_match(intake: Intake) -> None:
    recorder = await intake.record("plan.updated")
    case = await intake.register()
    path = f"/v1/cases/{case['id']}/plan"
    plan = await plan_of(intake, case)
    assert plan == {
        "case_id": case["id"],
        "version": 0,
        "goals": None,
        "review_date": None,
        "items": [],
        "updated_at": None,
    }
    body = {"goals": "Find stable work as a mechanic", "review_date": "2027-03-01"}
    # Before the plan exists, If-Match is optional.
    r = await intake.client.put(path, json=body, headers=intake.caseworker)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1
    assert r.json()["goals"] == body["goals"]
    assert r.headers["etag"] == f'"{case["id"]}.1"'

    assessment = await assess(intake, case, HEALTH)
    plan = await plan_of(intake, case)
    assert plan["version"] == 2
    [item] = plan["items"]
    assert item == {
        "need_id": assessment["needs"][0]["id"],
        "category": "health",
        "priority": "urgent",
        "status": "open",
        "unmatched_reasons": [],
        "referral": None,
    }

    changed = {"goals": "Open a repair shop", "review_date": None}
    assert (
        await intake.client.put(path, json=changed, headers=intake.caseworker)
    ).status_code == 428
    stale = {**intake.caseworker, "If-Match": f'"{case["id"]}.1"'}
    assert (await intake.client.put(path, json=changed, headers=stale)).status_code == 412
    fresh = {**intake.caseworker, "If-Match": f'"{case["id"]}.2"'}
    r = await intake.client.put(path, json=changed, headers=fresh)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 3
    assert r.json()["goals"] == "Open a repair shop"
    assert r.json()["review_date"] is None
    assert (await intake.client.put(path, json=changed, headers=fresh)).status_code == 412

    events = await recorder.wait_for(3)
    assert [e.data["version"] for e in events] == [1, 2, 3]
    assert events[2].data["items"] == [
        {
            "item_id": item["need_id"],
            "category": "health",
            "status": "open",
            "referral_id": None,
        }
    ]
    for event in events:
        assert "mechanic" not in event.model_dump_json()
        assert "repair" not in event.model_dump_json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"goals": "line\u0000break"}, "goals"),
        ({"goals": "x" * 4001}, "goals"),
        ({"goals": 12}, "goals"),
        ({"review_date": "next week"}, "review_date"),
        ({"review_date": "1850-01-01"}, "review_date"),
        ({"items": []}, "items"),
    ],
)
async def test_bad_plans_name_the_field(intake: Intake, body: dict[str, Any], field: str) -> None:
    case = await intake.register()
    r = await intake.client.put(
        f"/v1/cases/{case['id']}/plan", json=body, headers=intake.caseworker
    )
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_plan_of_a_closed_case_cannot_change(intake: Intake) -> None:
    case = await intake.register()
    await intake.client.post(f"/v1/cases/{case['id']}/close", headers=intake.caseworker)
    r = await intake.client.put(
        f"/v1/cases/{case['id']}/plan", json={"goals": "Anything"}, headers=intake.caseworker
    )
    assert r.status_code == 409
    other = intake.headers("cases:read", organization_id=uuid.uuid4())
    assert (
        await intake.client.get(f"/v1/cases/{case['id']}/plan", headers=other)
    ).status_code == 404


async def test_the_plan_follows_its_referrals(intake: Intake) -> None:
    recorder = await intake.record("plan.updated")
    case = await intake.register()
    need_id = (await assess(intake, case, HEALTH))["needs"][0]["id"]
    referrals = Referrals(intake, case, need_id)
    referral_id = uuid.uuid4()

    await referrals.publish("created", "requested", referral_id=referral_id, minute=0)
    await eventually(lambda: _status_is(intake, case, "requested"))
    accepted = await referrals.publish("accepted", "accepted", referral_id=referral_id, minute=2)
    await eventually(lambda: _status_is(intake, case, "accepted"))

    # An older event arriving late changes nothing.
    late = await referrals.publish("received", "received", referral_id=referral_id, minute=1)
    await handled(intake, late)
    assert (await plan_of(intake, case))["items"][0]["status"] == "accepted"

    # A duplicate delivery, and the same event sent again under a new id: harmless.
    await intake.bus.publish([accepted])
    replay = await referrals.send(accepted.type, accepted.data, minute=2)
    await handled(intake, replay)

    await referrals.publish(
        "completed", "completed", referral_id=referral_id, minute=5, outcome="service-provided"
    )
    await eventually(lambda: _status_is(intake, case, "completed"))
    plan = await plan_of(intake, case)
    [item] = plan["items"]
    assert item["referral"]["referral_id"] == str(referral_id)
    assert item["referral"]["outcome"] == "service-provided"
    assert item["referral"]["organization_id"] == str(referrals.provider)
    assert item["referral"]["attempt"] == 1
    assert plan["version"] == 4  # the assessment, then requested, accepted, completed

    events = await recorder.wait_for(4)
    await _settled(intake)
    assert len(recorder.events) == 4
    assert [e.data["version"] for e in events] == [1, 2, 3, 4]
    assert [e.data["items"][0]["status"] for e in events] == [
        "open",
        "requested",
        "accepted",
        "completed",
    ]
    assert events[3].data["items"][0]["referral_id"] == str(referral_id)
    r = await intake.client.get(f"/v1/cases/{case['id']}/assessments", headers=intake.caseworker)
    assert r.json()["items"][0]["needs"][0]["status"] == "completed"


async def test_a_burst_in_any_order_ends_at_the_newest_event(intake: Intake) -> None:
    case = await intake.register()
    need_id = (await assess(intake, case, HEALTH))["needs"][0]["id"]
    referrals = Referrals(intake, case, need_id)
    referral_id = uuid.uuid4()
    lifecycle = [
        ("created", "requested"),
        ("received", "received"),
        ("accepted", "accepted"),
        ("started", "in-progress"),
        ("held", "on-hold"),
        ("resumed", "in-progress"),
        ("completed", "completed"),
    ]
    envelopes = [
        referrals.event(verb, status, referral_id=referral_id, minute=minute)
        for minute, (verb, status) in enumerate(lifecycle)
    ]
    random.Random(7).shuffle(envelopes)
    await intake.bus.publish(envelopes + envelopes[:3])  # and some delivered twice
    for envelope in envelopes:
        await handled(intake, envelope)
    [item] = (await plan_of(intake, case))["items"]
    assert item["status"] == "completed"
    newest = max(e.time for e in envelopes)
    assert datetime.fromisoformat(item["referral"]["updated_at"]) == newest
    assert await intake.bus.parked("intake") == []


async def test_a_rerouted_need_shows_its_latest_referral(intake: Intake) -> None:
    case = await intake.register()
    need_id = (await assess(intake, case, HEALTH))["needs"][0]["id"]
    referrals = Referrals(intake, case, need_id)
    first, second = uuid.uuid4(), uuid.uuid4()
    # The second attempt's event arrives before the first's rejection.
    await referrals.publish("created", "requested", referral_id=second, minute=3, attempt=2)
    await eventually(lambda: _status_is(intake, case, "requested"))
    rejected = await referrals.publish(
        "rejected", "rejected", referral_id=first, minute=2, reason="at-capacity"
    )
    await handled(intake, rejected)
    [item] = (await plan_of(intake, case))["items"]
    assert item["status"] == "requested"
    assert item["referral"]["referral_id"] == str(second)
    assert item["referral"]["attempt"] == 2


async def test_an_unmatched_need(intake: Intake) -> None:
    case = await intake.register()
    need_id = (await assess(intake, case, HOUSING))["needs"][0]["id"]
    referrals = Referrals(intake, case, need_id)
    await referrals.unmatched(["no-service-in-area", "Not A Code!"], minute=5)
    await eventually(lambda: _status_is(intake, case, "unmatched"))
    [item] = (await plan_of(intake, case))["items"]
    assert item["unmatched_reasons"] == ["no-service-in-area"]
    assert item["referral"] is None

    # What happened before the need went unmatched does not undo it.
    old = await referrals.publish(
        "expired", "expired", referral_id=uuid.uuid4(), minute=4, need_category="housing"
    )
    await handled(intake, old)
    [item] = (await plan_of(intake, case))["items"]
    assert item["status"] == "unmatched"
    assert item["referral"]["status"] == "expired"

    # Routed again later (consent given, a service published): it follows the new referral.
    await referrals.publish(
        "created", "requested", referral_id=uuid.uuid4(), minute=9, need_category="housing"
    )
    await eventually(lambda: _status_is(intake, case, "requested"))
    [item] = (await plan_of(intake, case))["items"]
    assert item["unmatched_reasons"] == []


async def test_events_about_unknown_cases_or_types_are_ignored(intake: Intake) -> None:
    case = {"id": str(uuid.uuid4())}
    referrals = Referrals(intake, case, str(uuid.uuid4()))
    stray = await referrals.publish("accepted", "accepted", referral_id=uuid.uuid4(), minute=0)
    await handled(intake, stray)
    odd = await referrals.publish("accepted", "pondering", referral_id=uuid.uuid4(), minute=0)
    await handled(intake, odd)
    assert await intake.bus.parked("intake") == []


async def _status_is(intake: Intake, case: dict[str, Any], status: str) -> bool:
    items = (await plan_of(intake, case))["items"]
    return bool(items) and items[0]["status"] == status


async def _settled(intake: Intake) -> None:
    """Wait until the outbox has published everything."""
    outbox = intake.app.state.runtime.messaging.relay

    async def empty() -> bool:
        return await outbox.pending() == 0

    await eventually(empty)
