"""Who may do what with organizations: 401 without a token, 403 without the scope, and
the directory's view of an organization (no contact details for other readers)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from icrs_partners.bootstrap import PLATFORM_ORGANIZATION_ID

if TYPE_CHECKING:
    from conftest import Partners

BODY = {
    "name": "Hope Clinic",
    "kind": "ngo",
    "country": "SO",
    "contact": {"email": "referrals@hope.example"},
}
SOME_ID = "0b7d8f52-52a9-4c43-a1a5-1a8f5f6d0c11"

ADMIN_ROUTES = [
    ("POST", "/v1/organizations", BODY),
    ("GET", "/v1/organizations", None),
    ("POST", f"/v1/organizations/{SOME_ID}/verify", None),
    ("POST", f"/v1/organizations/{SOME_ID}/suspend", None),
    ("POST", f"/v1/organizations/{SOME_ID}/reactivate", None),
    ("POST", f"/v1/organizations/{SOME_ID}/clients", {"name": "x", "scopes": ["partners:read"]}),
    ("GET", f"/v1/organizations/{SOME_ID}/clients", None),
    ("DELETE", f"/v1/organizations/{SOME_ID}/clients/icrs_x", None),
]


def admin(partners: Partners) -> dict[str, str]:
    return partners.issuer.headers("partners:admin", organization_id=PLATFORM_ORGANIZATION_ID)


async def register(partners: Partners, *, verify: bool) -> str:
    r = await partners.client.post("/v1/organizations", json=BODY, headers=admin(partners))
    org_id: str = r.json()["id"]
    if verify:
        await partners.client.post(f"/v1/organizations/{org_id}/verify", headers=admin(partners))
    return org_id


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_admin_routes_need_a_token_and_the_admin_scope(
    partners: Partners, method: str, path: str, body: object
) -> None:
    r = await partners.client.request(method, path, json=body)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.headers["content-type"] == "application/problem+json"

    # Even the organization's own client, with every other scope, is not an administrator.
    others = ("partners:read", "services:manage", "referrals:respond", "cases:write")
    headers = partners.issuer.headers(*others, organization_id=SOME_ID)
    r = await partners.client.request(method, path, json=body, headers=headers)
    assert r.status_code == 403
    assert "insufficient_scope" in r.headers["www-authenticate"]


async def test_forbidden_requests_change_nothing(partners: Partners) -> None:
    org_id = await register(partners, verify=False)
    reader = partners.issuer.headers("partners:read", organization_id=org_id)
    r = await partners.client.post(f"/v1/organizations/{org_id}/verify", headers=reader)
    assert r.status_code == 403
    r = await partners.client.get(f"/v1/organizations/{org_id}", headers=admin(partners))
    assert (r.json()["status"], r.json()["version"]) == ("pending", 1)


async def test_directory_readers_see_active_organizations_without_contact(
    partners: Partners,
) -> None:
    active = await register(partners, verify=True)
    pending = await register(partners, verify=False)
    reader = partners.issuer.headers("partners:read", organization_id=uuid.uuid4())

    r = await partners.client.get(f"/v1/organizations/{active}", headers=reader)
    assert r.status_code == 200
    assert r.json()["contact"] is None
    assert "referrals@hope.example" not in r.text
    assert r.json()["status"] == "active"

    # Not active: as if it did not exist.
    r = await partners.client.get(f"/v1/organizations/{pending}", headers=reader)
    assert r.status_code == 404
    missing = await partners.client.get(f"/v1/organizations/{uuid.uuid4()}", headers=reader)
    assert missing.json() == r.json()


async def test_an_organization_reads_itself_with_its_contact(partners: Partners) -> None:
    pending = await register(partners, verify=False)
    own = partners.issuer.headers("cases:read", organization_id=pending)
    r = await partners.client.get(f"/v1/organizations/{pending}", headers=own)
    assert r.status_code == 200
    assert r.json()["contact"] == {"email": "referrals@hope.example", "phone": None}

    r = await partners.client.get(f"/v1/organizations/{pending}", headers=admin(partners))
    assert r.json()["contact"]["email"] == "referrals@hope.example"


async def test_reading_another_organization_needs_partners_read(partners: Partners) -> None:
    active = await register(partners, verify=True)
    stranger = partners.issuer.headers("cases:read", organization_id=uuid.uuid4())
    r = await partners.client.get(f"/v1/organizations/{active}", headers=stranger)
    assert r.status_code == 403
    r = await partners.client.get(f"/v1/organizations/{active}")
    assert r.status_code == 401
