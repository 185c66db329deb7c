"""The referral view: only a live referral's provider, only under consent, only the fields
its category of service needs, and every read recorded."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlmodel import col

from icrs_intake.models import Consent
from icrs_shared.events import Envelope
from icrs_shared.events.catalog import ReferralEvent
from icrs_shared.testing import eventually

if TYPE_CHECKING:
    from conftest import Intake

NOTE = "Knee injury, walks with a cane"
PERSON = {
    "contact": {"phone": "+252 61 1111111", "address": "Hodan district, near the market"},
    "aliases": ["Ami"],
}


@dataclass
class Setup:
    case: dict[str, Any]
    needs: dict[str, str]  # category -> need id
    provider: uuid.UUID
    clock: datetime

    @property
    def path(self) -> str:
        return f"/v1/cases/{self.case['id']}/referral-view"


async def setup(intake: Intake, **consent: Any) -> Setup:
    """A case with health and housing needs, and a consent to referral (health by default)."""
    case = await intake.register(person=PERSON)
    body = {
        "purposes": consent.pop("purposes", ["referral"]),
        "recipients": consent.pop("recipients", {"categories": ["health"]}),
        "given_by": "self",
    }
    r = await intake.client.post(
        f"/v1/cases/{case['id']}/consents", json=body, headers=intake.caseworker
    )
    assert r.status_code == 201, r.text
    needs = [
        {"category": "health", "priority": "urgent", "note": NOTE, "share_note": True},
        {
            "category": "housing",
            "priority": "normal",
            "note": "Sleeps at a cousin's",
            "share_note": False,
        },
    ]
    r = await intake.client.post(
        f"/v1/cases/{case['id']}/assessments", json={"needs": needs}, headers=intake.caseworker
    )
    assert r.status_code == 201, r.text
    ids = {n["category"]: n["id"] for n in r.json()["needs"]}
    return Setup(case, ids, uuid.uuid4(), datetime.now(UTC))


async def refer(
    intake: Intake,
    s: Setup,
    status: str,
    *,
    category: str = "health",
    referral_id: uuid.UUID | None = None,
    provider: uuid.UUID | None = None,
) -> uuid.UUID:
    """Publish a referral event, and wait until the plan shows it."""
    s.clock += timedelta(seconds=1)
    referral_id = referral_id or uuid.uuid4()
    event = ReferralEvent(
        referral_id=referral_id,
        case_id=uuid.UUID(s.case["id"]),
        need_id=uuid.UUID(s.needs[category]),
        need_category=category,
        requester_organization_id=intake.organization_id,
        organization_id=provider or s.provider,
        service_id=uuid.uuid4(),
        status=status,
    )
    envelope = Envelope(
        source="/icrs/referral",
        type="icrs.referral.accepted",
        subject=str(referral_id),
        time=s.clock,
        data=event.model_dump(mode="json"),
    )
    await intake.bus.publish([envelope])

    async def shown() -> bool:
        r = await intake.client.get(f"/v1/cases/{s.case['id']}/plan", headers=intake.caseworker)
        item = next(i for i in r.json()["items"] if i["category"] == category)
        referral = item["referral"] or {}
        return referral.get("referral_id") == str(referral_id) and referral["status"] == status

    await eventually(shown)
    return referral_id


def provider_headers(intake: Intake, organization_id: uuid.UUID) -> dict[str, str]:
    return intake.headers("referrals:respond", organization_id=organization_id)


async def test_the_provider_sees_only_what_its_category_needs(intake: Intake) -> None:
    recorder = await intake.record("case.accessed")
    s = await setup(intake)
    referral_id = await refer(intake, s, "accepted")
    r = await intake.client.get(s.path, headers=provider_headers(intake, s.provider))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    view = r.json()
    assert view["referral_id"] == str(referral_id)
    assert view["referral_status"] == "accepted"
    assert view["person"] == {
        "given_name": "Amina",
        "family_name": "Warsame",
        "sex": "female",
        "age_band": view["person"]["age_band"],
        "languages": ["so"],
        "area": "SO1101",
        "contact": {"phone": "+252 61 1111111"},
        "date_of_birth": "1998-03-14",
    }
    assert view["need"] == {
        "need_id": s.needs["health"],
        "category": "health",
        "priority": "urgent",
        "note": NOTE,
    }
    for hidden in ("Hodan", "DDR-0001", '"Ami"', "cousin"):
        assert hidden not in r.text

    [event] = await recorder.wait_for(1)
    assert event.type == "icrs.case.accessed"
    assert event.subject == s.case["id"]
    assert event.data["referral_id"] == str(referral_id)
    assert event.data["organization_id"] == str(s.provider)
    assert event.data["fields"] == view["fields"]
    assert view["fields"] == [
        "given_name",
        "family_name",
        "sex",
        "age_band",
        "languages",
        "area",
        "contact.phone",
        "date_of_birth",
        "need.category",
        "need.priority",
        "need.note",
    ]
    for value in ("Amina", "Warsame", "1998-03-14", "1111111", "Knee"):
        assert value not in event.model_dump_json()

    # Every read is recorded.
    await intake.client.get(s.path, headers=provider_headers(intake, s.provider))
    await recorder.wait_for(2)


async def test_a_named_organization_gets_the_housing_fields_and_no_unshared_note(
    intake: Intake,
) -> None:
    housing_provider = uuid.uuid4()
    s = await setup(intake, recipients={"organizations": [str(housing_provider)]})
    await refer(intake, s, "requested", category="housing", provider=housing_provider)
    r = await intake.client.get(s.path, headers=provider_headers(intake, housing_provider))
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["person"]["contact"] == {
        "phone": "+252 61 1111111",
        "address": "Hodan district, near the market",
    }
    assert "date_of_birth" not in view["person"]
    assert "note" not in view["need"]
    assert "need.note" not in view["fields"]
    assert "contact.address" in view["fields"]
    assert "cousin" not in r.text


async def test_who_may_not_see_it(intake: Intake) -> None:
    s = await setup(intake)
    referral_id = await refer(intake, s, "received")
    # Another organization, and a referral id that is not the provider's: not found.
    stranger = provider_headers(intake, uuid.uuid4())
    r = await intake.client.get(s.path, headers=stranger)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    r = await intake.client.get(
        s.path,
        params={"referral_id": str(uuid.uuid4())},
        headers=provider_headers(intake, s.provider),
    )
    assert r.status_code == 404
    # The case's own organization reads the case, not the view; without the scope: 403.
    r = await intake.client.get(s.path, headers=intake.caseworker)
    assert r.status_code == 403
    # An unknown case looks like any other.
    r = await intake.client.get(
        f"/v1/cases/{uuid.uuid4()}/referral-view", headers=provider_headers(intake, s.provider)
    )
    assert r.status_code == 404
    # Once the referral is no longer live: not found.
    await refer(intake, s, "completed", referral_id=referral_id)
    r = await intake.client.get(s.path, headers=provider_headers(intake, s.provider))
    assert r.status_code == 404


async def test_consent_must_cover_the_provider(intake: Intake) -> None:
    s = await setup(intake)
    headers = provider_headers(intake, s.provider)
    # Housing is not among the consent's categories.
    await refer(intake, s, "accepted", category="housing")
    r = await intake.client.get(s.path, headers=headers)
    assert r.status_code == 403
    assert r.json()["type"] == "urn:icrs:problem:consent-required"
    assert "consent" in r.json()["detail"]
    assert "Amina" not in r.text


async def test_a_withdrawn_or_expired_consent_closes_the_view(intake: Intake) -> None:
    s = await setup(intake)
    await refer(intake, s, "in-progress")
    headers = provider_headers(intake, s.provider)
    assert (await intake.client.get(s.path, headers=headers)).status_code == 200
    consents = await intake.client.get(
        f"/v1/cases/{s.case['id']}/consents", headers=intake.caseworker
    )
    consent_id = consents.json()["items"][0]["id"]
    r = await intake.client.post(
        f"/v1/cases/{s.case['id']}/consents/{consent_id}/withdraw", headers=intake.caseworker
    )
    assert r.status_code == 200
    r = await intake.client.get(s.path, headers=headers)
    assert r.status_code == 403
    assert r.json()["type"] == "urn:icrs:problem:consent-required"

    # A new consent that expired.
    body = {
        "purposes": ["referral"],
        "recipients": {"categories": ["health"]},
        "given_by": "self",
        "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    }
    r = await intake.client.post(
        f"/v1/cases/{s.case['id']}/consents", json=body, headers=intake.caseworker
    )
    assert (await intake.client.get(s.path, headers=headers)).status_code == 200
    async with intake.app.state.runtime.db.transaction() as session:
        await session.execute(
            update(Consent)
            .where(col(Consent.id) == uuid.UUID(r.json()["id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert (await intake.client.get(s.path, headers=headers)).status_code == 403


async def test_consent_for_follow_up_only_does_not_cover_referral(intake: Intake) -> None:
    s = await setup(intake, purposes=["follow_up"])
    await refer(intake, s, "accepted")
    r = await intake.client.get(s.path, headers=provider_headers(intake, s.provider))
    assert r.status_code == 403


async def test_several_live_referrals_need_a_referral_id(intake: Intake) -> None:
    s = await setup(intake, recipients={"categories": ["health", "housing"]})
    health = await refer(intake, s, "accepted")
    await refer(intake, s, "accepted", category="housing")
    headers = provider_headers(intake, s.provider)
    r = await intake.client.get(s.path, headers=headers)
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["query.referral_id"]
    r = await intake.client.get(s.path, params={"referral_id": str(health)}, headers=headers)
    assert r.status_code == 200
    assert r.json()["need"]["category"] == "health"
    r = await intake.client.get(s.path, params={"referral_id": "nope"}, headers=headers)
    assert r.status_code == 422


async def test_an_erased_case_is_not_found(intake: Intake) -> None:
    s = await setup(intake)
    await refer(intake, s, "accepted")
    r = await intake.client.delete(f"/v1/cases/{s.case['id']}", headers=intake.caseworker)
    assert r.status_code == 204
    r = await intake.client.get(s.path, headers=provider_headers(intake, s.provider))
    assert r.status_code == 404
