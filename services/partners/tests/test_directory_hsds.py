"""The directory as Open Referral HSDS 3.0 JSON: export, import, and the round trip."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlmodel import col

from icrs_partners.models import (
    Organization,
    Service,
    ServiceArea,
    ServiceLanguage,
    outbox_table,
)
from icrs_shared.events import Envelope
from icrs_shared.testing.waiting import eventually


class Recorder:
    def __init__(self) -> None:
        self.events: list[Envelope] = []

    async def __call__(self, env: Envelope) -> None:
        self.events.append(env)


@pytest.fixture
async def recorder(partners: Any) -> Recorder:
    rec = Recorder()
    await partners.bus.subscribe("test", "recorder", ["service.*", "organization.*"], rec)
    return rec


def admin(partners: Any) -> dict[str, str]:
    return partners.issuer.headers("partners:admin", client_id="admin")


async def add_org(partners: Any, name: str, status: str = "active", **fields: Any) -> uuid.UUID:
    async with partners.app.state.runtime.db.transaction() as s:
        org = Organization(name=name, kind="service_provider", status=status, **fields)
        s.add(org)
    return org.id


async def add_service(partners: Any, org_id: uuid.UUID, **body: Any) -> str:
    body = {"category": "health", "service_areas": ["SO"], **body}
    response = await partners.client.post(
        f"/v1/organizations/{org_id}/services", json=body, headers=admin(partners)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def export(partners: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = await partners.client.get("/v1/services/export", params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    document: list[dict[str, Any]] = json.loads(response.content)
    return document


async def import_(partners: Any, document: Any) -> dict[str, Any]:
    response = await partners.client.post(
        "/v1/services/import", json=document, headers=admin(partners)
    )
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


async def outbox_size(partners: Any) -> int:
    async with partners.app.state.runtime.db.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(outbox_table))).scalar_one())


async def build_directory(partners: Any) -> None:
    hope = await add_org(
        partners,
        "Hope Clinic",
        country="SO",
        contact={"email": "referrals@hope.example", "phone": "+252 61 0000000"},
    )
    legal = await add_org(partners, "Dalmar Legal Aid", country="SO")
    pending = await add_org(partners, "New Partner", status="pending", country="KE")
    suspended = await add_org(partners, "Former Partner", country="SO")
    await add_service(
        partners,
        hope,
        name="Primary care",
        description="General consultations,\nevery weekday.",
        url="https://hope.example/care",
        email="care@hope.example",
        languages=["so", "ar"],
        service_areas=["SO11", "SO1201"],
        eligibility={"min_age": 0, "sexes": ["female", "male"], "accepts_minors": True},
        capacity={"maximum": 50, "accepting": True},
        accept_within="P2D",
    )
    await add_service(
        partners,
        hope,
        name="Counselling",
        category="psychosocial",
        eligibility={
            "min_age": 15,
            "max_age": 35,
            "beneficiary_categories": ["ex_combatant", "associate"],
            "programme_tracks": ["DDR"],
            "accepts_minors": True,
        },
        status="temporarily closed",
    )
    await add_service(partners, legal, name="Documentation help", category="documentation")
    await add_service(partners, pending, name="Vocational training", category="vocational_training")
    await add_service(partners, suspended, name="Livelihoods", category="livelihoods")
    async with partners.app.state.runtime.db.transaction() as s:
        await s.execute(
            update(Organization).where(col(Organization.id) == suspended).values(status="suspended")
        )


async def test_export_is_hsds_with_the_icrs_extension(partners: Any) -> None:
    await build_directory(partners)
    document = await export(partners, admin(partners), include_inactive_organizations="true")
    by_name = {o["name"]: o for o in document}
    assert set(by_name) == {"Hope Clinic", "Dalmar Legal Aid", "New Partner", "Former Partner"}
    hope = by_name["Hope Clinic"]
    assert hope["description"] == ""
    assert hope["email"] == "referrals@hope.example"
    assert hope["phones"][0]["number"] == "+252 61 0000000"
    assert hope["x_icrs"] == {"kind": "service_provider", "country": "SO"}
    assert "status" not in hope
    counselling, care = hope["services"]  # by name
    assert care["name"] == "Primary care"
    assert care["organization_id"] == hope["id"]
    assert care["status"] == "active"
    assert care["url"] == "https://hope.example/care"
    assert care["minimum_age"] == 0
    assert "maximum_age" not in care
    assert [lang["code"] for lang in care["languages"]] == ["so", "ar"]
    assert [(a["extent_type"], a["extent"], a["name"]) for a in care["service_areas"]] == [
        ("text", "SO11", "SO11"),
        ("text", "SO1201", "SO1201"),
    ]
    assert all(uuid.UUID(a["id"]) and a["service_id"] == care["id"] for a in care["service_areas"])
    assert care["x_icrs"] == {
        "category": "health",
        "eligibility": {
            "sexes": ["female", "male"],
            "beneficiary_categories": [],
            "programme_tracks": [],
            "accepts_minors": True,
        },
        "capacity": {"maximum": 50, "accepting": True},
        "accept_within": "PT48H",
    }
    assert counselling["status"] == "temporarily closed"
    assert (counselling["minimum_age"], counselling["maximum_age"]) == (15, 35)

    reader = partners.issuer.headers("partners:read")
    public = await export(partners, reader)
    assert sorted(o["name"] for o in public) == ["Dalmar Legal Aid", "Hope Clinic"]
    assert all("email" not in o and "phones" not in o for o in public)
    refused = await partners.client.get(
        "/v1/services/export", params={"include_inactive_organizations": "true"}, headers=reader
    )
    assert refused.status_code == 403
    manage_only = partners.issuer.headers("services:manage")
    assert (
        await partners.client.get("/v1/services/export", headers=manage_only)
    ).status_code == 403


async def test_export_wipe_import_gives_the_same_directory_and_reimport_changes_nothing(
    partners: Any, recorder: Recorder
) -> None:
    await build_directory(partners)
    first = await export(partners, admin(partners), include_inactive_organizations="true")
    # published: the active services of organizations that were active then
    await eventually(lambda: len(recorder.events) >= 3)
    recorder.events.clear()

    # Re-importing what is there changes nothing and tells nobody.
    before = await outbox_size(partners)
    report = await import_(partners, first)
    assert report == {
        "organizations": {"created": 0, "updated": 0, "unchanged": 4, "rejected": []},
        "services": {"created": 0, "updated": 0, "unchanged": 5, "rejected": []},
    }
    assert await outbox_size(partners) == before

    async with partners.app.state.runtime.db.transaction() as s:
        for table in (ServiceArea, ServiceLanguage, Service, Organization):
            await s.execute(delete(table))

    report = await import_(partners, first)
    assert report["organizations"] == {"created": 4, "updated": 0, "unchanged": 0, "rejected": []}
    assert report["services"] == {"created": 5, "updated": 0, "unchanged": 0, "rejected": []}
    again = await export(partners, admin(partners), include_inactive_organizations="true")
    assert again == first
    async with partners.app.state.runtime.db.sessions() as s:
        statuses = (await s.execute(select(Organization.status))).scalars().all()
        areas = (await s.execute(select(func.count()).select_from(ServiceArea))).scalar_one()
    assert set(statuses) == {"pending"}  # an import never verifies an organization
    assert areas == 6  # the search rows follow the imported lists

    again_report = await import_(partners, again)
    assert again_report["organizations"]["unchanged"] == 4
    assert again_report["services"]["unchanged"] == 5

    # Only the new (pending) organizations were announced; their services are not routed
    # before they are verified.
    await asyncio.sleep(1.0)
    assert sorted(e.type for e in recorder.events) == ["icrs.organization.registered"] * 4


async def test_import_rejects_bad_entries_and_imports_the_rest_with_events(
    partners: Any, recorder: Recorder
) -> None:
    org = await add_org(partners, "Hope Clinic")
    good_id = str(uuid.uuid4())

    def service(**fields: Any) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "organization_id": str(org),
            "name": "Primary care",
            "status": "active",
            "service_areas": [{"id": str(uuid.uuid4()), "extent_type": "text", "extent": "SO11"}],
            "languages": [{"id": str(uuid.uuid4()), "code": "so"}],
            "x_icrs": {"category": "health"},
            **fields,
        }

    document = [
        service(id=good_id, minimum_age=18.0),
        service(x_icrs={"category": "cooking"}),
        service(service_areas=[{"name": "Banadir"}]),
        service(organization_id=str(uuid.uuid4())),
        service(id=None),
        service(minimum_age=40, maximum_age=20),
        service(x_icrs={"category": "health", "accept_within": "PT10M"}),
        service(id=good_id),
        {
            "id": str(uuid.uuid4()),
            "description": "",
            "services": [service(name="Nested under a nameless organization")],
        },
    ]
    report = await import_(partners, document)
    assert report["services"]["created"] == 1
    rejected = {(r["index"], r["field"]) for r in report["services"]["rejected"]}
    assert rejected == {
        (1, "x_icrs.category"),
        (2, "service_areas.0"),
        (3, "organization_id"),
        (4, "id"),
        (5, "maximum_age"),
        (6, "x_icrs.accept_within"),
        (7, "id"),
        (8, "organization_id"),
    }
    assert [r["field"] for r in report["organizations"]["rejected"]] == ["name"]
    assert report["organizations"]["rejected"][0]["index"] == 8
    reasons = {r["index"]: r["reason"] for r in report["services"]["rejected"]}
    assert reasons[3] == "no such organization"
    assert reasons[7] == "appears more than once in the document"
    assert reasons[8] == "its organization was rejected"

    got = await partners.client.get(f"/v1/services/{good_id}", headers=admin(partners))
    assert got.json()["eligibility"]["min_age"] == 18

    # Capacity and status changes by import reach routing as the API's would.
    fuller = service(
        id=good_id, minimum_age=18, x_icrs={"category": "health", "capacity": {"maximum": 3}}
    )
    report = await import_(partners, [fuller])
    assert report["services"]["updated"] == 1
    report = await import_(partners, [{**fuller, "status": "inactive"}])
    assert report["services"]["updated"] == 1
    report = await import_(partners, [{**fuller, "status": "inactive"}])
    assert report["services"]["unchanged"] == 1

    await eventually(lambda: len(recorder.events) >= 3)
    await asyncio.sleep(0.5)
    assert [e.type for e in recorder.events] == [
        "icrs.service.published",
        "icrs.service.updated",
        "icrs.service.withdrawn",
    ]
    assert recorder.events[1].data["capacity"] == {"maximum": 3, "accepting": True}
    assert recorder.events[1].data["version"] == 2


async def test_import_creates_organizations_pending_and_leaves_existing_kinds(
    partners: Any, recorder: Recorder
) -> None:
    existing = await add_org(partners, "Old Name", contact={"email": "a@old.example"})
    new_id = str(uuid.uuid4())
    document = [
        {
            "id": str(existing),
            "name": "New Name",
            "description": "",
            "x_icrs": {"kind": "ngo"},
            "services": [],
        },
        {"id": new_id, "name": "Cluster Partner", "description": "From a cluster mapping"},
        {"id": str(uuid.uuid4()), "name": "Platform", "x_icrs": {"kind": "platform"}},
        {"id": str(uuid.uuid4()), "name": "Somewhere", "x_icrs": {"country": "XX"}},
    ]
    report = await import_(partners, document)
    assert report["organizations"]["created"] == 1
    assert report["organizations"]["updated"] == 1
    assert [(r["index"], r["field"]) for r in report["organizations"]["rejected"]] == [
        (2, "x_icrs.kind"),
        (3, "x_icrs.country"),
    ]
    async with partners.app.state.runtime.db.sessions() as s:
        old = await s.get(Organization, existing)
        new = await s.get(Organization, uuid.UUID(new_id))
    assert old is not None
    assert new is not None
    assert (old.name, old.kind, old.status) == ("New Name", "service_provider", "active")
    assert old.contact == {"email": "a@old.example"}  # not in the document: kept
    assert (new.kind, new.status) == ("service_provider", "pending")

    await eventually(lambda: len(recorder.events) >= 1)
    assert [(e.type, e.subject) for e in recorder.events] == [
        ("icrs.organization.registered", new_id)
    ]

    assert (
        await partners.client.post(
            "/v1/services/import", json=document, headers=partners.issuer.headers("services:manage")
        )
    ).status_code == 403
    not_a_list = await partners.client.post(
        "/v1/services/import", json={"organizations": []}, headers=admin(partners)
    )
    assert not_a_list.status_code == 422
