"""An organization's lifecycle as the administrator drives it, and the events on the broker."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select

from icrs_partners.bootstrap import PLATFORM_ORGANIZATION_ID, ensure_admin
from icrs_partners.models import Organization, Service
from icrs_partners.scopes import KIND_SCOPES, Kind
from icrs_shared.testing import Recorder
from icrs_shared.testing import record as record_events

if TYPE_CHECKING:
    from conftest import Partners

ADMIN_CLIENT = "admin-test"
HOPE = {
    "name": "Hope Clinic",
    "kind": "service_provider",
    "country": "SO",
    "contact": {"email": "referrals@hope.example", "phone": "+252 61 0000000"},
}


async def record(partners: Partners, *bindings: str) -> Recorder:
    return await record_events(partners.bus, bindings)


def admin(partners: Partners) -> dict[str, str]:
    return partners.issuer.headers(
        "partners:admin", organization_id=PLATFORM_ORGANIZATION_ID, client_id=ADMIN_CLIENT
    )


async def register(partners: Partners, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await partners.client.post("/v1/organizations", json=body or HOPE, headers=admin(partners))
    assert r.status_code == 201, r.text
    org: dict[str, Any] = r.json()
    return org


async def act(
    partners: Partners, org_id: str, action: str, *, if_match: str | None = None, **kw: Any
) -> httpx.Response:
    headers = admin(partners)
    if if_match is not None:
        headers["If-Match"] = if_match
    return await partners.client.post(f"/v1/organizations/{org_id}/{action}", headers=headers, **kw)


async def test_register_verify_suspend_reactivate(partners: Partners) -> None:
    recorder = await record(partners, "organization.*")

    r = await partners.client.post("/v1/organizations", json=HOPE, headers=admin(partners))
    assert r.status_code == 201
    org = r.json()
    org_id = org["id"]
    assert r.headers["location"] == f"/v1/organizations/{org_id}"
    assert r.headers["etag"] == f'"{org_id}.1"'
    assert (org["status"], org["version"], org["child_safeguarding"]) == ("pending", 1, False)
    assert org["contact"] == HOPE["contact"]
    assert org["allowed_scopes"] == sorted(KIND_SCOPES[Kind.SERVICE_PROVIDER])
    assert org["verified_at"] is None

    r = await act(partners, org_id, "verify", json={"child_safeguarding": True})
    assert r.status_code == 200, r.text
    verified = r.json()
    assert (verified["status"], verified["version"]) == ("active", 2)
    assert verified["child_safeguarding"] is True
    assert verified["verified_at"] is not None
    assert r.headers["etag"] == f'"{org_id}.2"'

    r = await act(partners, org_id, "suspend")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["version"]) == ("suspended", 3)
    assert r.json()["suspended_at"] is not None

    r = await act(partners, org_id, "reactivate")
    assert r.status_code == 200, r.text
    back = r.json()
    assert (back["status"], back["version"]) == ("active", 4)
    assert back["child_safeguarding"] is True
    assert back["verified_at"] == verified["verified_at"]
    assert back["suspended_at"] is None

    r = await partners.client.get(f"/v1/organizations/{org_id}", headers=admin(partners))
    assert r.status_code == 200
    assert r.headers["etag"] == f'"{org_id}.4"'
    assert r.json()["status"] == "active"

    events = await recorder.wait_for(4)
    assert [e.type for e in events] == [
        "icrs.organization.registered",
        "icrs.organization.verified",
        "icrs.organization.suspended",
        "icrs.organization.reactivated",
    ]
    assert [e.data["status"] for e in events] == ["pending", "active", "suspended", "active"]
    assert [e.data["child_safeguarding"] for e in events] == [False, True, True, True]
    for e in events:
        assert e.subject == org_id
        assert e.data["organization_id"] == org_id
        assert e.data["kind"] == "service_provider"
        assert (e.actor, e.actororg) == (ADMIN_CLIENT, str(PLATFORM_ORGANIZATION_ID))
        raw = e.to_json().decode()
        for secret in ("referrals@hope.example", "0000000", "Hope Clinic"):
            assert secret not in raw


async def test_verifying_again_updates_child_safeguarding(partners: Partners) -> None:
    recorder = await record(partners, "organization.verified")
    org_id = (await register(partners))["id"]

    r = await act(partners, org_id, "verify")
    assert (r.json()["status"], r.json()["child_safeguarding"]) == ("active", False)
    first_verified_at = r.json()["verified_at"]
    r = await act(partners, org_id, "verify", json={"child_safeguarding": True})
    assert (r.json()["child_safeguarding"], r.json()["version"]) == (True, 3)
    assert r.json()["verified_at"] == first_verified_at
    r = await act(partners, org_id, "verify")  # omitted: kept
    assert (r.json()["child_safeguarding"], r.json()["version"]) == (True, 4)

    events = await recorder.wait_for(3)
    assert [e.data["child_safeguarding"] for e in events] == [False, True, True]


async def test_disallowed_transitions_answer_409_and_change_nothing(partners: Partners) -> None:
    recorder = await record(partners, "organization.*")
    org_id = (await register(partners))["id"]

    r = await act(partners, org_id, "reactivate")
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == "urn:icrs:problem:transition-not-allowed"
    assert (problem["current_status"], problem["allowed"]) == ("pending", ["verify", "suspend"])

    assert (await act(partners, org_id, "suspend")).status_code == 200
    refused = [
        await act(partners, org_id, "verify", json={"child_safeguarding": True}),
        await act(partners, org_id, "suspend"),
    ]
    for r in refused:
        assert r.status_code == 409
        assert r.json()["allowed"] == ["reactivate"]
        assert "reactivate" in r.json()["detail"]

    r = await partners.client.get(f"/v1/organizations/{org_id}", headers=admin(partners))
    assert (r.json()["status"], r.json()["version"]) == ("suspended", 2)
    assert r.json()["child_safeguarding"] is False

    # Never verified: reactivation goes back to pending, not active.
    r = await act(partners, org_id, "reactivate")
    assert (r.json()["status"], r.json()["verified_at"]) == ("pending", None)

    r = await act(partners, org_id, "verify")
    assert r.status_code == 200
    assert (await act(partners, org_id, "reactivate")).status_code == 409
    assert (await act(partners, org_id, "suspend")).status_code == 200

    # One queue delivers in order: a refused request's event would show before the last.
    events = await recorder.wait_for(5)
    assert [e.type.rsplit(".", 1)[1] for e in events] == [
        "registered",
        "suspended",
        "reactivated",
        "verified",
        "suspended",
    ]
    assert events[2].data["status"] == "pending"


async def test_the_platform_organization_cannot_be_suspended(partners: Partners) -> None:
    runtime = partners.app.state.runtime
    async with runtime.db.transaction() as session:
        await ensure_admin(session, runtime.messaging.outbox)

    r = await act(partners, str(PLATFORM_ORGANIZATION_ID), "suspend")
    assert r.status_code == 409
    assert "platform" in r.json()["detail"]
    assert "suspend" not in r.json()["allowed"]
    async with runtime.db.sessions() as session:
        org = await session.get(Organization, PLATFORM_ORGANIZATION_ID)
    assert org is not None
    assert org.status == "active"


async def test_if_match_must_name_the_current_version(partners: Partners) -> None:
    org_id = (await register(partners))["id"]
    r = await act(partners, org_id, "verify", if_match=f'"{org_id}.7"')
    assert r.status_code == 412
    r = await partners.client.get(f"/v1/organizations/{org_id}", headers=admin(partners))
    assert r.json()["status"] == "pending"
    r = await act(partners, org_id, "verify", if_match=r.headers["etag"])
    assert r.status_code == 200
    assert r.headers["etag"] == f'"{org_id}.2"'


async def test_unknown_organization_is_404(partners: Partners) -> None:
    missing = str(uuid.uuid4())
    for action in ("verify", "suspend", "reactivate"):
        assert (await act(partners, missing, action)).status_code == 404
    r = await partners.client.get(f"/v1/organizations/{missing}", headers=admin(partners))
    assert r.status_code == 404
    r = await partners.client.get("/v1/organizations/not-a-uuid", headers=admin(partners))
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "path.organization_id"


# Services leave routing with their organization -----------------------------------


def _service(org_id: uuid.UUID, category: str, status: str = "active") -> Service:
    return Service.model_validate(
        {
            "organization_id": org_id,
            "name": f"{category} service",
            "category": category,
            "status": status,
            "languages": ["so", "ar"],
            "service_areas": ["SO11"],
            "eligibility": {"min_age": 18, "sexes": ["female"], "accepts_minors": False},
            "capacity_maximum": 40,
            "accepting": True,
            "accept_within_seconds": 3600,
            "version": 3,
        }
    )


async def test_services_follow_their_organization_in_and_out_of_routing(
    partners: Partners,
) -> None:
    recorder = await record(partners, "service.*")
    org_id = uuid.UUID((await register(partners))["id"])
    other_id = uuid.UUID((await register(partners, {**HOPE, "name": "Other"}))["id"])
    pending_id = uuid.UUID((await register(partners, {**HOPE, "name": "Pending"}))["id"])
    await act(partners, str(other_id), "verify")
    health, legal = _service(org_id, "health"), _service(org_id, "legal")
    others = _service(other_id, "health")
    rows = [
        health,
        legal,
        _service(org_id, "housing", "inactive"),
        others,
        _service(pending_id, "health"),
    ]
    runtime = partners.app.state.runtime
    async with runtime.db.transaction() as session:
        session.add_all(rows)
    ours = {str(health.id), str(legal.id)}

    # Verification brings a pending organization's active services into routing.
    assert (await act(partners, str(org_id), "verify")).status_code == 200
    published = await recorder.wait_for(2)
    assert {(e.type, e.subject) for e in published} == {("icrs.service.published", s) for s in ours}
    assert {e.data["status"] for e in published} == {"active"}

    # Suspension withdraws them; their rows stay active.
    assert (await act(partners, str(org_id), "suspend")).status_code == 200
    withdrawn = (await recorder.wait_for(4))[2:]
    assert {(e.type, e.subject) for e in withdrawn} == {("icrs.service.withdrawn", s) for s in ours}
    event = next(e for e in withdrawn if e.subject == str(health.id))
    assert event.data == {
        "service_id": str(health.id),
        "organization_id": str(org_id),
        "category": "health",
        "status": "suspended",
        "service_areas": ["SO11"],
        "languages": ["so", "ar"],
        "eligibility": {
            "min_age": 18,
            "max_age": None,
            "sexes": ["female"],
            "beneficiary_categories": [],
            "programme_tracks": [],
            "accepts_minors": False,
        },
        "capacity": {"maximum": 40, "accepting": True},
        "accept_within_seconds": 3600,
        "version": 3,
    }
    async with runtime.db.sessions() as session:
        query = select(Service.status).where(Service.organization_id == org_id)
        statuses = (await session.execute(query)).scalars().all()
    assert sorted(statuses) == ["active", "active", "inactive"]

    # Reactivation publishes them again.
    assert (await act(partners, str(org_id), "reactivate")).status_code == 200
    republished = (await recorder.wait_for(6))[4:]
    assert {(e.type, e.subject) for e in republished} == {
        ("icrs.service.published", s) for s in ours
    }
    assert {e.data["status"] for e in republished} == {"active"}

    # A pending organization's services never were in routing: nothing to withdraw.
    assert (await act(partners, str(pending_id), "suspend")).status_code == 200
    # The other organization's suspension comes last: any event about the inactive service,
    # the pending organization or anything else would show before it.
    assert (await act(partners, str(other_id), "suspend")).status_code == 200
    events = await recorder.wait_for(7)
    assert (events[6].type, events[6].subject) == ("icrs.service.withdrawn", str(others.id))


async def test_suspension_stops_the_clients_tokens_at_once(partners: Partners) -> None:
    org_id = (await register(partners))["id"]
    await act(partners, org_id, "verify")
    issued = await partners.client.post(
        f"/v1/organizations/{org_id}/clients",
        json={"name": "referral system", "scopes": ["referrals:respond"]},
        headers=admin(partners),
    )
    assert issued.status_code == 201, issued.text
    credentials = httpx.BasicAuth(issued.json()["client_id"], issued.json()["client_secret"])

    async def token() -> httpx.Response:
        data = {"grant_type": "client_credentials"}
        return await partners.client.post("/oauth/token", data=data, auth=credentials)

    assert (await token()).status_code == 200
    assert (await act(partners, org_id, "suspend")).status_code == 200
    refused = await token()
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    assert (await act(partners, org_id, "reactivate")).status_code == 200
    assert (await token()).status_code == 200
