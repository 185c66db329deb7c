"""Creating and changing services: validation, who may, ETags, and the events routing gets."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlmodel import col

from icrs_partners.models import Organization, Service, ServiceArea, ServiceLanguage, outbox_table
from icrs_shared.events import Envelope
from icrs_shared.testing.waiting import eventually

SPEC: dict[str, Any] = {
    "name": "Primary care",
    "category": "health",
    "description": "General consultations.",
    "languages": ["so", "ar"],
    "service_areas": ["SO11"],
    "eligibility": {
        "min_age": 0,
        "max_age": None,
        "sexes": ["female", "male"],
        "beneficiary_categories": [],
        "programme_tracks": [],
        "accepts_minors": True,
    },
    "capacity": {"maximum": 50, "accepting": True},
    "accept_within": "PT72H",
}


async def add_org(partners: Any, *, status: str = "active", name: str = "Hope Clinic") -> uuid.UUID:
    async with partners.app.state.runtime.db.transaction() as s:
        org = Organization(name=name, kind="service_provider", country="SO", status=status)
        s.add(org)
    return org.id


class Recorder:
    """Events as they arrive on the broker."""

    def __init__(self) -> None:
        self.events: list[Envelope] = []

    async def __call__(self, env: Envelope) -> None:
        self.events.append(env)

    def of(self, event_type: str) -> list[Envelope]:
        return [e for e in self.events if e.type == event_type]


@pytest.fixture
async def recorder(partners: Any) -> Recorder:
    rec = Recorder()
    await partners.bus.subscribe("test", "recorder", ["service.*"], rec)
    return rec


def manager(partners: Any, org_id: uuid.UUID) -> dict[str, str]:
    return partners.issuer.headers("services:manage", organization_id=org_id, client_id="mgr")


def admin(partners: Any) -> dict[str, str]:
    return partners.issuer.headers("partners:admin", client_id="admin")


async def create(partners: Any, org_id: uuid.UUID, **changes: Any) -> dict[str, Any]:
    response = await partners.client.post(
        f"/v1/organizations/{org_id}/services", json={**SPEC, **changes}, headers=admin(partners)
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_create_answers_the_service_and_publishes_it(
    partners: Any, recorder: Recorder
) -> None:
    org_id = await add_org(partners)
    response = await partners.client.post(
        f"/v1/organizations/{org_id}/services", json=SPEC, headers=manager(partners, org_id)
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["organization_id"] == str(org_id)
    assert body["organization_name"] == "Hope Clinic"
    assert (body["name"], body["category"], body["status"]) == ("Primary care", "health", "active")
    assert body["accept_within"] == "PT72H"
    assert body["accept_within_seconds"] == 72 * 3600
    assert body["eligibility"] == SPEC["eligibility"]
    assert body["capacity"] == {"maximum": 50, "accepting": True}
    assert body["version"] == 1
    assert response.headers["ETag"] == f'"{body["id"]}.1"'
    assert response.headers["Location"] == f"/v1/services/{body['id']}"

    got = await partners.client.get(response.headers["Location"], headers=manager(partners, org_id))
    assert got.status_code == 200
    assert got.json() == body
    assert got.headers["ETag"] == response.headers["ETag"]

    async with partners.app.state.runtime.db.sessions() as s:
        areas = (await s.execute(select(ServiceArea.area_code))).scalars().all()
        languages = (await s.execute(select(ServiceLanguage.language))).scalars().all()
    assert areas == ["SO11"]
    assert sorted(languages) == ["ar", "so"]

    await eventually(lambda: len(recorder.events) >= 1)
    [event] = recorder.events
    assert event.type == "icrs.service.published"
    assert event.subject == body["id"]
    assert event.actor == "mgr"
    assert event.data["capacity"] == {"maximum": 50, "accepting": True}
    assert event.data["service_areas"] == ["SO11"]
    assert event.data["accept_within_seconds"] == 72 * 3600
    assert event.data["eligibility"]["accepts_minors"] is True
    assert "description" not in event.data
    assert "name" not in event.data


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"category": "cooking"}, "category"),
        ({"service_areas": ["Somalia"]}, "service_areas.0"),
        ({"service_areas": []}, "service_areas"),
        ({"eligibility": {"min_age": 30, "max_age": 18}}, "eligibility.max_age"),
        ({"eligibility": {"min_age": 121}}, "eligibility.min_age"),
        ({"eligibility": {"sexes": ["unknown"]}}, "eligibility.sexes.0"),
        (
            {"eligibility": {"beneficiary_categories": ["tourist"]}},
            "eligibility.beneficiary_categories.0",
        ),
        ({"eligibility": {"programme_tracks": ["XYZ"]}}, "eligibility.programme_tracks.0"),
        ({"accept_within": "72 hours"}, "accept_within"),
        ({"accept_within": "PT30M"}, "accept_within"),
        ({"accept_within": "P31D"}, "accept_within"),
        ({"accept_within": "P1M"}, "accept_within"),
        ({"languages": ["Somali"]}, "languages.0"),
        ({"capacity": {"maximum": -1}}, "capacity.maximum"),
        ({"status": "closed"}, "status"),
        ({"email": "not-an-address"}, "email"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"name": "   "}, "name"),
        ({"owner": "me"}, "owner"),
    ],
)
async def test_create_names_each_invalid_field(
    partners: Any, changes: dict[str, Any], field: str
) -> None:
    org_id = await add_org(partners)
    response = await partners.client.post(
        f"/v1/organizations/{org_id}/services", json={**SPEC, **changes}, headers=admin(partners)
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_create_normalizes_codes_and_durations(partners: Any) -> None:
    org_id = await add_org(partners)
    body = await create(
        partners,
        org_id,
        languages=["SO", "so", "som"],
        service_areas=["so11", "SO11", "SO1101"],
        accept_within="P3D",
        eligibility={},
        capacity={"maximum": None},
    )
    assert body["languages"] == ["so", "som"]
    assert body["service_areas"] == ["SO11", "SO1101"]
    assert body["accept_within"] == "PT72H"
    assert body["eligibility"]["accepts_minors"] is False
    assert body["capacity"] == {"maximum": None, "accepting": True}


async def test_only_the_own_organization_or_the_admin_manages_services(partners: Any) -> None:
    org_a, org_b = await add_org(partners, name="A"), await add_org(partners, name="B")
    b_service = await create(partners, org_b)

    foreign = await partners.client.post(
        f"/v1/organizations/{org_b}/services", json=SPEC, headers=manager(partners, org_a)
    )
    assert foreign.status_code == 404
    missing = await partners.client.post(
        f"/v1/organizations/{uuid.uuid4()}/services", json=SPEC, headers=manager(partners, org_a)
    )
    assert missing.status_code == 404
    assert missing.json()["detail"] == foreign.json()["detail"]

    patch = await partners.client.patch(
        f"/v1/services/{b_service['id']}",
        json={"capacity": {"accepting": False}},
        headers={**manager(partners, org_a), "If-Match": f'"{b_service["id"]}.1"'},
    )
    assert patch.status_code == 404

    reader = partners.issuer.headers("partners:read", organization_id=org_a)
    refused = await partners.client.post(
        f"/v1/organizations/{org_a}/services", json=SPEC, headers=reader
    )
    assert refused.status_code == 403
    assert (
        await partners.client.post(f"/v1/organizations/{org_a}/services", json=SPEC)
    ).status_code == 401

    async with partners.app.state.runtime.db.sessions() as s:
        row = await s.get(Service, uuid.UUID(b_service["id"]))
    assert row is not None
    assert row.accepting is True


async def test_a_suspended_organization_adds_no_services_and_a_pending_one_is_not_routed(
    partners: Any,
) -> None:
    suspended = await add_org(partners, status="suspended")
    refused = await partners.client.post(
        f"/v1/organizations/{suspended}/services", json=SPEC, headers=admin(partners)
    )
    assert refused.status_code == 409

    pending = await add_org(partners, status="pending")
    body = await create(partners, pending)
    assert body["status"] == "active"
    async with partners.app.state.runtime.db.sessions() as s:
        types = (await s.execute(select(outbox_table.c.event_type))).scalars().all()
    assert not [t for t in types if t.startswith("icrs.service.")]


async def test_idempotency_key_answers_a_retry_with_the_first_answer(partners: Any) -> None:
    org_id = await add_org(partners)
    headers = {**admin(partners), "Idempotency-Key": "create-primary-care"}
    url = f"/v1/organizations/{org_id}/services"
    first = await partners.client.post(url, json=SPEC, headers=headers)
    again = await partners.client.post(url, json=SPEC, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["ETag"] == first.headers["ETag"]
    other = await partners.client.post(url, json={**SPEC, "name": "Other"}, headers=headers)
    assert other.status_code == 409
    async with partners.app.state.runtime.db.sessions() as s:
        assert len((await s.execute(select(Service.id))).all()) == 1


async def test_patch_needs_the_current_etag_and_tells_routing(
    partners: Any, recorder: Recorder
) -> None:
    org_id = await add_org(partners)
    body = await create(partners, org_id)
    url = f"/v1/services/{body['id']}"
    headers = manager(partners, org_id)
    change = {"capacity": {"accepting": False}}

    assert (await partners.client.patch(url, json=change, headers=headers)).status_code == 428
    stale = {**headers, "If-Match": f'"{body["id"]}.7"'}
    assert (await partners.client.patch(url, json=change, headers=stale)).status_code == 412

    current = {**headers, "If-Match": f'"{body["id"]}.1"'}
    response = await partners.client.patch(url, json=change, headers=current)
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["version"] == 2
    assert changed["capacity"] == {"maximum": 50, "accepting": False}
    assert changed["eligibility"] == body["eligibility"]
    assert response.headers["ETag"] == f'"{body["id"]}.2"'
    # the old ETag no longer fits
    assert (await partners.client.patch(url, json=change, headers=current)).status_code == 412

    merge = {"If-Match": response.headers["ETag"], "Content-Type": "application/merge-patch+json"}
    response = await partners.client.patch(
        url,
        content=b'{"capacity": {"accepting": true, "maximum": 60}}',
        headers={**headers, **merge},
    )
    assert response.status_code == 200, response.text
    assert response.json()["capacity"] == {"maximum": 60, "accepting": True}

    response = await partners.client.patch(
        url, json={"status": "inactive"}, headers={**headers, "If-Match": response.headers["ETag"]}
    )
    assert response.json()["status"] == "inactive"
    response = await partners.client.patch(
        url, json={"status": "active"}, headers={**headers, "If-Match": response.headers["ETag"]}
    )
    assert response.json()["version"] == 5

    await eventually(lambda: len(recorder.events) >= 5)
    assert [e.type.removeprefix("icrs.service.") for e in recorder.events] == [
        "published",
        "updated",
        "updated",
        "withdrawn",
        "published",
    ]
    assert recorder.events[1].data["capacity"] == {"maximum": 50, "accepting": False}
    assert recorder.events[2].data["capacity"] == {"maximum": 60, "accepting": True}
    assert recorder.events[3].data["status"] == "inactive"
    assert [e.data["version"] for e in recorder.events] == [1, 2, 3, 4, 5]


async def test_patch_merges_and_validates_the_result_as_a_whole(partners: Any) -> None:
    org_id = await add_org(partners)
    body = await create(partners, org_id, eligibility={**SPEC["eligibility"], "max_age": 40})
    url = f"/v1/services/{body['id']}"
    headers = {**admin(partners), "If-Match": f'"{body["id"]}.1"'}

    too_old = await partners.client.patch(
        url, json={"eligibility": {"min_age": 50}}, headers=headers
    )
    assert too_old.status_code == 422
    assert [e["field"] for e in too_old.json()["errors"]] == ["eligibility.max_age"]
    moved = await partners.client.patch(
        url, json={"organization_id": str(uuid.uuid4())}, headers=headers
    )
    assert moved.status_code == 422

    response = await partners.client.patch(
        url,
        json={"eligibility": {"min_age": 18, "max_age": None}, "description": None},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["eligibility"] == {**SPEC["eligibility"], "min_age": 18, "max_age": None}
    assert got["description"] is None
    assert got["name"] == SPEC["name"]

    # A patch that changes nothing keeps the version and emits nothing.
    same = await partners.client.patch(
        url,
        json={"name": SPEC["name"]},
        headers={**admin(partners), "If-Match": response.headers["ETag"]},
    )
    assert same.status_code == 200
    assert same.json()["version"] == 2
    async with partners.app.state.runtime.db.sessions() as s:
        types = (await s.execute(select(outbox_table.c.event_type))).scalars().all()
    assert types == ["icrs.service.published", "icrs.service.updated"]


async def test_capacity_changes_of_a_suspended_organization_are_not_routed(partners: Any) -> None:
    org_id = await add_org(partners)
    body = await create(partners, org_id)
    async with partners.app.state.runtime.db.transaction() as s:
        await s.execute(
            update(Organization).where(col(Organization.id) == org_id).values(status="suspended")
        )
    response = await partners.client.patch(
        f"/v1/services/{body['id']}",
        json={"capacity": {"maximum": 10}},
        headers={**admin(partners), "If-Match": f'"{body["id"]}.1"'},
    )
    assert response.status_code == 200
    reader = partners.issuer.headers("partners:read")
    assert (
        await partners.client.get(f"/v1/services/{body['id']}", headers=reader)
    ).status_code == 404
    async with partners.app.state.runtime.db.sessions() as s:
        types = (await s.execute(select(outbox_table.c.event_type))).scalars().all()
    assert types == ["icrs.service.published"]
