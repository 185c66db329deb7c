"""OAuth clients of an organization: scopes within its kind, a secret shown once, revocation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from icrs_partners.bootstrap import PLATFORM_ORGANIZATION_ID
from icrs_partners.credentials import verify_secret
from icrs_partners.models import Client, idempotency_keys
from icrs_shared.testing import Recorder
from icrs_shared.testing import record as record_events

if TYPE_CHECKING:
    from conftest import Partners

PROVIDER = {"name": "Hope Clinic", "kind": "service_provider", "country": "SO"}


async def record(partners: Partners, *bindings: str) -> Recorder:
    return await record_events(partners.bus, bindings)


def admin(partners: Partners, **headers: str) -> dict[str, str]:
    token = partners.issuer.headers("partners:admin", organization_id=PLATFORM_ORGANIZATION_ID)
    return {**token, **headers}


async def organization(partners: Partners, *, verify: bool = True) -> str:
    r = await partners.client.post("/v1/organizations", json=PROVIDER, headers=admin(partners))
    org_id: str = r.json()["id"]
    if verify:
        await partners.client.post(f"/v1/organizations/{org_id}/verify", headers=admin(partners))
    return org_id


async def issue(partners: Partners, org_id: str, scopes: list[str], **headers: str) -> Any:
    return await partners.client.post(
        f"/v1/organizations/{org_id}/clients",
        json={"name": "referral system", "scopes": scopes},
        headers=admin(partners, **headers),
    )


async def stored_clients(partners: Partners) -> list[Client]:
    async with partners.app.state.runtime.db.sessions() as session:
        return list((await session.execute(select(Client))).scalars().all())


async def test_scopes_beyond_the_kind_are_refused(partners: Partners) -> None:
    org_id = await organization(partners)
    r = await issue(partners, org_id, ["referrals:respond", "partners:admin", "cases:read"])
    assert r.status_code == 422
    problem = r.json()
    assert problem["not_allowed"] == ["cases:read", "partners:admin"]
    [error] = problem["errors"]
    assert error["field"] == "scopes"
    assert "cases:read" in error["message"]
    assert "partners:admin" in error["message"]
    assert "referrals:respond" not in error["message"]

    r = await issue(partners, org_id, ["referrals:respond", "cases:delete"])
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["scopes.1"]
    assert "cases:delete" not in r.text  # unknown input is not echoed

    r = await issue(partners, org_id, [])
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "scopes"
    assert await stored_clients(partners) == []


async def test_the_secret_is_shown_once_and_stored_hashed(partners: Partners) -> None:
    recorder = await record(partners, "client.*")
    org_id = await organization(partners)

    r = await issue(partners, org_id, ["services:manage", "referrals:respond", "services:manage"])
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    issued = r.json()
    secret = issued["client_secret"]
    assert len(secret) >= 32
    assert issued["scopes"] == ["referrals:respond", "services:manage"]
    assert (issued["organization_id"], issued["name"]) == (org_id, "referral system")

    [stored] = await stored_clients(partners)
    assert stored.client_id == issued["client_id"]
    assert secret not in stored.secret_hash
    assert verify_secret(secret, stored.secret_hash)
    assert not verify_secret(secret + "x", stored.secret_hash)

    r = await partners.client.get(f"/v1/organizations/{org_id}/clients", headers=admin(partners))
    assert r.status_code == 200
    [listed] = r.json()["items"]
    assert listed["client_id"] == issued["client_id"]
    assert listed["revoked_at"] is None
    assert "client_secret" not in listed
    assert "secret_hash" not in listed
    assert secret not in r.text
    assert stored.secret_hash not in r.text

    [event] = await recorder.wait_for(1)
    assert event.type == "icrs.client.issued"
    assert event.subject == issued["client_id"]
    assert event.data == {
        "client_id": issued["client_id"],
        "organization_id": org_id,
        "scopes": ["referrals:respond", "services:manage"],
    }
    raw = event.to_json().decode()
    assert secret not in raw
    assert stored.secret_hash not in raw


async def test_revocation(partners: Partners) -> None:
    recorder = await record(partners, "client.*")
    org_id = await organization(partners)
    other_id = await organization(partners)
    client_id = (await issue(partners, org_id, ["partners:read"])).json()["client_id"]
    path = f"/v1/organizations/{org_id}/clients/{client_id}"

    # Through another organization's path it does not exist.
    r = await partners.client.delete(
        f"/v1/organizations/{other_id}/clients/{client_id}", headers=admin(partners)
    )
    assert r.status_code == 404

    r = await partners.client.delete(path, headers=admin(partners))
    assert r.status_code == 204
    assert r.content == b""
    [stored] = await stored_clients(partners)
    assert stored.revoked_at is not None
    r = await partners.client.get(f"/v1/organizations/{org_id}/clients", headers=admin(partners))
    assert r.json()["items"][0]["revoked_at"] is not None

    assert (await partners.client.delete(path, headers=admin(partners))).status_code == 204
    r = await partners.client.delete(path + "nope", headers=admin(partners))
    assert r.status_code == 404
    # Found by schemathesis: PostgreSQL refuses NUL in text, and this answered 500.
    r = await partners.client.delete(path + "%00", headers=admin(partners))
    assert r.status_code == 422, r.text

    # The next event after the revocation is this issue: the second DELETE emitted nothing.
    second = (await issue(partners, org_id, ["partners:read"])).json()["client_id"]
    events = await recorder.wait_for(3)
    assert [(e.type, e.subject) for e in events] == [
        ("icrs.client.issued", client_id),
        ("icrs.client.revoked", client_id),
        ("icrs.client.issued", second),
    ]


async def test_a_suspended_organization_gets_no_new_client(partners: Partners) -> None:
    org_id = await organization(partners)
    await partners.client.post(f"/v1/organizations/{org_id}/suspend", headers=admin(partners))
    r = await issue(partners, org_id, ["partners:read"])
    assert r.status_code == 409
    assert r.json()["type"] == "urn:icrs:problem:organization-suspended"
    assert await stored_clients(partners) == []


async def test_a_pending_organization_may_get_a_client(partners: Partners) -> None:
    org_id = await organization(partners, verify=False)
    assert (await issue(partners, org_id, ["partners:read"])).status_code == 201


async def test_idempotency_key_never_replays_the_secret(partners: Partners) -> None:
    org_id = await organization(partners)
    first = await issue(partners, org_id, ["partners:read"], **{"Idempotency-Key": "c-1"})
    assert first.status_code == 201
    secret = first.json()["client_secret"]

    again = await issue(partners, org_id, ["partners:read"], **{"Idempotency-Key": "c-1"})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["type"] == "urn:icrs:problem:client-already-issued"
    assert again.json()["client_id"] == first.json()["client_id"]
    assert secret not in again.text

    other = await issue(partners, org_id, ["services:manage"], **{"Idempotency-Key": "c-1"})
    assert other.status_code == 409
    assert other.json()["type"] == "urn:icrs:problem:conflict"
    assert len(await stored_clients(partners)) == 1

    async with partners.app.state.runtime.db.sessions() as session:
        bodies = (await session.execute(select(idempotency_keys.c.body))).scalars().all()
    assert all(secret not in str(body) for body in bodies)


async def test_client_routes_of_an_unknown_organization_are_404(partners: Partners) -> None:
    missing = "6f1c1b9e-8a4c-4d59-9c55-0c6a2a0b1e11"
    assert (await issue(partners, missing, ["partners:read"])).status_code == 404
    r = await partners.client.get(f"/v1/organizations/{missing}/clients", headers=admin(partners))
    assert r.status_code == 404
    r = await partners.client.delete(
        f"/v1/organizations/{missing}/clients/icrs_x", headers=admin(partners)
    )
    assert r.status_code == 404


async def test_client_list_pages(partners: Partners) -> None:
    org_id = await organization(partners)
    ids = {(await issue(partners, org_id, ["partners:read"])).json()["client_id"] for _ in range(3)}
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        r = await partners.client.get(
            f"/v1/organizations/{org_id}/clients", params=params, headers=admin(partners)
        )
        page = r.json()
        seen += [c["client_id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
