"""Consents: granting per purpose and recipient, listing with status, withdrawing, events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import update
from sqlmodel import col

from icrs_intake.models import Consent

if TYPE_CHECKING:
    from conftest import Intake

CONSENT: dict[str, Any] = {
    "purposes": ["referral"],
    "recipients": {"categories": ["health", "housing"], "organizations": []},
    "given_by": "self",
    "expires_at": None,
}
PERSONAL = ("Amina", "Warsame", "1998-03-14", "1111111", "DDR-0001")


def consents_path(case: dict[str, Any]) -> str:
    return f"/v1/cases/{case['id']}/consents"


async def test_grant_list_withdraw_and_the_events(intake: Intake) -> None:
    recorder = await intake.record("consent.*")
    case = await intake.register()
    provider = uuid.uuid4()
    expires = (datetime.now(UTC) + timedelta(days=90)).isoformat()
    body = {
        **CONSENT,
        "purposes": ["referral", "follow_up", "referral"],
        "recipients": {"categories": ["health"], "organizations": [str(provider)]},
        "expires_at": expires,
    }
    r = await intake.client.post(consents_path(case), json=body, headers=intake.caseworker)
    assert r.status_code == 201, r.text
    consent = r.json()
    assert consent["status"] == "active"
    assert consent["purposes"] == ["referral", "follow_up"]
    assert consent["recipients"] == {"categories": ["health"], "organizations": [str(provider)]}
    assert consent["given_by"] == "self"
    assert r.headers["location"] == f"{consents_path(case)}/{consent['id']}"

    listed = await intake.client.get(consents_path(case), headers=intake.caseworker)
    assert listed.status_code == 200
    assert listed.json()["items"] == [consent]

    withdraw = f"{consents_path(case)}/{consent['id']}/withdraw"
    r = await intake.client.post(withdraw, headers=intake.caseworker)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "withdrawn"
    assert r.json()["withdrawn_at"] is not None
    # Withdrawing again answers the same and emits nothing more.
    again = await intake.client.post(withdraw, headers=intake.caseworker)
    assert again.status_code == 200
    assert again.json() == r.json()

    granted, withdrawn = await recorder.wait_for(2)
    assert granted.type == "icrs.consent.granted"
    assert granted.subject == consent["id"]
    assert granted.data["case_id"] == case["id"]
    assert granted.data["status"] == "active"
    assert granted.data["recipient_organizations"] == [str(provider)]
    assert granted.data["recipient_categories"] == ["health"]
    assert withdrawn.type == "icrs.consent.withdrawn"
    assert withdrawn.data["status"] == "withdrawn"
    for event in (granted, withdrawn):
        text = event.model_dump_json()
        assert not [p for p in PERSONAL if p in text]
    assert len(recorder.of_type("icrs.consent.withdrawn")) == 1


async def test_a_minors_consent_is_given_by_a_guardian(intake: Intake) -> None:
    case = await intake.register(
        person={"date_of_birth": None, "estimated_age": 16, "documents": []}
    )
    r = await intake.client.post(consents_path(case), json=CONSENT, headers=intake.caseworker)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in r.json()["errors"]] == ["given_by"]
    guardian = {**CONSENT, "given_by": "guardian"}
    r = await intake.client.post(consents_path(case), json=guardian, headers=intake.caseworker)
    assert r.status_code == 201, r.text
    assert r.json()["given_by"] == "guardian"


async def test_an_expired_consent_reads_expired(intake: Intake) -> None:
    case = await intake.register()
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    body = {**CONSENT, "expires_at": soon}
    r = await intake.client.post(consents_path(case), json=body, headers=intake.caseworker)
    assert r.status_code == 201
    consent_id = uuid.UUID(r.json()["id"])
    # Time passes: the expiry is now behind us.
    async with intake.app.state.runtime.db.transaction() as session:
        past = datetime.now(UTC) - timedelta(minutes=1)
        await session.execute(
            update(Consent).where(col(Consent.id) == consent_id).values(expires_at=past)
        )
    r = await intake.client.get(f"{consents_path(case)}/{consent_id}", headers=intake.caseworker)
    assert r.json()["status"] == "expired"
    listed = await intake.client.get(consents_path(case), headers=intake.caseworker)
    assert [c["status"] for c in listed.json()["items"]] == ["expired"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"surprise": True}, "surprise"),
        ({"purposes": []}, "purposes"),
        ({"purposes": ["marketing"]}, "purposes.0"),
        ({"purposes": "referral"}, "purposes"),
        ({"recipients": {"categories": [], "organizations": []}}, "recipients"),
        ({"recipients": {"categories": ["hairdressing"]}}, "recipients.categories.0"),
        ({"recipients": {"organizations": ["not-a-uuid"]}}, "recipients.organizations.0"),
        ({"recipients": {"categories": ["health"], "people": []}}, "recipients.people"),
        ({"recipients": {"organizations": [str(uuid.uuid4()) for _ in range(51)]}}, None),
        ({"given_by": "neighbour"}, "given_by"),
        ({"given_by": None}, "given_by"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "2999-01-01T00:00:00"}, "expires_at"),
        ({"expires_at": "soon"}, "expires_at"),
        # Found by schemathesis: a time with no UTC equivalent answered 500.
        ({"expires_at": "0001-01-01T00:01:00.0+01:00"}, "expires_at"),
        ({"expires_at": 4102444800}, "expires_at"),  # seconds since 1970: not a time
    ],
)
async def test_bad_input_names_the_field(
    intake: Intake, change: dict[str, Any], field: str | None
) -> None:
    case = await intake.register()
    body = {**CONSENT, **change}
    r = await intake.client.post(consents_path(case), json=body, headers=intake.caseworker)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    fields = [e["field"] for e in r.json()["errors"]]
    if field is not None:
        assert field in fields
    else:
        assert fields == ["recipients.organizations"]


async def test_missing_fields_and_a_body_that_is_not_json(intake: Intake) -> None:
    case = await intake.register()
    r = await intake.client.post(consents_path(case), json={}, headers=intake.caseworker)
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"purposes", "recipients", "given_by"}
    r = await intake.client.post(
        consents_path(case),
        content=b"\xff\xfe",
        headers={**intake.caseworker, "Content-Type": "application/json"},
    )
    assert r.status_code == 422


async def test_a_closed_or_erased_case_takes_no_new_consent(intake: Intake) -> None:
    closed = await intake.register()
    r = await intake.client.post(consents_path(closed), json=CONSENT, headers=intake.caseworker)
    consent_id = r.json()["id"]
    await intake.client.post(f"/v1/cases/{closed['id']}/close", headers=intake.caseworker)
    r = await intake.client.post(consents_path(closed), json=CONSENT, headers=intake.caseworker)
    assert r.status_code == 409
    # Taking consent back is always possible.
    r = await intake.client.post(
        f"{consents_path(closed)}/{consent_id}/withdraw", headers=intake.caseworker
    )
    assert r.status_code == 200
    assert r.json()["status"] == "withdrawn"

    erased = await intake.register(person={"documents": []}, area="SO2201")
    await intake.client.delete(f"/v1/cases/{erased['id']}", headers=intake.caseworker)
    r = await intake.client.post(consents_path(erased), json=CONSENT, headers=intake.caseworker)
    assert r.status_code == 409


async def test_idempotency_key_records_once(intake: Intake) -> None:
    recorder = await intake.record("consent.granted")
    case = await intake.register()
    headers = {**intake.caseworker, "Idempotency-Key": "consent-1"}
    first = await intake.client.post(consents_path(case), json=CONSENT, headers=headers)
    again = await intake.client.post(consents_path(case), json=CONSENT, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = {**CONSENT, "purposes": ["follow_up"]}
    r = await intake.client.post(consents_path(case), json=other, headers=headers)
    assert r.status_code == 409
    listed = await intake.client.get(consents_path(case), headers=intake.caseworker)
    assert len(listed.json()["items"]) == 1
    await recorder.wait_for(1)
    assert len(recorder.events) == 1


async def test_another_organization_and_scopes(intake: Intake) -> None:
    case = await intake.register()
    r = await intake.client.post(consents_path(case), json=CONSENT, headers=intake.caseworker)
    consent_id = r.json()["id"]
    other = intake.headers("cases:read", "cases:write", organization_id=uuid.uuid4())
    assert (await intake.client.get(consents_path(case), headers=other)).status_code == 404
    r = await intake.client.post(consents_path(case), json=CONSENT, headers=other)
    assert r.status_code == 404
    r = await intake.client.post(f"{consents_path(case)}/{consent_id}/withdraw", headers=other)
    assert r.status_code == 404
    reader = intake.headers("cases:read")
    r = await intake.client.post(consents_path(case), json=CONSENT, headers=reader)
    assert r.status_code == 403
    r = await intake.client.post(
        f"{consents_path(case)}/{uuid.uuid4()}/withdraw", headers=intake.caseworker
    )
    assert r.status_code == 404
